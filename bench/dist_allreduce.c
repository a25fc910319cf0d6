/* All-reduce cost at the ranks it is started with, on this machine:
 *     mpirun --oversubscribe -np 2 --bind-to none [--allow-run-as-root] build/bench/dist_allreduce [--quick]
 * (single machine: Open MPI picks its shared-memory transport; add --mca btl self,vader to be sure).
 *
 * 1. Time of dist_allreduce_mean_floats (rank-ordered, deterministic) against the MPI library's own
 *    MPI_Allreduce (dist_allreduce_mean_floats_unordered), for buffers of 1 MB .. 512 MB and for the
 *    gradients of the two model sizes: ddpm-cifar10 (35.7M parameters, 143 MB) and the default
 *    UNet2DModel (274M, 1.1 GB). One JSON line each: seconds (median), algbw = bytes / seconds and
 *    busbw = algbw * 2 (P-1) / P, the traffic each rank's link carries (nccl-tests' convention).
 * 2. Overlap: a simulated backward pass over the ddpm-cifar10 gradients, in 25 MB buckets (DDP's
 *    default), computed then all-reduced ("serial"), or with each bucket started as soon as its slice
 *    is computed and dist_progress called between pieces of compute ("overlapped"). The compute (a
 *    fixed amount of arithmetic in L1) takes about as long as the all-reduce, so overlap could save up
 *    to half of the serial time.
 * The cost relative to a training step is the all-reduce time over the step time measured by the
 * training benchmark (bench/train_*), for the same model and ranks. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "core/alloc.h"
#include "core/threads.h"
#include "core/timer.h"
#include "dist/dist.h"

static int compare_doubles(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Median over repeats of rank 0's time; every rank starts together after a barrier. */
static double median_seconds(void (*op)(float *, size_t), float *buf, size_t n, int repeats) {
    double *t = xmalloc((size_t)repeats * sizeof *t);
    op(buf, n); /* warm-up: pages touched, connections made */
    for (int r = 0; r < repeats; r++) {
        dist_barrier();
        double start = time_now();
        op(buf, n);
        t[r] = time_now() - start;
    }
    qsort(t, (size_t)repeats, sizeof *t, compare_doubles);
    double median = t[repeats / 2];
    free(t);
    return median;
}

static void report(const char *impl, const char *what, size_t n, double seconds) {
    if (!dist_is_root()) return;
    const double bytes = (double)n * sizeof(float), p = dist_world_size();
    printf("{\"op\":\"allreduce_mean\",\"impl\":\"%s\",\"what\":\"%s\",\"ranks\":%d,\"MB\":%.1f,\"seconds\":%.6g,"
           "\"algbw_GBps\":%.3g,\"busbw_GBps\":%.3g}\n",
           impl, what, dist_world_size(), bytes / 1e6, seconds, bytes / seconds * 1e-9,
           bytes / seconds * 1e-9 * 2 * (p - 1) / p);
    fflush(stdout);
}

static void measure_size(const char *what, size_t n) {
    float *buf = alloc_floats(n);
    for (size_t i = 0; i < n; i++) buf[i] = (float)(i % 1000) * 1e-3f;
    /* About 1 GB of traffic per measurement, and at least 3 repeats. */
    int repeats = (int)(((size_t)1 << 28) / n);
    repeats = repeats < 3 ? 3 : repeats > 21 ? 21 : repeats;
    report("ordered", what, n, median_seconds(dist_allreduce_mean_floats, buf, n, repeats));
    report("mpi", what, n, median_seconds(dist_allreduce_mean_floats_unordered, buf, n, repeats));
    alloc_free(buf);
}

/* ---- overlap --------------------------------------------------------------------------------- */

/* Compute-bound work in L1, a stand-in for a layer's backward: `units` fixed amounts of it. */
static float sink;
static void compute(size_t units) {
    float a[64];
    for (int j = 0; j < 64; j++) a[j] = (float)j;
    for (size_t u = 0; u < units; u++)
        for (int k = 0; k < 2000; k++)
            for (int j = 0; j < 64; j++) a[j] = a[j] * 0.999f + 0.5f;
    sink += a[7];
}

/* The fastest of several timings: other load on the machine only ever adds time. */
static size_t units_for_seconds(double seconds) {
    double per_unit = 1e30;
    for (int rep = 0; rep < 20; rep++) {
        double start = time_now();
        compute(20);
        double t = (time_now() - start) / 20;
        per_unit = t < per_unit ? t : per_unit;
    }
    return (size_t)(seconds / per_unit);
}

