/* Benchmarks of the linear layer (oneDNN sgemm) at the U-Net's shapes: the attention projections at
 * 64x64, 32x32, 16x16 and 8x8 (M = N * L rows, N = 2, C -> C), the time-embedding MLP at batch 2
 * (224 -> 896, 896 -> 896) and fashion-mnist's projections at batch 64 (14x14, 32 -> 32; 7x7, 64 -> 64); forward (2 M Fi Fo FLOP) and backward (dinp, dweight, dbias: 4 M Fi Fo), at
 * 1 thread and all threads. tools/torchref/bench_linear.py times torch.nn.functional.linear likewise. */
#include "bench.h"
#include "core/alloc.h"
#include "core/rng.h"
#include "ops/linear.h"

typedef struct LinearBench {
    size_t M, Fi, Fo;
    float *inp, *weight, *bias, *out, *dout, *dinp, *dweight, *dbias;
} LinearBench;

static void run_forward(void *ctx) {
    LinearBench *b = ctx;
    linear_forward(tensor_2d(b->out, b->M, b->Fo), tensor_2d(b->inp, b->M, b->Fi), tensor_2d(b->weight, b->Fo, b->Fi),
                   tensor_1d(b->bias, b->Fo));
}

static void run_backward(void *ctx) {
    LinearBench *b = ctx;
    linear_backward(tensor_2d(b->dinp, b->M, b->Fi), tensor_2d(b->dweight, b->Fo, b->Fi), tensor_1d(b->dbias, b->Fo),
                    tensor_2d(b->dout, b->M, b->Fo), tensor_2d(b->inp, b->M, b->Fi),
                    tensor_2d(b->weight, b->Fo, b->Fi));
}

static int bench_repeats(void (*run)(void *), void *ctx) {
    double start = time_now();
    run(ctx);
    double once = time_now() - start;
    int repeats = (int)(0.5 / (once + 1e-9));
    return repeats < 5 ? 5 : repeats > 200 ? 200 : repeats;
}

int main(void) {
    const size_t shapes[][3] = {{8192, 224, 224}, {2048, 448, 448}, {512, 672, 672}, {128, 896, 896},
                                {2, 224, 896},    {2, 896, 896},    {12544, 32, 32}, {3136, 64, 64}};
    int counts[2];
    int n_counts = bench_thread_counts(counts);
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        LinearBench b = {.M = shapes[s][0], .Fi = shapes[s][1], .Fo = shapes[s][2]};
        b.inp = alloc_floats(b.M * b.Fi), b.dinp = alloc_floats(b.M * b.Fi);
        b.out = alloc_floats(b.M * b.Fo), b.dout = alloc_floats(b.M * b.Fo);
        b.weight = alloc_floats(b.Fo * b.Fi), b.dweight = alloc_floats(b.Fo * b.Fi);
        b.bias = alloc_floats(b.Fo), b.dbias = alloc_floats(b.Fo);
        rng_fill_normal(b.inp, b.M * b.Fi, 1, 0, 0), rng_fill_normal(b.weight, b.Fo * b.Fi, 2, 0, 0);
        rng_fill_normal(b.bias, b.Fo, 3, 0, 0), rng_fill_normal(b.dout, b.M * b.Fo, 4, 0, 0);
        char shape[64], args[96];
        snprintf(shape, sizeof shape, "M%zu %zu->%zu", b.M, b.Fi, b.Fo);
        snprintf(args, sizeof args, "{\"M\":%zu,\"Fi\":%zu,\"Fo\":%zu}", b.M, b.Fi, b.Fo);
        const double flops = 2.0 * (double)b.M * (double)b.Fi * (double)b.Fo;
        for (int t = 0; t < n_counts; t++) {
            threads_set(counts[t]);
            double sec = bench_median_seconds(run_forward, &b, 2, bench_repeats(run_forward, &b));
            bench_report("linear_fwd", shape, args, sec, flops);
            sec = bench_median_seconds(run_backward, &b, 2, bench_repeats(run_backward, &b));
            bench_report("linear_bwd", shape, args, sec, 2 * flops);
        }
        float *bufs[] = {b.inp, b.dinp, b.out, b.dout, b.weight, b.dweight, b.bias, b.dbias};
        for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) alloc_free(bufs[i]);
    }
    return 0;
}
