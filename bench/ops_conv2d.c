/* Benchmark of the fast conv2d (oneDNN) at the U-Net's shapes, batch 2: forward, backward-data and
 * backward-weights (+ bias) timed separately, at 1 thread and all threads, one JSON line each
 * (bench/bench.h). tools/torchref/bench_conv2d.py times the same ops in PyTorch.
 * FLOPs per op: 2 N Ho Wo Co Ci kH kW (the multiply-adds of the convolution; bias terms not counted). */
#include <stdio.h>

#include "bench.h"
#include "core/alloc.h"
#include "core/rng.h"
#include "ops/conv2d.h"

typedef struct BenchShape {
    size_t n, h, w, ci, co, k;
    Conv2dParams p;
} BenchShape;

#define PAD1 {.stride = 1, .pad_top = 1, .pad_bottom = 1, .pad_left = 1, .pad_right = 1}
static const BenchShape shapes[] = {
    {2, 64, 64, 224, 224, 3, PAD1},                                                    /* down0 resnet conv */
    {2, 32, 32, 448, 448, 3, PAD1},                                                    /* down1 resnet conv */
    {2, 8, 8, 896, 896, 3, PAD1},                                                      /* down3 / mid resnet conv */
    {2, 32, 32, 448, 448, 3, {.stride = 2, .pad_bottom = 1, .pad_right = 1}},          /* DDPM Downsample2D */
    {2, 32, 32, 448, 224, 1, {.stride = 1}},                                           /* resnet conv_shortcut */
    {2, 64, 64, 3, 224, 3, PAD1},                                                      /* conv_in */
    {2, 64, 64, 224, 3, 3, PAD1},                                                      /* conv_out */
};

typedef struct Buffers {
    Tensor out, inp, weight, bias, dout, dinp, dweight, dbias;
    Conv2dParams p;
} Buffers;

static void run_forward(void *ctx) {
    Buffers *b = ctx;
    conv2d_forward(b->out, b->inp, b->weight, b->bias, b->p);
}

static void run_backward_data(void *ctx) {
    Buffers *b = ctx;
    conv2d_backward(b->dinp, tensor_none(), tensor_none(), b->dout, b->inp, b->weight, b->p);
}

static void run_backward_weights(void *ctx) {
    Buffers *b = ctx;
    conv2d_backward(tensor_none(), b->dweight, b->dbias, b->dout, b->inp, b->weight, b->p);
}

static void bench_shape(const BenchShape *s) {
    size_t ho = conv2d_out_size(s->h, s->k, s->p.stride, s->p.pad_top, s->p.pad_bottom);
    size_t wo = conv2d_out_size(s->w, s->k, s->p.stride, s->p.pad_left, s->p.pad_right);
    size_t n_inp = s->n * s->h * s->w * s->ci, n_out = s->n * ho * wo * s->co, n_weight = s->co * s->ci * s->k * s->k;
    Buffers b = {
        .inp = tensor_4d(alloc_floats(n_inp), s->n, s->h, s->w, s->ci),
        .dinp = tensor_4d(alloc_floats(n_inp), s->n, s->h, s->w, s->ci),
        .out = tensor_4d(alloc_floats(n_out), s->n, ho, wo, s->co),
        .dout = tensor_4d(alloc_floats(n_out), s->n, ho, wo, s->co),
        .weight = tensor_4d(alloc_floats(n_weight), s->co, s->ci, s->k, s->k),
        .dweight = tensor_4d(alloc_floats(n_weight), s->co, s->ci, s->k, s->k),
        .bias = tensor_1d(alloc_floats(s->co), s->co),
        .dbias = tensor_1d(alloc_floats(s->co), s->co),
        .p = s->p,
    };
    rng_fill_normal(b.inp.data, n_inp, 1, 0, 0);
    rng_fill_normal(b.dout.data, n_out, 2, 0, 0);
    rng_fill_uniform(b.weight.data, n_weight, 3, 0, 0);
    rng_fill_uniform(b.bias.data, s->co, 4, 0, 0);

    char shape[128], args[256];
    snprintf(shape, sizeof shape, "%zux%zux%zu %zu->%zu k%zu s%d p%d%d%d%d", s->n, s->h, s->w, s->ci, s->co, s->k,
             s->p.stride, s->p.pad_top, s->p.pad_bottom, s->p.pad_left, s->p.pad_right);
    snprintf(args, sizeof args,
             "{\"N\":%zu,\"H\":%zu,\"W\":%zu,\"Ci\":%zu,\"Co\":%zu,\"k\":%zu,\"stride\":%d,"
             "\"pads\":[%d,%d,%d,%d]}",
             s->n, s->h, s->w, s->ci, s->co, s->k, s->p.stride, s->p.pad_top, s->p.pad_bottom, s->p.pad_left,
             s->p.pad_right);
    double flops = 2.0 * (double)(s->n * ho * wo) * (double)(s->co * s->ci * s->k * s->k);
    /* Enough repeats for a stable median, at least about a second per measurement. */
    int repeats = flops > 2e9 ? 9 : flops > 2e8 ? 21 : 41;

    int counts[2];
    int n_counts = bench_thread_counts(counts);
    for (int c = 0; c < n_counts; c++) {
        threads_set(counts[c]);
        bench_report("conv2d_fwd", shape, args, bench_median_seconds(run_forward, &b, 2, repeats), flops);
        bench_report("conv2d_bwd_data", shape, args, bench_median_seconds(run_backward_data, &b, 2, repeats), flops);
        bench_report("conv2d_bwd_weights", shape, args, bench_median_seconds(run_backward_weights, &b, 2, repeats),
                     flops);
    }
    threads_set(0);
    Tensor all[] = {b.inp, b.dinp, b.out, b.dout, b.weight, b.dweight, b.bias, b.dbias};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) alloc_free(all[i].data);
    conv2d_cache_free();
}

int main(void) {
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) bench_shape(&shapes[i]);
    return 0;
}
