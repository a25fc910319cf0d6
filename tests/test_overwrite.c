/* Gradients marked for overwriting (tensor_overwrite, ops.h): every op that takes one writes the same
 * values into a buffer full of NaN as it adds into zeros, on each of its paths (conv2d: backward-data as
 * a forward convolution, Winograd, stride 2, a narrow input; linear: narrow and sgemm; attention: lanes
 * and tile kernels, one and two passes; group norm: slab and chunk splits). A path that added into the
 * buffer instead would leave NaN in it. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "harness.h"
#include "ops/attention.h"
#include "ops/attention_internal.h"
#include "ops/conv2d.h"
#include "ops/elementwise.h"
#include "ops/group_norm.h"
#include "ops/linear.h"

static float *normal(size_t n, uint64_t seed) {
    float *x = xmalloc(n * sizeof(float));
    fill_normal(x, n, seed);
    return x;
}

/* Runs backward twice, into zeros (accumulating) and into NaN (marked for overwriting), and EXPECTs the
 * same values. backward receives the gradient and the zeroed buffers for the op's other gradients. */
typedef void (*Backward)(const void *ctx, Tensor grad);

static void expect_overwrite_matches(const char *what, Tensor shape, Backward backward, const void *ctx) {
    const size_t n = tensor_numel(shape);
    float *added = xcalloc(n, sizeof(float)), *written = xmalloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) written[i] = NAN;
    Tensor a = shape, w = shape;
    a.data = added, w.data = written;
    backward(ctx, a);
    backward(ctx, tensor_overwrite(w));
    size_t bad = 0, first = 0;
    for (size_t i = 0; i < n; i++)
        if (!(written[i] == added[i])) first = bad++ ? first : i;
    EXPECT(bad == 0, "%s: %zu of %zu elements differ, first [%zu] %g written against %g added", what, bad, n, first,
           (double)written[first], (double)added[first]);
    free(added);
    free(written);
}

/* ---- elementwise ---- */

typedef struct {
    Tensor dout;
} ScaledArgs;

static void scaled_backward(const void *ctx, Tensor grad) {
    const ScaledArgs *a = ctx;
    add_scaled_backward(grad, tensor_none(), a->dout, 0.75f);
}

typedef struct {
    Tensor dout;
    size_t ca, cb;
    bool second; /* the gradient under test is db (else da) */
} ConcatArgs;

static void concat_backward(const void *ctx, Tensor grad) {
    const ConcatArgs *a = ctx;
    const size_t *s = a->dout.shape;
    float *other = xcalloc(s[0] * s[1] * s[2] * (a->second ? a->ca : a->cb), sizeof(float));
    Tensor other_t = tensor_4d(other, s[0], s[1], s[2], a->second ? a->ca : a->cb);
    concat_channels_backward(a->second ? other_t : grad, a->second ? grad : other_t, a->dout);
    free(other);
}

static void test_elementwise_overwrite(void) {
    float *dout = normal(2 * 5 * 5 * 8, 1);
    ScaledArgs scaled = {tensor_4d(dout, 2, 5, 5, 8)};
    expect_overwrite_matches("add_scaled_backward da", scaled.dout, scaled_backward, &scaled);
    for (int second = 0; second < 2; second++) {
        ConcatArgs concat = {tensor_4d(dout, 2, 5, 5, 8), 3, 5, second};
        expect_overwrite_matches(second ? "concat_channels_backward db" : "concat_channels_backward da",
                                 tensor_4d(NULL, 2, 5, 5, second ? 5 : 3), concat_backward, &concat);
    }
    free(dout);
}

/* ---- conv2d ---- */

typedef struct {
    Tensor dout, inp, weight;
    Conv2dParams p;
} ConvArgs;

static void conv_backward(const void *ctx, Tensor grad) {
    const ConvArgs *a = ctx;
    float *dw = xcalloc(tensor_numel(a->weight), sizeof(float)), *db = xcalloc(a->weight.shape[0], sizeof(float));
    Tensor dweight = a->weight;
    dweight.data = dw;
    conv2d_backward(grad, dweight, tensor_1d(db, a->weight.shape[0]), a->dout, a->inp, a->weight, a->p);
    free(dw);
    free(db);
}

