/* Work shared out evenly among a team, then rebalanced by stealing: each thread takes pieces of its own
 * share from the front, and a thread whose share is done takes pieces from the back of the others'. Cores of
 * one machine do not always run at one speed (a busy neighbour on a shared host, a core at a lower clock),
 * and with an even split the team waits for the slowest: on the 2-core machine of the benchmarks, a static
 * split left each thread idle for 2-5 % of the fashion-mnist step's convolutions and narrow products.
 *
 * The work is `units` units (a kernel's row blocks, say) numbered from 0. The owner's pieces keep the
 * kernel's chunk size; near the end of a share, and when stealing, a piece is half of what is left, so that
 * the threads finish within about one unit of each other. Which thread runs a unit never changes the result
 * as long as each unit's output is written by the one thread that runs it. */
#ifndef DIFFUSE_WORK_STEAL_H
#define DIFFUSE_WORK_STEAL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/check.h"

/* One thread's share, [front, back) packed in one word (front in the high half) so that the owner's and a
 * thief's claims are single compare-and-swaps; a cache line each. */
typedef struct WorkShare {
    _Atomic uint64_t bounds;
    char pad[64 - sizeof(uint64_t)];
} WorkShare;

/* Deals units out to shares[0, team) evenly, before the parallel region. A share whose thread does not
 * start (a smaller team than asked for) is stolen by the others, so every unit still runs once. */
static inline void work_share_init(WorkShare *shares, size_t team, size_t units) {
    CHECK(units < ((uint64_t)1 << 32), "work_share_init: %zu units, at most 2^32 - 1 fit a share's bounds", units);
    for (size_t t = 0; t < team; t++) {
        const uint64_t front = units * t / team, back = units * (t + 1) / team;
        atomic_store_explicit(&shares[t].bounds, front << 32 | back, memory_order_relaxed);
    }
}

/* Claims up to `piece` units from the front of `share` (owner) or the back (thief): a thief half of what
 * is left, and the owner too once less than two pieces are left, though not under `least` units. */
static inline bool work_share_claim(WorkShare *share, bool owner, size_t piece, size_t least, size_t *begin,
                                    size_t *end) {
    uint64_t b = atomic_load_explicit(&share->bounds, memory_order_relaxed);
    for (;;) {
        const size_t front = (size_t)(b >> 32), back = (size_t)(b & 0xFFFFFFFFu);
        if (front >= back) return false;
        const size_t left = back - front, half = (left + 1) / 2;
        size_t n = owner && left >= 2 * piece ? piece : half;
        if (owner && n < least) n = least;
        if (n > piece) n = piece;
        if (n > left) n = left;
        const uint64_t next = owner ? (uint64_t)(front + n) << 32 | back : (uint64_t)front << 32 | (back - n);
        if (atomic_compare_exchange_weak_explicit(&share->bounds, &b, next, memory_order_relaxed,
                                                  memory_order_relaxed)) {
            *begin = owner ? front : back - n;
            *end = *begin + n;
            return true;
        }
    }
}

/* The next piece [*begin, *end) for thread `id`: from its own share while it lasts, then from the others'
 * in turn; false when no unit is left. */
static inline bool work_share_next(WorkShare *shares, size_t team, size_t id, size_t piece, size_t least,
                                   size_t *begin, size_t *end) {
    if (id < team && work_share_claim(&shares[id], true, piece, least, begin, end)) return true;
    for (size_t k = 1; k < team; k++)
        if (work_share_claim(&shares[(id + k) % team], false, piece, 1, begin, end)) return true;
    return false;
}

#endif
