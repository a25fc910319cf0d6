/* Shared helpers of the benchmark programs in bench/: median timing and one JSON line per measurement,
 * {"op", "shape", "args", "threads", "seconds", "gflops"}, which scripts/bench-ops collects and
 * tools/bench_ops_pytorch.py joins with PyTorch's time for the same op, args and threads.
 * Header-only: each bench program is its own main. */
#ifndef DIFFUSE_BENCH_H
#define DIFFUSE_BENCH_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/threads.h"
#include "core/timer.h"

static int bench_compare_doubles(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Median seconds of `repeats` calls after `warmup` uncounted ones. */
static inline double bench_median_seconds(void (*run)(void *ctx), void *ctx, int warmup, int repeats) {
    for (int i = 0; i < warmup; i++) run(ctx);
    double *times = malloc((size_t)repeats * sizeof *times);
    for (int i = 0; i < repeats; i++) {
        double start = time_now();
        run(ctx);
        times[i] = time_now() - start;
    }
    qsort(times, (size_t)repeats, sizeof *times, bench_compare_doubles);
    double median = times[repeats / 2];
    free(times);
    return median;
}

/* The median over at least `repeats` calls and at least `min_seconds` of them (counted from the last
 * warm-up call's time), after `warmup` uncounted ones: a short step measured over a second or two is not
 * all caught by one slow moment of a busy machine. */
static inline double bench_median_seconds_over(void (*run)(void *ctx), void *ctx, int warmup, int repeats,
                                               double min_seconds) {
    double last = 0;
    for (int i = 0; i < warmup; i++) {
        double start = time_now();
        run(ctx);
        last = time_now() - start;
    }
    if (last > 0 && min_seconds / last > repeats) repeats = (int)(min_seconds / last) + 1;
    return bench_median_seconds(run, ctx, 0, repeats);
}

/* The fastest of `repeats` runs after `warmup` untimed ones: for a machine's capacity, which a busy moment
 * can only hide. */
static inline double bench_best_seconds(void (*run)(void *ctx), void *ctx, int warmup, int repeats) {
    for (int i = 0; i < warmup; i++) run(ctx);
    double best = 0;
    for (int i = 0; i < repeats; i++) {
        double start = time_now();
        run(ctx);
        double seconds = time_now() - start;
        best = i == 0 || seconds < best ? seconds : best;
    }
    return best;
}

/* args: a JSON object literal of the op's parameters, e.g. "{\"N\":2,\"H\":64}". */
static inline void bench_report(const char *op, const char *shape, const char *args, double seconds, double flops) {
    printf("{\"op\":\"%s\",\"shape\":\"%s\",\"args\":%s,\"threads\":%d,\"seconds\":%.6g,\"gflops\":%.4g}\n", op, shape,
           args, threads_get(), seconds, flops / seconds * 1e-9);
    fflush(stdout);
}

/* The thread counts to measure: 1 and all cores (once when they are equal). */
static inline int bench_thread_counts(int counts[2]) {
    counts[0] = 1;
    counts[1] = threads_available();
    return counts[1] > 1 ? 2 : 1;
}

#endif
