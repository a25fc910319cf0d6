/* Benchmark of shortcut_add (a resnet block's 1x1 shortcut convolution of concat(a, b), residual add and
 * scale) at the U-Net's up-block shapes: the fused pass (op shortcut_add_fused) against the three ops it
 * replaces (shortcut_add_separate: concat_channels, conv2d, add_scaled), at 1 thread and all threads, one
 * JSON line each (bench/bench.h). FLOPs: those of the convolution, 2 N H W Co (Ca + Cb).
 * An argument runs only the shapes whose name contains it. */
#include <stdio.h>
#include <string.h>

#include "bench.h"
#include "core/alloc.h"
#include "core/rng.h"
#include "ops/conv2d.h"
#include "ops/elementwise.h"
#include "ops/shortcut_add.h"

typedef struct Shape {
    size_t n, h, ca, cb, co;
} Shape;

/* fashion-mnist b64's up blocks, ddpm-cifar10 b16's and the default preset b4's widest ones. */
static const Shape shapes[] = {
    {64, 28, 32, 16, 16},   {64, 28, 16, 16, 16},   {64, 14, 64, 32, 32},    {64, 14, 32, 16, 32},
    {64, 7, 64, 64, 64},    {64, 7, 64, 32, 64},    {16, 32, 256, 128, 128}, {16, 16, 256, 256, 256},
    {4, 64, 448, 224, 224}, {4, 32, 672, 448, 448},
    {64, 14, 32, 0, 32},    {64, 7, 64, 0, 64}, /* one source: fashion-mnist's attention output projections */
};

typedef struct Buffers {
    Tensor out, a, b, cat, conv, weight, bias;
} Buffers;

static void run_fused(void *ctx) {
    Buffers *b = ctx;
    shortcut_add_forward(b->out, b->a, b->b, b->weight, b->bias, 0.5f);
}

static void run_separate(void *ctx) {
    Buffers *b = ctx;
    if (b->b.shape[3] > 0) concat_channels_forward(b->cat, b->a, b->b);
    conv2d_forward(b->conv, b->b.shape[3] > 0 ? b->cat : b->a, b->weight, b->bias, (Conv2dParams){.stride = 1});
    add_scaled_forward(b->out, b->conv, b->out, 0.5f);
}

static void bench_shape(const Shape *s, const char *filter) {
    const size_t n = s->n, h = s->h, ca = s->ca, cb = s->cb, co = s->co, ci = ca + cb, rows = n * h * h;
    char shape[96], args[160];
    snprintf(shape, sizeof shape, "%zux%zux%zu %zu+%zu->%zu", n, h, h, ca, cb, co);
    if (filter && !strstr(shape, filter)) return;
    snprintf(args, sizeof args, "{\"N\":%zu,\"H\":%zu,\"W\":%zu,\"Ca\":%zu,\"Cb\":%zu,\"Co\":%zu}", n, h, h, ca, cb,
             co);
    Buffers b = {
        .out = tensor_4d(alloc_floats(rows * co), n, h, h, co),
        .a = tensor_4d(alloc_floats(rows * ca), n, h, h, ca),
        .b = tensor_4d(alloc_floats(rows * cb), n, h, h, cb),
        .cat = tensor_4d(alloc_floats(rows * ci), n, h, h, ci),
        .conv = tensor_4d(alloc_floats(rows * co), n, h, h, co),
        .weight = tensor_4d(alloc_floats(co * ci), co, ci, 1, 1),
        .bias = tensor_1d(alloc_floats(co), co),
    };
    rng_fill_normal(b.a.data, rows * ca, 1, 0, 0);
    rng_fill_normal(b.b.data, rows * cb, 2, 0, 0);
    rng_fill_uniform(b.weight.data, co * ci, 3, 0, 0);
    rng_fill_uniform(b.bias.data, co, 4, 0, 0);
    const double flops = 2.0 * (double)rows * (double)(co * ci);
    const int repeats = flops > 2e9 ? 9 : 41;
    int counts[2];
    int n_counts = bench_thread_counts(counts);
    for (int c = 0; c < n_counts; c++) {
        threads_set(counts[c]);
        /* out only grows by its halving adds, so every repeat sees finite values */
        rng_fill_normal(b.out.data, rows * co, 5, 0, 0);
        if (shortcut_add_fused(ca, cb, co, true))
            bench_report("shortcut_add_fused", shape, args, bench_median_seconds(run_fused, &b, 2, repeats), flops);
        bench_report("shortcut_add_separate", shape, args, bench_median_seconds(run_separate, &b, 2, repeats), flops);
    }
    threads_set(0);
    Tensor all[] = {b.out, b.a, b.b, b.cat, b.conv, b.weight, b.bias};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) alloc_free(all[i].data);
    conv2d_cache_free();
}

int main(int argc, char **argv) {
    shortcut_add_force(1);
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) bench_shape(&shapes[i], argc > 1 ? argv[1] : NULL);
    return 0;
}
