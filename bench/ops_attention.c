/* Benchmarks of the fused attention at the U-Net's shapes (N = 2): forward, backward, and both, at 1
 * thread and all threads. FLOP convention: the forward's two matrix products, 4 N Lq Lk C; the backward
 * counted as twice that, 8 N Lq Lk C (its four products; the recomputed scores are not counted); the
 * pair 12 N Lq Lk C. tools/torchref/bench_attention.py times PyTorch doing what diffusers'
 * AttnProcessor2_0 does on the same args. */
#include <math.h>

#include "bench.h"
#include "core/alloc.h"
#include "core/rng.h"
#include "ops/attention.h"

typedef struct AttentionBench {
    size_t N, L, C;
    int heads;
    float scale;
    float *q, *k, *v, *out, *lse, *dout, *dq, *dk, *dv;
} AttentionBench;

static Tensor tokens(const AttentionBench *b, float *x) { return tensor_3d(x, b->N, b->L, b->C); }

static void run_forward(void *ctx) {
    AttentionBench *b = ctx;
    attention_forward(tokens(b, b->out), tensor_3d(b->lse, b->N, (size_t)b->heads, b->L), tokens(b, b->q),
                      tokens(b, b->k), tokens(b, b->v), b->heads, b->scale);
}

static void run_backward(void *ctx) {
    AttentionBench *b = ctx;
    attention_backward(tokens(b, b->dq), tokens(b, b->dk), tokens(b, b->dv), tokens(b, b->dout), tokens(b, b->q),
                       tokens(b, b->k), tokens(b, b->v), tokens(b, b->out),
                       tensor_3d(b->lse, b->N, (size_t)b->heads, b->L), b->heads, b->scale);
}

static void run_both(void *ctx) {
    run_forward(ctx);
    run_backward(ctx);
}

/* Repeats for about a second of measurement, at least 3. */
static int bench_repeats(void (*run)(void *), void *ctx) {
    double start = time_now();
    run(ctx);
    double once = time_now() - start;
    int repeats = (int)(1.0 / (once + 1e-9));
    return repeats < 3 ? 3 : repeats > 50 ? 50 : repeats;
}

int main(void) {
    /* (H*W, C, heads): diffusers' default U-Net (heads of 8) at 64x64, 32x32, 16x16, 8x8, and a single
     * head of 256 as in google's DDPM configs at 16x16. */
    const struct { size_t side, C; int heads; } shapes[] = {
        {32, 448, 56}, {64, 224, 28}, {16, 672, 84}, {8, 896, 112}, {16, 256, 1}};
    int counts[2];
    int n_counts = bench_thread_counts(counts);
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        AttentionBench b = {.N = 2, .L = shapes[s].side * shapes[s].side, .C = shapes[s].C, .heads = shapes[s].heads};
        b.scale = 1.0f / sqrtf((float)(b.C / (size_t)b.heads));
        const size_t n = b.N * b.L * b.C;
        float **bufs[] = {&b.q, &b.k, &b.v, &b.out, &b.dout, &b.dq, &b.dk, &b.dv};
        for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) *bufs[i] = alloc_floats(n);
        b.lse = alloc_floats(b.N * (size_t)b.heads * b.L);
        rng_fill_normal(b.q, n, 1, 0, 0), rng_fill_normal(b.k, n, 2, 0, 0), rng_fill_normal(b.v, n, 3, 0, 0);
        rng_fill_normal(b.dout, n, 4, 0, 0);
        char shape[64], args[128];
        snprintf(shape, sizeof shape, "%zux%zux%zux%zu h%d", b.N, shapes[s].side, shapes[s].side, b.C, b.heads);
        snprintf(args, sizeof args, "{\"N\":%zu,\"L\":%zu,\"C\":%zu,\"heads\":%d}", b.N, b.L, b.C, b.heads);
        const double flops = 4.0 * (double)b.N * (double)b.L * (double)b.L * (double)b.C;
        for (int t = 0; t < n_counts; t++) {
            threads_set(counts[t]);
            run_forward(&b);
            double sec = bench_median_seconds(run_forward, &b, 1, bench_repeats(run_forward, &b));
            bench_report("attention_fwd", shape, args, sec, flops);
            sec = bench_median_seconds(run_backward, &b, 1, bench_repeats(run_backward, &b));
            bench_report("attention_bwd", shape, args, sec, 2 * flops);
            sec = bench_median_seconds(run_both, &b, 1, bench_repeats(run_both, &b));
            bench_report("attention_fwdbwd", shape, args, sec, 3 * flops);
        }
        for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) alloc_free(*bufs[i]);
        alloc_free(b.lse);
    }
    return 0;
}
