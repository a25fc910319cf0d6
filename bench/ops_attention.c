/* Benchmarks of the attention at the U-Net's shapes: forward, backward, and both, at 1 thread and all
 * threads, with the fused fp32 kernels (ops attention_fwd, _bwd, _fwdbwd) and in bf16 precision with the
 * bf16 kernels (attention_bf16.c; ops attention_fwd_bf16, ...), forced even where attention_bf16_applies
 * keeps the fused ones, so that the rule can be checked: the shape ends in "(auto: fp32)" there.
 * FLOP convention: the forward's two matrix products, 4 N Lq Lk C; the backward counted as twice that,
 * 8 N Lq Lk C (its four products; the recomputed scores are not counted); the pair 12 N Lq Lk C.
 * tools/torchref/bench_attention.py times PyTorch doing what diffusers' AttnProcessor2_0 does on the
 * same args (fp32 rows). An argument runs only the shapes whose name contains it, e.g. "h1". */
#include <math.h>
#include <string.h>

#include "bench.h"
#include "core/alloc.h"
#include "core/rng.h"
#include "ops/attention.h"
#include "ops/attention_internal.h"
#include "ops/precision.h"

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

/* The three measurements of one precision: op names attention_fwd, _bwd, _fwdbwd with suffix. */
static void bench_precision(AttentionBench *b, const char *suffix, const char *shape, const char *args,
                            double flops) {
    char op[64];
    run_forward(b);
    snprintf(op, sizeof op, "attention_fwd%s", suffix);
    bench_report(op, shape, args, bench_median_seconds(run_forward, b, 1, bench_repeats(run_forward, b)), flops);
    snprintf(op, sizeof op, "attention_bwd%s", suffix);
    bench_report(op, shape, args, bench_median_seconds(run_backward, b, 1, bench_repeats(run_backward, b)),
                 2 * flops);
    snprintf(op, sizeof op, "attention_fwdbwd%s", suffix);
    bench_report(op, shape, args, bench_median_seconds(run_both, b, 1, bench_repeats(run_both, b)), 3 * flops);
}

int main(int argc, char **argv) {
    /* (N, H*W, C, heads): diffusers' default U-Net (heads of 8) at 64x64, 32x32, 16x16, 8x8 (N = 2); a single
     * head of 256 as in google's DDPM configs at 16x16 (N = 2, and N = 16 as ddpm-cifar10 trains); heads of
     * 64 at 16x16; a single head of 32 at 14x14 (N = 64). */
    const struct { size_t N, side, C; int heads; } shapes[] = {
        {2, 32, 448, 56}, {2, 64, 224, 28}, {2, 16, 672, 84}, {2, 8, 896, 112}, {2, 16, 256, 1},
        {16, 16, 256, 1}, {2, 16, 896, 14}, {64, 14, 32, 1}, {64, 7, 64, 2}};
    const bool bf16 = ops_bf16_supported();
    int counts[2];
    int n_counts = bench_thread_counts(counts);
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        AttentionBench b = {.N = shapes[s].N, .L = shapes[s].side * shapes[s].side, .C = shapes[s].C,
                            .heads = shapes[s].heads};
        char shape[64], shape_bf16[80], args[128];
        snprintf(shape, sizeof shape, "%zux%zux%zux%zu h%d", b.N, shapes[s].side, shapes[s].side, b.C, b.heads);
        if (argc > 1 && !strstr(shape, argv[1])) continue;
        b.scale = 1.0f / sqrtf((float)(b.C / (size_t)b.heads));
        const size_t n = b.N * b.L * b.C;
        float **bufs[] = {&b.q, &b.k, &b.v, &b.out, &b.dout, &b.dq, &b.dk, &b.dv};
        for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) *bufs[i] = alloc_floats(n);
        b.lse = alloc_floats(b.N * (size_t)b.heads * b.L);
        rng_fill_normal(b.q, n, 1, 0, 0), rng_fill_normal(b.k, n, 2, 0, 0), rng_fill_normal(b.v, n, 3, 0, 0);
        rng_fill_normal(b.dout, n, 4, 0, 0);
        const AttentionShape as = {.N = b.N, .Lq = b.L, .Lk = b.L, .C = b.C, .n_heads = (size_t)b.heads,
                                   .D = b.C / (size_t)b.heads};
        snprintf(shape_bf16, sizeof shape_bf16, "%s%s", shape, attention_bf16_applies(as) ? "" : " (auto: fp32)");
        snprintf(args, sizeof args, "{\"N\":%zu,\"L\":%zu,\"C\":%zu,\"heads\":%d}", b.N, b.L, b.C, b.heads);
        const double flops = 4.0 * (double)b.N * (double)b.L * (double)b.L * (double)b.C;
        for (int t = 0; t < n_counts; t++) {
            threads_set(counts[t]);
            bench_precision(&b, "", shape, args, flops);
            if (!bf16) continue;
            ops_set_precision(OPS_PRECISION_BF16);
            attention_set_tuning((AttentionTuning){.bf16 = ATTENTION_BF16_ALWAYS});
            bench_precision(&b, "_bf16", shape_bf16, args, flops);
            attention_set_tuning((AttentionTuning){0});
            ops_set_precision(OPS_PRECISION_FP32);
        }
        for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) alloc_free(*bufs[i]);
        alloc_free(b.lse);
    }
    return 0;
}