static void test_conv2d_overwrite(void) {
    /* n, side, ci, co, kernel, stride: a forward convolution for backward-data (512 positions), Winograd
     * (64 channels, 1024 positions, where the CPU has it), stride 2, a narrow input, a 1x1 shortcut */
    const struct { size_t n, side, ci, co, k; int stride; const char *what; } cases[] = {
        {2, 16, 16, 16, 3, 1, "3x3 as forward"}, {4, 16, 64, 64, 3, 1, "3x3 Winograd"},
        {2, 16, 16, 32, 3, 2, "3x3 stride 2"},  {2, 16, 3, 16, 3, 1, "3x3 narrow input"},
        {2, 16, 48, 16, 1, 1, "1x1"}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        const size_t n = cases[c].n, side = cases[c].side, ci = cases[c].ci, co = cases[c].co, k = cases[c].k;
        const int stride = cases[c].stride, pad = (int)k / 2;
        const size_t out_side = (side + 2 * (size_t)pad - k) / (size_t)stride + 1;
        float *inp = normal(n * side * side * ci, 2), *weight = normal(co * ci * k * k, 3);
        float *dout = normal(n * out_side * out_side * co, 4);
        ConvArgs args = {tensor_4d(dout, n, out_side, out_side, co), tensor_4d(inp, n, side, side, ci),
                         tensor_4d(weight, co, ci, k, k), conv2d_params(stride, pad)};
        char what[64];
        snprintf(what, sizeof what, "conv2d_backward dinp, %s", cases[c].what);
        expect_overwrite_matches(what, args.inp, conv_backward, &args);
        free(inp);
        free(weight);
        free(dout);
    }
}

/* ---- linear ---- */

typedef struct {
    Tensor dout, inp, weight;
} LinearArgs;

static void linear_backward_into(const void *ctx, Tensor grad) {
    const LinearArgs *a = ctx;
    float *dw = xcalloc(tensor_numel(a->weight), sizeof(float));
    linear_backward(grad, tensor_2d(dw, a->weight.shape[0], a->weight.shape[1]), tensor_none(), a->dout, a->inp,
                    a->weight);
    free(dw);
}

static void test_linear_overwrite(void) {
    /* rows, in, out: the narrow kernel (multiples of 16, on AVX-512) and sgemm */
    const size_t cases[][3] = {{100, 32, 32}, {37, 20, 12}};
    for (size_t c = 0; c < 2; c++) {
        const size_t m = cases[c][0], fi = cases[c][1], fo = cases[c][2];
        float *inp = normal(m * fi, 5), *weight = normal(fo * fi, 6), *dout = normal(m * fo, 7);
        LinearArgs args = {tensor_2d(dout, m, fo), tensor_2d(inp, m, fi), tensor_2d(weight, fo, fi)};
        expect_overwrite_matches(c ? "linear_backward dinp, sgemm" : "linear_backward dinp, narrow", args.inp,
                                 linear_backward_into, &args);
        free(inp);
        free(weight);
        free(dout);
    }
}

/* ---- attention ---- */

typedef struct {
    Tensor q, k, v, out, lse, dout;
    int heads, which; /* which gradient is under test: 0 dq, 1 dk, 2 dv */
} AttentionArgs3;

static void attention_backward_into(const void *ctx, Tensor grad) {
    const AttentionArgs3 *a = ctx;
    const size_t n = tensor_numel(a->q);
    float *others = xcalloc(2 * n, sizeof(float));
    Tensor g[3], spare = a->q;
    for (int i = 0, o = 0; i < 3; i++) {
        spare.data = others + (size_t)o * n;
        g[i] = i == a->which ? grad : spare;
        o += i != a->which;
    }
    const float scale = 1.0f / sqrtf((float)(a->q.shape[2] / (size_t)a->heads));
    attention_backward(g[0], g[1], g[2], a->dout, a->q, a->k, a->v, a->out, a->lse, a->heads, scale);
    free(others);
}

