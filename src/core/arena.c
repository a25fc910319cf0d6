/* Planned allocator with lifetimes (see arena.h). */
#include "core/arena.h"

#include <limits.h>
#include <stdlib.h>

#include "core/alloc.h"
#include "core/check.h"

#define ARENA_ALIGN_FLOATS 16 /* 64 bytes */

static size_t align_up(size_t n) { return (n + ARENA_ALIGN_FLOATS - 1) / ARENA_ALIGN_FLOATS * ARENA_ALIGN_FLOATS; }

void arena_begin_count(Arena *arena) {
    arena_free(arena);
    arena->first = 0, arena->last = INT_MAX;
}

void arena_live(Arena *arena, int first, int last) {
    CHECK(first <= last, "arena_live: lifetime [%d, %d] ends before it starts", first, last);
    arena->first = first, arena->last = last;
}

static bool lifetimes_overlap(const ArenaRequest *a, const ArenaRequest *b) {
    return a->first <= b->last && b->first <= a->last;
}

/* Sorts request pointers, largest first (ties in request order, so a layout does not depend on qsort). */
static int larger_first(const void *pa, const void *pb) {
    const ArenaRequest *a = *(ArenaRequest *const *)pa, *b = *(ArenaRequest *const *)pb;
    if (a->n != b->n) return a->n > b->n ? -1 : 1;
    return a < b ? -1 : a > b;
}

static int lower_offset_first(const void *pa, const void *pb) {
    const ArenaRequest *a = *(ArenaRequest *const *)pa, *b = *(ArenaRequest *const *)pb;
    return a->offset < b->offset ? -1 : a->offset > b->offset;
}

/* Offsets for every request, largest first: each goes to the lowest aligned offset that no placed request
 * with an overlapping lifetime covers. Returns the floats the layout spans. */
static size_t place_requests(ArenaRequest *requests, size_t n_requests) {
    ArenaRequest **order = xmalloc((n_requests ? n_requests : 1) * sizeof *order);
    ArenaRequest **conflicts = xmalloc((n_requests ? n_requests : 1) * sizeof *conflicts);
    for (size_t i = 0; i < n_requests; i++) order[i] = &requests[i];
    qsort(order, n_requests, sizeof *order, larger_first);
    size_t span = 0;
    for (size_t i = 0; i < n_requests; i++) {
        ArenaRequest *r = order[i];
        size_t n_conflicts = 0;
        for (size_t j = 0; j < i; j++)
            if (lifetimes_overlap(r, order[j])) conflicts[n_conflicts++] = order[j];
        qsort(conflicts, n_conflicts, sizeof *conflicts, lower_offset_first);
        size_t offset = 0;
        for (size_t j = 0; j < n_conflicts && offset + r->n > conflicts[j]->offset; j++) {
            size_t end = align_up(conflicts[j]->offset + conflicts[j]->n);
            if (end > offset) offset = end;
        }
        r->offset = offset;
        if (offset + r->n > span) span = offset + r->n;
    }
    free(order);
    free(conflicts);
    return span;
}

int arena_allocate(Arena *arena) {
    CHECK(arena->base == NULL, "arena_allocate: already allocated");
    arena->capacity = place_requests(arena->requests, arena->n_requests);
    arena->base = alloc_floats_or_null(arena->capacity ? arena->capacity : 1, 1);
    if (!arena->base) return -1;
    arena->next = 0;
    arena->first = 0, arena->last = INT_MAX;
    return 0;
}

float *arena_floats(Arena *arena, size_t n) {
    if (!arena->base) {
        if (arena->n_requests == arena->requests_capacity) {
            arena->requests_capacity = arena->requests_capacity ? 2 * arena->requests_capacity : 64;
            arena->requests = xrealloc(arena->requests, arena->requests_capacity * sizeof *arena->requests);
        }
        arena->requests[arena->n_requests++] = (ArenaRequest){.n = n, .first = arena->first, .last = arena->last};
        return NULL;
    }
    CHECK(arena->next < arena->n_requests, "arena: request %zu of %zu (the plan changed between passes)",
          arena->next + 1, arena->n_requests);
    const ArenaRequest *r = &arena->requests[arena->next++];
    CHECK(r->n == n && r->first == arena->first && r->last == arena->last,
          "arena: request %zu differs from the counting pass (the plan changed between passes)", arena->next);
    return arena->base + r->offset;
}

void arena_free(Arena *arena) {
    alloc_free(arena->base);
    free(arena->requests);
    *arena = (Arena){0};
}