static void measure_overlap(size_t n, double compute_seconds) {
    const size_t bucket_floats = 25u << 18; /* 25 MB */
    const int n_buckets = (int)((n + bucket_floats - 1) / bucket_floats), pieces = 16;
    float *grads = alloc_floats(n);
    DistBucket **buckets = xmalloc((size_t)n_buckets * sizeof *buckets);
    for (int b = 0; b < n_buckets; b++) {
        size_t start = (size_t)b * bucket_floats, len = n - start < bucket_floats ? n - start : bucket_floats;
        buckets[b] = dist_bucket_init(grads + start, len);
    }
    /* The same work on every rank: rank 0's calibration (the sum over ranks of it and zeros). */
    double calibrated = dist_is_root() ? (double)units_for_seconds(compute_seconds / n_buckets / pieces) : 0;
    dist_allreduce_sum_doubles(&calibrated, 1);
    const size_t units = (size_t)calibrated;

    /* The two variants alternate, and each keeps its fastest repeat: other load on the machine only
     * ever adds time. */
    double t_compute = 1e30, t_comm = 1e30, t_serial = 1e30, t_overlap = 1e30;
    for (int rep = 0; rep < 7; rep++) {
        dist_barrier();
        double t0 = time_now();
        for (int b = 0; b < n_buckets; b++)
            for (int p = 0; p < pieces; p++) compute(units);
        double t1 = time_now();
        for (int b = 0; b < n_buckets; b++) dist_allreduce_start(buckets[b]);
        for (int b = 0; b < n_buckets; b++) dist_allreduce_wait(buckets[b]);
        double t2 = time_now();
        dist_barrier();
        double t3 = time_now();
        /* Backward produces the last layers' gradients first: buckets in reverse order. */
        for (int b = n_buckets - 1; b >= 0; b--) {
            for (int p = 0; p < pieces; p++) {
                compute(units);
                dist_progress();
            }
            dist_allreduce_start(buckets[b]);
        }
        for (int b = 0; b < n_buckets; b++) dist_allreduce_wait(buckets[b]);
        double t4 = time_now();
        t_compute = t1 - t0 < t_compute ? t1 - t0 : t_compute;
        t_comm = t2 - t1 < t_comm ? t2 - t1 : t_comm;
        t_serial = t2 - t0 < t_serial ? t2 - t0 : t_serial;
        t_overlap = t4 - t3 < t_overlap ? t4 - t3 : t_overlap;
    }
    if (dist_is_root())
        printf("{\"op\":\"overlap\",\"ranks\":%d,\"MB\":%.1f,\"buckets\":%d,\"compute_s\":%.4g,\"allreduce_s\":%.4g,"
               "\"serial_s\":%.4g,\"overlapped_s\":%.4g,\"saved_s\":%.4g}\n",
               dist_world_size(), (double)n * sizeof(float) / 1e6, n_buckets, t_compute, t_comm, t_serial, t_overlap,
               t_serial - t_overlap);
    for (int b = 0; b < n_buckets; b++) dist_bucket_free(buckets[b]);
    free(buckets);
    alloc_free(grads);
}

int main(int argc, char **argv) {
    dist_init(&argc, &argv);
    bool quick = argc > 1 && strcmp(argv[1], "--quick") == 0;
    if (dist_world_size() < 2) {
        printf("dist_allreduce: a world of %d; run it under mpirun -np 2 (see the comment at the top of "
               "bench/dist_allreduce.c)\n", dist_world_size());
        dist_finalize();
        return 0;
    }
    /* The ranks of one machine share its cores. */
    int threads = threads_available() / dist_local_size();
    threads_set(threads > 0 ? threads : 1);
    for (size_t mb = 1; mb <= (quick ? 64u : 512u); mb *= 2) {
        char what[32];
        snprintf(what, sizeof what, "%zu MB", mb);
        measure_size(what, mb << 18);
    }
    measure_size("ddpm-cifar10 grads", 35700000);
    if (!quick) measure_size("default UNet2DModel grads", 274000000);
    /* Compute about as long as the all-reduce: what overlap could hide at best is the shorter of them. */
    measure_overlap(35700000, 0.3);
    dist_finalize();
    return 0;
}