static void test_attention_overwrite(void) {
    /* N, L, C, heads: heads of 8 (lanes kernels) and of 32 (tile kernels); one and two passes */
    const size_t cases[][4] = {{2, 20, 16, 2}, {2, 70, 64, 2}};
    const AttentionBackwardPlan plans[] = {ATTENTION_BACKWARD_ONE_PASS, ATTENTION_BACKWARD_TWO_PASS};
    for (size_t c = 0; c < 2; c++) {
        const size_t N = cases[c][0], L = cases[c][1], C = cases[c][2], n = N * L * C;
        const int heads = (int)cases[c][3];
        float *q = normal(n, 8), *k = normal(n, 9), *v = normal(n, 10), *dout = normal(n, 11);
        float *out = xmalloc(n * sizeof(float)), *lse = xmalloc(N * (size_t)heads * L * sizeof(float));
        AttentionArgs3 args = {tensor_3d(q, N, L, C),   tensor_3d(k, N, L, C),
                               tensor_3d(v, N, L, C),   tensor_3d(out, N, L, C),
                               tensor_3d(lse, N, (size_t)heads, L), tensor_3d(dout, N, L, C), heads, 0};
        const float scale = 1.0f / sqrtf((float)(C / (size_t)heads));
        attention_forward(args.out, args.lse, args.q, args.k, args.v, heads, scale);
        for (int plan = 0; plan < 2; plan++) {
            attention_set_tuning((AttentionTuning){.backward = plans[plan]});
            for (args.which = 0; args.which < 3; args.which++) {
                char what[96];
                snprintf(what, sizeof what, "attention_backward d%c, heads of %zu, %s", "qkv"[args.which],
                         C / (size_t)heads, plan ? "two passes" : "one pass");
                expect_overwrite_matches(what, args.q, attention_backward_into, &args);
            }
        }
        attention_set_tuning((AttentionTuning){0});
        free(q), free(k), free(v), free(dout), free(out), free(lse);
    }
}

/* ---- group norm ---- */

typedef struct {
    Tensor dout, inp, mean, rstd, weight, bias;
    int groups;
    bool silu;
} NormArgs;

static void norm_backward(const void *ctx, Tensor grad) {
    const NormArgs *a = ctx;
    const size_t c = a->weight.shape[0];
    float *dw = xcalloc(2 * c, sizeof(float));
    if (a->silu)
        group_norm_silu_backward(grad, tensor_none(), tensor_1d(dw, c), tensor_1d(dw + c, c), a->dout, a->inp,
                                 tensor_none(), tensor_none(), a->mean,
                                 a->rstd, a->weight, a->bias, a->groups);
    else
        group_norm_backward(grad, tensor_1d(dw, c), tensor_1d(dw + c, c), a->dout, a->inp, a->mean, a->rstd,
                            a->weight, a->groups);
    free(dw);
}

static void test_group_norm_overwrite(void) {
    /* N, side, C, groups: whole-row slabs (several samples); one sample over 1 MB (the chunk split) */
    const size_t cases[][4] = {{4, 6, 32, 8}, {1, 48, 128, 32}};
    for (size_t c = 0; c < 2; c++) {
        const size_t N = cases[c][0], side = cases[c][1], C = cases[c][2], G = cases[c][3];
        const size_t n = N * side * side * C;
        float *inp = normal(n, 12), *dout = normal(n, 13), *w = normal(C, 14), *b = normal(C, 15);
        float *out = xmalloc(n * sizeof(float)), *mean = xmalloc(N * G * sizeof(float));
        float *rstd = xmalloc(N * G * sizeof(float));
        NormArgs args = {tensor_4d(dout, N, side, side, C), tensor_4d(inp, N, side, side, C), tensor_2d(mean, N, G),
                         tensor_2d(rstd, N, G), tensor_1d(w, C), tensor_1d(b, C), (int)G, false};
        for (int silu = 0; silu < 2; silu++) {
            args.silu = silu;
            if (silu)
                group_norm_silu_forward(tensor_4d(out, N, side, side, C), args.mean, args.rstd, args.inp, tensor_none(),
                                        tensor_none(), args.weight, args.bias, (int)G, 1e-5f);
            else
                group_norm_forward(tensor_4d(out, N, side, side, C), args.mean, args.rstd, args.inp, args.weight,
                                   args.bias, (int)G, 1e-5f);
            char what[96];
            snprintf(what, sizeof what, "%s dinp, %zux%zux%zux%zu", silu ? "group_norm_silu_backward" : "group_norm_backward",
                     N, side, side, C);
            expect_overwrite_matches(what, args.inp, norm_backward, &args);
        }
        free(inp), free(dout), free(w), free(b), free(out), free(mean), free(rstd);
    }
}

int main(void) {
    RUN(test_elementwise_overwrite);
    RUN(test_conv2d_overwrite);
    RUN(test_linear_overwrite);
    RUN(test_attention_overwrite);
    RUN(test_group_norm_overwrite);
    return harness_finish();
}
