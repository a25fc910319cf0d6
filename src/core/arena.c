/* Bump allocator with a counting pass (see arena.h). */
#include "core/arena.h"

#include "core/alloc.h"
#include "core/check.h"

#define ARENA_ALIGN_FLOATS 16 /* 64 bytes */

void arena_begin_count(Arena *arena) { *arena = (Arena){0}; }

void arena_allocate(Arena *arena) {
    CHECK(arena->base == NULL, "arena_allocate: already allocated");
    arena->capacity = arena->used;
    arena->base = alloc_floats(arena->capacity ? arena->capacity : 1);
    arena->used = 0;
}

float *arena_floats(Arena *arena, size_t n) {
    size_t start = (arena->used + ARENA_ALIGN_FLOATS - 1) / ARENA_ALIGN_FLOATS * ARENA_ALIGN_FLOATS;
    arena->used = start + n;
    if (!arena->base) return NULL;
    CHECK(arena->used <= arena->capacity, "arena overflow: %zu of %zu floats (the plan changed between passes)",
          arena->used, arena->capacity);
    return arena->base + start;
}

bool arena_counting(const Arena *arena) { return arena->base == NULL; }

void arena_free(Arena *arena) {
    alloc_free(arena->base);
    *arena = (Arena){0};
}
