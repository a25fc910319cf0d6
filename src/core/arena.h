/* An allocator for buffers planned once (a model's activations for a batch size and resolution).
 * Plans run twice: a counting pass with arena_begin_count(), which hands out no memory but records each
 * request, then arena_allocate() and the same plan again, which now gets real, 64-byte-aligned pointers.
 * So the layout is computed by the very code that requests the buffers, and nothing is freed one by one.
 *
 * Lifetimes: each buffer is requested for the steps [first, last] set by the latest arena_live() (the
 * whole plan before any call). Buffers whose lifetimes do not overlap may share memory: arena_allocate
 * places the largest first, each at the lowest offset free for its lifetime. A buffer is zero-filled
 * only where no earlier buffer shared its memory; plans must write a buffer before they read it. */
#ifndef DIFFUSE_ARENA_H
#define DIFFUSE_ARENA_H

#include <stdbool.h>
#include <stddef.h>

typedef struct ArenaRequest {
    size_t n;      /* floats */
    size_t offset; /* floats from base, set by arena_allocate */
    int first, last;
} ArenaRequest;

typedef struct Arena {
    float *base;     /* NULL while counting */
    size_t capacity; /* floats */
    ArenaRequest *requests;
    size_t n_requests, requests_capacity;
    size_t next; /* the real pass's next request */
    int first, last; /* the lifetime of the next requests */
} Arena;

void arena_begin_count(Arena *arena);
/* Lays out and allocates what the counting pass requested (zero-filled) and rewinds for the real pass;
 * -1 when that memory cannot be had (capacity then says how much was asked for). */
int arena_allocate(Arena *arena);
/* The steps [first, last] (first <= last) during which the next requested buffers are in use. */
void arena_live(Arena *arena, int first, int last);
/* n floats, 64-byte aligned; NULL while counting (callers only store the pointer). */
float *arena_floats(Arena *arena, size_t n);
void arena_free(Arena *arena);

#endif
