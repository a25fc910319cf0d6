/* Benchmark of upsample_conv (nearest 2x upsampling + 3x3 convolution) at the U-Net's upsampler shapes:
 * forward and backward (all gradients), each way of computing it (ops upsample_conv_fwd/_bwd take the
 * op's own rule; _phases and _upsampled force one way), at 1 thread and all threads, one JSON line each
 * (bench/bench.h). tools/torchref/bench_upsample_conv.py times F.interpolate + conv2d in PyTorch.
 * FLOPs: those of the 3x3 convolution on the upsampled image, 2 N 2H 2W Co Ci 9 (the phases do 4/9 of
 * them); backward counted as twice that. An argument runs only the shapes whose name contains it. */
#include <stdio.h>
#include <string.h>

#include "bench.h"
#include "core/alloc.h"
#include "core/rng.h"
#include "ops/conv2d.h"
#include "ops/upsample_conv.h"

typedef struct Shape {
    size_t n, h, ci;
} Shape;

/* fashion-mnist b64 (7 -> 14, 64 channels; 14 -> 28, 32 channels), ddpm-cifar10 b16 (8 -> 16 and 16 -> 32,
 * 256), the default preset b4 (8 -> 16, 896; 16 -> 32, 672), and 128 channels. */
static const Shape shapes[] = {{64, 7, 64},  {64, 14, 32},  {16, 8, 256},
                               {16, 16, 256}, {4, 8, 896}, {4, 16, 672}, {16, 32, 128}};

typedef struct Buffers {
    Tensor out, inp, weight, bias, dout, dinp, dweight, dbias;
    float *work, *phase_weights;
} Buffers;

static void run_forward(void *ctx) {
    Buffers *b = ctx;
    upsample_conv_forward(b->out, b->inp, b->weight, b->bias, b->work, b->phase_weights);
}

static void run_backward(void *ctx) {
    Buffers *b = ctx;
    upsample_conv_backward(b->dinp, b->dweight, b->dbias, b->dout, b->inp, b->weight, b->work, b->phase_weights);
}

static void bench_shape(const Shape *s, const char *filter) {
    const size_t n = s->n, h = s->h, c = s->ci;
    char shape[96], args[128];
    snprintf(shape, sizeof shape, "%zux%zux%zu -> %zux%zu %zu", n, h, h, 2 * h, 2 * h, c);
    if (filter && !strstr(shape, filter)) return;
    snprintf(args, sizeof args, "{\"N\":%zu,\"H\":%zu,\"W\":%zu,\"C\":%zu}", n, h, h, c);
    const size_t n_inp = n * h * h * c, n_out = 4 * n_inp, n_weight = 9 * c * c;
    Buffers b = {
        .inp = tensor_4d(alloc_floats(n_inp), n, h, h, c),
        .dinp = tensor_4d(alloc_floats(n_inp), n, h, h, c),
        .out = tensor_4d(alloc_floats(n_out), n, 2 * h, 2 * h, c),
        .dout = tensor_4d(alloc_floats(n_out), n, 2 * h, 2 * h, c),
        .weight = tensor_4d(alloc_floats(n_weight), c, c, 3, 3),
        .dweight = tensor_4d(alloc_floats(n_weight), c, c, 3, 3),
        .bias = tensor_1d(alloc_floats(c), c),
        .dbias = tensor_1d(alloc_floats(c), c),
    };
    rng_fill_normal(b.inp.data, n_inp, 1, 0, 0);
    rng_fill_normal(b.dout.data, n_out, 2, 0, 0);
    rng_fill_uniform(b.weight.data, n_weight, 3, 0, 0);
    rng_fill_uniform(b.bias.data, c, 4, 0, 0);
    const double flops = 2.0 * (double)n_out * (double)(c * 9);
    const int repeats = flops > 2e10 ? 5 : flops > 2e9 ? 11 : 31;
    static const struct {
        const char *suffix;
        int mode;
    } ways[] = {{"", -1}, {"_phases", 1}, {"_upsampled", 0}};
    int counts[2];
    const int n_counts = bench_thread_counts(counts);
    for (int t = 0; t < n_counts; t++) {
        threads_set(counts[t]);
        for (size_t wi = 0; wi < sizeof ways / sizeof ways[0]; wi++) {
            upsample_conv_force_phases(ways[wi].mode);
            b.work = alloc_floats(upsample_conv_work_floats(n, h, h, c, c, true));
            const size_t n_phase = upsample_conv_phase_weight_floats(n, h, h, c, c);
            b.phase_weights = n_phase ? alloc_floats(n_phase) : NULL;
            char op[64];
            snprintf(op, sizeof op, "upsample_conv_fwd%s", ways[wi].suffix);
            bench_report(op, shape, args, bench_median_seconds(run_forward, &b, 2, repeats), flops);
            snprintf(op, sizeof op, "upsample_conv_bwd%s", ways[wi].suffix);
            bench_report(op, shape, args, bench_median_seconds(run_backward, &b, 2, repeats), 2 * flops);
            alloc_free(b.work), alloc_free(b.phase_weights);
        }
        upsample_conv_force_phases(-1);
    }
    threads_set(0);
    Tensor all[] = {b.inp, b.dinp, b.out, b.dout, b.weight, b.dweight, b.bias, b.dbias};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) alloc_free(all[i].data);
    conv2d_cache_free();
}

int main(int argc, char **argv) {
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) bench_shape(&shapes[i], argc > 1 ? argv[1] : NULL);
    return 0;
}
