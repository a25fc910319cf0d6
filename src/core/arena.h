/* A bump allocator for buffers planned once (a model's activations for a batch size and resolution).
 * Plans run twice: a counting pass with arena_begin_count(), which hands out no memory but sums the
 * sizes, then arena_allocate() and the same plan again, which now gets real, 64-byte-aligned pointers.
 * So the size is computed by the very code that lays the buffers out, and nothing is freed one by one. */
#ifndef DIFFUSE_ARENA_H
#define DIFFUSE_ARENA_H

#include <stdbool.h>
#include <stddef.h>

typedef struct Arena {
    float *base;     /* NULL while counting */
    size_t capacity; /* floats */
    size_t used;     /* floats */
} Arena;

void arena_begin_count(Arena *arena);
/* Allocates what the counting pass used (zero-filled) and rewinds for the real pass. */
void arena_allocate(Arena *arena);
/* n floats, 64-byte aligned; NULL while counting (callers only store the pointer). */
float *arena_floats(Arena *arena, size_t n);
bool arena_counting(const Arena *arena);
void arena_free(Arena *arena);

#endif
