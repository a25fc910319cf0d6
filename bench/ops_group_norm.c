/* Benchmark of group_norm_forward / group_norm_backward at the U-Net's shapes (batch 2, G = 32), at 1
 * thread and all threads; tools/torchref/bench_group_norm.py times PyTorch on the same arguments.
 *
 * Group norm is memory-bound, so the "gflops" field is a nominal rate that only serves the ratio against
 * PyTorch: by convention the forward counts 8 flops per element (statistics: add, subtract, multiply-add;
 * output: subtract, multiply-add) and the backward 10 flops per element (sums: add, subtract, multiply-add;
 * input gradient: two multiply-adds, subtract, accumulate). */
#include <stdio.h>

#include "bench.h"
#include "core/alloc.h"
#include "core/rng.h"
#include "ops/group_norm.h"

#define FWD_FLOPS_PER_ELEMENT 8.0
#define BWD_FLOPS_PER_ELEMENT 10.0

typedef struct Case {
    size_t n, h, w, c;
    int g;
    float eps;
    Tensor inp, out, dout, dinp, weight, bias, dweight, dbias, mean, rstd;
} Case;

static void run_forward(void *ctx) {
    Case *k = ctx;
    group_norm_forward(k->out, k->mean, k->rstd, k->inp, k->weight, k->bias, k->g, k->eps);
}

static void run_backward(void *ctx) {
    Case *k = ctx;
    group_norm_backward(k->dinp, k->dweight, k->dbias, k->dout, k->inp, k->mean, k->rstd, k->weight, k->g);
}

int main(void) {
    static const size_t shapes[][4] = {
        {2, 64, 64, 224}, {2, 32, 32, 448}, {2, 16, 16, 672}, {2, 8, 8, 896}, {2, 64, 64, 448}, {2, 64, 64, 672},
    };
    int counts[2];
    int n_counts = bench_thread_counts(counts);
    for (int t = 0; t < n_counts; t++) {
        threads_set(counts[t]);
        for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
            Case k = {.n = shapes[i][0], .h = shapes[i][1], .w = shapes[i][2], .c = shapes[i][3], .g = 32, .eps = 1e-5f};
            size_t numel = k.n * k.h * k.w * k.c;
            k.inp = tensor_4d(alloc_floats(numel), k.n, k.h, k.w, k.c);
            k.out = tensor_4d(alloc_floats(numel), k.n, k.h, k.w, k.c);
            k.dout = tensor_4d(alloc_floats(numel), k.n, k.h, k.w, k.c);
            k.dinp = tensor_4d(alloc_floats(numel), k.n, k.h, k.w, k.c);
            k.weight = tensor_1d(alloc_floats(k.c), k.c);
            k.bias = tensor_1d(alloc_floats(k.c), k.c);
            k.dweight = tensor_1d(alloc_floats(k.c), k.c);
            k.dbias = tensor_1d(alloc_floats(k.c), k.c);
            k.mean = tensor_2d(alloc_floats(k.n * (size_t)k.g), k.n, (size_t)k.g);
            k.rstd = tensor_2d(alloc_floats(k.n * (size_t)k.g), k.n, (size_t)k.g);
            rng_fill_normal(k.inp.data, numel, 1, 0, 0);
            rng_fill_normal(k.dout.data, numel, 1, 1, 0);
            rng_fill_normal(k.weight.data, k.c, 1, 2, 0);
            rng_fill_normal(k.bias.data, k.c, 1, 3, 0);

            int repeats = (int)(4e7 / (double)numel);
            if (repeats < 21) repeats = 21;
            char shape[64], args[160];
            snprintf(shape, sizeof shape, "%zux%zux%zux%zu G%d", k.n, k.h, k.w, k.c, k.g);
            snprintf(args, sizeof args, "{\"N\":%zu,\"H\":%zu,\"W\":%zu,\"C\":%zu,\"G\":%d,\"eps\":%g}", k.n, k.h, k.w,
                     k.c, k.g, (double)k.eps);
            double fwd = bench_median_seconds(run_forward, &k, 3, repeats);
            bench_report("group_norm_fwd", shape, args, fwd, FWD_FLOPS_PER_ELEMENT * (double)numel);
            double bwd = bench_median_seconds(run_backward, &k, 3, repeats);
            bench_report("group_norm_bwd", shape, args, bwd, BWD_FLOPS_PER_ELEMENT * (double)numel);

            Tensor all[] = {k.inp, k.out, k.dout, k.dinp, k.weight, k.bias, k.dweight, k.dbias, k.mean, k.rstd};
            for (size_t j = 0; j < sizeof all / sizeof all[0]; j++) alloc_free(all[j].data);
        }
    }
    return 0;
}
