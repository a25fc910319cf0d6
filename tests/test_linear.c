/* Linear: finite-difference gradients of the reference path, both paths against PyTorch fixtures
 * (tools/torchref/fixtures_linear.py), the oneDNN path against the reference at the U-Net's shapes
 * (guard words, NaN checks, accumulation), and CHECK failures on bad arguments. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/half.h"
#include "core/tensor.h"
#include "core/threads.h"
#include "harness.h"
#include "ops/linear.h"
#include "ops/linear_internal.h"
#include "ops/precision.h"

typedef void (*LinearForward)(Tensor out, Tensor inp, Tensor weight, Tensor bias);
typedef void (*LinearBackward)(Tensor dinp, Tensor dweight, Tensor dbias, Tensor dout, Tensor inp, Tensor weight);

/* ------------------------------------------------------------------------------------------------ */
/* Finite differences of the reference path */

typedef struct LinearGradcheck {
    size_t M, Fi, Fo;
    float *inp, *weight, *bias, *out, *dout;
} LinearGradcheck;

static double linear_gradcheck_loss(void *ctx) {
    LinearGradcheck *g = ctx;
    linear_forward_reference(tensor_2d(g->out, g->M, g->Fo), tensor_2d(g->inp, g->M, g->Fi),
                             tensor_2d(g->weight, g->Fo, g->Fi), tensor_1d(g->bias, g->Fo));
    return dot_double(g->out, g->dout, g->M * g->Fo);
}

static void test_linear_reference_gradcheck(void) {
    const size_t M = 6, Fi = 5, Fo = 4;
    LinearGradcheck g = {.M = M, .Fi = Fi, .Fo = Fo};
    g.inp = xmalloc(M * Fi * sizeof(float)), g.weight = xmalloc(Fo * Fi * sizeof(float));
    g.bias = xmalloc(Fo * sizeof(float)), g.out = xmalloc(M * Fo * sizeof(float));
    g.dout = xmalloc(M * Fo * sizeof(float));
    fill_normal(g.inp, M * Fi, 1), fill_normal(g.weight, Fo * Fi, 2), fill_normal(g.bias, Fo, 3);
    fill_normal(g.dout, M * Fo, 4);
    float *dinp = xcalloc(M * Fi, sizeof(float)), *dweight = xcalloc(Fo * Fi, sizeof(float));
    float *dbias = xcalloc(Fo, sizeof(float));
    linear_backward_reference(tensor_2d(dinp, M, Fi), tensor_2d(dweight, Fo, Fi), tensor_1d(dbias, Fo),
                              tensor_2d(g.dout, M, Fo), tensor_2d(g.inp, M, Fi), tensor_2d(g.weight, Fo, Fi));
    /* The loss is linear in each input, so the central difference is exact up to float rounding. One
     * thread: hundreds of tiny forwards, each would pay a parallel region. */
    int saved_threads = threads_get();
    threads_set(1);
    gradcheck("linear dinp", linear_gradcheck_loss, &g, g.inp, dinp, M * Fi, 100, 1e-2, 1e-4, 1e-3);
    gradcheck("linear dweight", linear_gradcheck_loss, &g, g.weight, dweight, Fo * Fi, 100, 1e-2, 1e-4, 1e-3);
    gradcheck("linear dbias", linear_gradcheck_loss, &g, g.bias, dbias, Fo, 100, 1e-2, 1e-4, 1e-3);
    threads_set(saved_threads);
    free(g.inp), free(g.weight), free(g.bias), free(g.out), free(g.dout), free(dinp), free(dweight), free(dbias);
}

/* ------------------------------------------------------------------------------------------------ */
/* PyTorch fixtures */

typedef struct LinearCase {
    const char *name;
    int ndim;
    size_t shape[3]; /* inp's shape; the last entry is Fi */
    size_t Fo;
    bool bias;
} LinearCase;

static const LinearCase LINEAR_CASES[] = {
    {"rows3d", 3, {3, 5, 7}, 6, true},
    {"rows2d", 2, {4, 9}, 5, false},
    {"temb", 2, {2, 32}, 64, true},
};

static Tensor tensor_nd(float *data, int ndim, const size_t *shape) {
    return ndim == 3 ? tensor_3d(data, shape[0], shape[1], shape[2]) : tensor_2d(data, shape[0], shape[1]);
}

static void check_linear_fixture(Fixture *fx, const LinearCase *c, LinearForward forward, LinearBackward backward,
                                 const char *path) {
    const size_t Fi = c->shape[c->ndim - 1], M = c->ndim == 3 ? c->shape[0] * c->shape[1] : c->shape[0];
    size_t out_shape[3];
    memcpy(out_shape, c->shape, sizeof out_shape);
    out_shape[c->ndim - 1] = c->Fo;
    char key[64], what[96];
#define FIXTURE(field, n) (snprintf(key, sizeof key, "%s.%s", c->name, field), fixture_floats(fx, key, n))
    float *inp = FIXTURE("inp", M * Fi), *weight = FIXTURE("weight", c->Fo * Fi);
    float *bias = c->bias ? FIXTURE("bias", c->Fo) : NULL;
    float *want_out = FIXTURE("out", M * c->Fo), *dout = FIXTURE("dout", M * c->Fo);
    float *want_dinp = FIXTURE("dinp", M * Fi), *want_dweight = FIXTURE("dweight", c->Fo * Fi);
    float *want_dbias = c->bias ? FIXTURE("dbias", c->Fo) : NULL;
#undef FIXTURE
    float *out = guarded_alloc(M * c->Fo), *dinp = guarded_alloc(M * Fi), *dweight = guarded_alloc(c->Fo * Fi);
    float *dbias = guarded_alloc(c->Fo);
    Tensor tinp = tensor_nd(inp, c->ndim, c->shape), tweight = tensor_2d(weight, c->Fo, Fi);
    forward(tensor_nd(out, c->ndim, out_shape), tinp, tweight, bias ? tensor_1d(bias, c->Fo) : tensor_none());
    backward(tensor_nd(dinp, c->ndim, c->shape), tensor_2d(dweight, c->Fo, Fi),
             bias ? tensor_1d(dbias, c->Fo) : tensor_none(), tensor_nd(dout, c->ndim, out_shape), tinp, tweight);
    snprintf(what, sizeof what, "%s %s out", path, c->name);
    expect_close(what, out, want_out, M * c->Fo, 1e-5, 1e-5);
    snprintf(what, sizeof what, "%s %s dinp", path, c->name);
    expect_close(what, dinp, want_dinp, M * Fi, 1e-5, 1e-5);
    snprintf(what, sizeof what, "%s %s dweight", path, c->name);
    expect_close(what, dweight, want_dweight, c->Fo * Fi, 1e-5, 1e-5);
    if (bias) {
        snprintf(what, sizeof what, "%s %s dbias", path, c->name);
        expect_close(what, dbias, want_dbias, c->Fo, 1e-5, 1e-5);
    } else {
        EXPECT(max_abs(dbias, c->Fo) == 0, "%s %s: dbias written although passed as none", path, c->name);
    }
    guarded_check("out", out), guarded_check("dinp", dinp), guarded_check("dweight", dweight);
    guarded_check("dbias", dbias);
    free(inp), free(weight), free(bias), free(want_out), free(dout), free(want_dinp), free(want_dweight);
    free(want_dbias);
    guarded_free(out), guarded_free(dinp), guarded_free(dweight), guarded_free(dbias);
}

static void test_linear_matches_pytorch(void) {
    Fixture *fx = fixture_open("linear");
    for (size_t i = 0; i < sizeof LINEAR_CASES / sizeof LINEAR_CASES[0]; i++) {
        check_linear_fixture(fx, &LINEAR_CASES[i], linear_forward_reference, linear_backward_reference, "reference");
        check_linear_fixture(fx, &LINEAR_CASES[i], linear_forward, linear_backward, "fast");
    }
    fixture_close(fx);
}

/* ------------------------------------------------------------------------------------------------ */
/* Fast path against the reference at the U-Net's shapes */

/* Runs forward once and backward twice into zeroed gradients with one path; all outputs guarded. */
typedef struct LinearRun {
    float *out, *dinp, *dweight, *dbias;
} LinearRun;

static LinearRun linear_run(LinearForward forward, LinearBackward backward, size_t M, size_t Fi, size_t Fo,
                            const float *inp, const float *weight, const float *bias, const float *dout,
                            int n_backward) {
    LinearRun r = {guarded_alloc(M * Fo), guarded_alloc(M * Fi), guarded_alloc(Fo * Fi), guarded_alloc(Fo)};
    /* The forward overwrites: start from garbage. */
    for (size_t x = 0; x < M * Fo; x++) r.out[x] = NAN;
    Tensor tinp = tensor_2d((float *)inp, M, Fi), tweight = tensor_2d((float *)weight, Fo, Fi);
    forward(tensor_2d(r.out, M, Fo), tinp, tweight, tensor_1d((float *)bias, Fo));
    for (int b = 0; b < n_backward; b++)
        backward(tensor_2d(r.dinp, M, Fi), tensor_2d(r.dweight, Fo, Fi), tensor_1d(r.dbias, Fo),
                 tensor_2d((float *)dout, M, Fo), tinp, tweight);
    return r;
}

static void linear_run_free(LinearRun *r) {
    guarded_free(r->out), guarded_free(r->dinp), guarded_free(r->dweight), guarded_free(r->dbias);
}

static float *rounded_to_bf16(const float *x, size_t n) {
    float *r = xmalloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) r[i] = bfloat16_to_float(float_to_bfloat16(x[i]));
    return r;
}

/* precision bf16: the fast path rounds inp, weight and dout to bf16 for its three products and accumulates
 * in fp32, so it is held to the reference run on the rounded operands; the bias and its gradient stay fp32
 * (dbias: column sums of the unrounded dout). */
static void check_linear_fast_vs_reference(size_t M, size_t Fi, size_t Fo, OpsPrecision precision) {
    float *inp = xmalloc(M * Fi * sizeof(float)), *weight = xmalloc(Fo * Fi * sizeof(float));
    float *bias = xmalloc(Fo * sizeof(float)), *dout = xmalloc(M * Fo * sizeof(float));
    fill_normal(inp, M * Fi, 11), fill_uniform(weight, Fo * Fi, 12, -0.05f, 0.05f);
    fill_normal(bias, Fo, 13), fill_normal(dout, M * Fo, 14);
    const bool bf16 = precision == OPS_PRECISION_BF16;
    float *r_inp = bf16 ? rounded_to_bf16(inp, M * Fi) : inp, *r_weight = bf16 ? rounded_to_bf16(weight, Fo * Fi) : weight;
    float *r_dout = bf16 ? rounded_to_bf16(dout, M * Fo) : dout;
    LinearRun ref = linear_run(linear_forward_reference, linear_backward_reference, M, Fi, Fo, r_inp, r_weight, bias,
                               r_dout, 1);
    ops_set_precision(precision);
    LinearRun fast = linear_run(linear_forward, linear_backward, M, Fi, Fo, inp, weight, bias, dout, 1);
    LinearRun twice = linear_run(linear_forward, linear_backward, M, Fi, Fo, inp, weight, bias, dout, 2);
    ops_set_precision(OPS_PRECISION_FP32);
    if (bf16) {
        /* ... and is not the fp32 result: it differs by about bf16's rounding. */
        LinearRun fp32 = linear_run(linear_forward, linear_backward, M, Fi, Fo, inp, weight, bias, dout, 1);
        double worst = 0, scale = 0;
        for (size_t x = 0; x < M * Fo; x++) {
            worst = fmax(worst, fabs((double)fast.out[x] - fp32.out[x]));
            scale = fmax(scale, fabs((double)fp32.out[x]));
        }
        EXPECT(worst / scale > 1e-4 && worst / scale < 2e-2, "bf16 linear M %zu, %zu -> %zu: out differs from fp32 "
               "by %.2g of its scale, expected bf16 rounding (1e-4 .. 2e-2)", M, Fi, Fo, worst / scale);
        linear_run_free(&fp32);
        free(r_inp), free(r_weight), free(r_dout);
    }
    char what[96];
    const char *names[4] = {"out", "dinp", "dweight", "dbias"};
    const size_t sizes[4] = {M * Fo, M * Fi, Fo * Fi, Fo};
    LinearRun ref_dbias = bf16 ? linear_run(linear_forward_reference, linear_backward_reference, M, Fi, Fo, inp,
                                            weight, bias, dout, 1)
                               : ref;
    float *refs[4] = {ref.out, ref.dinp, ref.dweight, ref_dbias.dbias};
    float *fasts[4] = {fast.out, fast.dinp, fast.dweight, fast.dbias};
    float *twices[4] = {twice.out, twice.dinp, twice.dweight, twice.dbias};
    for (int t = 0; t < 4; t++) {
        snprintf(what, sizeof what, "%s M %zu, %zu -> %zu: %s", ops_precision_name(precision), M, Fi, Fo, names[t]);
        /* Sums of up to 8192 products in float against double: 1e-5 of the largest value. */
        expect_close_scaled(what, fasts[t], refs[t], sizes[t], 1e-5);
        guarded_check(what, fasts[t]), guarded_check(what, twices[t]);
        if (t > 0) {
            /* Backward twice accumulates twice. */
            for (size_t x = 0; x < sizes[t]; x++) fasts[t][x] *= 2;
            snprintf(what, sizeof what, "M %zu, %zu -> %zu: %s accumulated twice", M, Fi, Fo, names[t]);
            expect_close_scaled(what, twices[t], fasts[t], sizes[t], 1e-6);
        }
    }
    if (bf16) linear_run_free(&ref_dbias);
    linear_run_free(&ref), linear_run_free(&fast), linear_run_free(&twice);
    free(inp), free(weight), free(bias), free(dout);
}

static void test_linear_fast_matches_reference(void) {
    /* Narrow layers take narrow_gemm on AVX-512 builds: fashion-mnist's time embedding (64 rows, 16 -> 64) and
     * a resnet's projection of it (64 -> 16), 37 rows (one register block and leftover rows), 80 outputs
     * (channel blocks of 64 and 16); their weight gradients narrow_weight_grad, also over chunks of rows
     * with a short last one and 48 inputs (blocks of 3 vectors), and 128 inputs (two blocks of 64). */
#ifdef __SANITIZE_ADDRESS__
    const size_t shapes[][3] = {{512, 224, 224}, {128, 448, 448}, {2, 224, 896}, {16, 896, 896},
                                {64, 16, 64},   {37, 40, 80},    {64, 64, 16},  {1000, 48, 32},
                                {300, 128, 16}};
#else
    /* Attention projections at 64x64, 32x32, 16x16 and 8x8 (N = 2) and fashion-mnist's at 14x14 (N = 64),
     * the time-embedding MLP at batch 2. Wider layers: from 256 rows the forward is a oneDNN matmul,
     * below it sgemm. */
    const size_t shapes[][3] = {{8192, 224, 224}, {2048, 448, 448}, {512, 672, 672}, {128, 896, 896},
                                {12544, 32, 32},  {2, 224, 896},    {2, 896, 896},   {64, 16, 64},
                                {37, 40, 80},     {64, 64, 16},     {1000, 48, 32},  {300, 128, 16}};
#endif
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
        check_linear_fast_vs_reference(shapes[i][0], shapes[i][1], shapes[i][2], OPS_PRECISION_FP32);
}

/* The bias gradient sums chunks of rows in parallel, then the chunks in order: the same bits at any
 * thread count, and the column sums within 1e-4 of a double-precision sum (sums of 1000 values near 30). */
static void test_linear_bias_gradient_thread_independent(void) {
    const size_t M = 1000, Fi = 8, Fo = 37; /* four chunks, the last one short; columns past a vector */
    float *inp = xmalloc(M * Fi * sizeof(float)), *weight = xmalloc(Fo * Fi * sizeof(float));
    float *dout = xmalloc(M * Fo * sizeof(float)), dbias[2][37] = {{0}};
    fill_normal(inp, M * Fi, 21), fill_normal(weight, Fo * Fi, 22), fill_normal(dout, M * Fo, 23);
    const int saved = threads_get();
    for (int t = 0; t < 2; t++) {
        threads_set(t + 1);
        linear_backward(tensor_none(), tensor_none(), tensor_1d(dbias[t], Fo), tensor_2d(dout, M, Fo),
                        tensor_2d(inp, M, Fi), tensor_2d(weight, Fo, Fi));
    }
    threads_set(saved);
    EXPECT(memcmp(dbias[0], dbias[1], sizeof dbias[0]) == 0, "dbias differs between 1 and 2 threads");
    double worst = 0;
    for (size_t o = 0; o < Fo; o++) {
        double want = 0;
        for (size_t m = 0; m < M; m++) want += dout[m * Fo + o];
        worst = fmax(worst, fabs(dbias[0][o] - want));
    }
    EXPECT(worst < 1e-4, "dbias off a double-precision sum by %.3g (sums of 1000 normal values)", worst);
    free(inp), free(weight), free(dout);
}

/* So are the narrow weight gradients (narrow_weight_grad: chunks of rows added in order). */
static void test_linear_narrow_weight_gradient_thread_independent(void) {
    const size_t M = 3000, Fi = 32, Fo = 48;
    float *inp = xmalloc(M * Fi * sizeof(float)), *weight = xmalloc(Fo * Fi * sizeof(float));
    float *dout = xmalloc(M * Fo * sizeof(float)), *dweight[2];
    fill_normal(inp, M * Fi, 24), fill_normal(weight, Fo * Fi, 25), fill_normal(dout, M * Fo, 26);
    const int saved = threads_get();
    for (int t = 0; t < 2; t++) {
        dweight[t] = xcalloc(Fo * Fi, sizeof(float));
        threads_set(2 * t + 1);
        linear_backward(tensor_none(), tensor_2d(dweight[t], Fo, Fi), tensor_none(), tensor_2d(dout, M, Fo),
                        tensor_2d(inp, M, Fi), tensor_2d(weight, Fo, Fi));
    }
    threads_set(saved);
    EXPECT(memcmp(dweight[0], dweight[1], Fo * Fi * sizeof(float)) == 0, "dweight differs between 1 and 3 threads");
    free(inp), free(weight), free(dout), free(dweight[0]), free(dweight[1]);
}

/* bf16 precision on the shapes that take the bf16 products (linear_bf16_applies): the attention
 * projections (8500 rows: a block of 8192 and the rest); the time embedding's few rows stay fp32. */
static void test_linear_bf16_matches_rounded_reference(void) {
    const size_t shapes[][3] = {{4096, 256, 256}, {8500, 128, 128}, {512, 96, 160}, {300, 48, 40}};
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        LinearShape s = {shapes[i][0], shapes[i][1], shapes[i][2]};
        if (!linear_bf16_applies(s)) {
            printf("  skipped M %zu, %zu -> %zu: no bf16 products for it on this CPU\n", s.M, s.Fi, s.Fo);
            continue;
        }
        check_linear_fast_vs_reference(s.M, s.Fi, s.Fo, OPS_PRECISION_BF16);
        linear_dnnl_cache_free(); /* the next shape starts from nothing: primitives and buffers rebuilt */
    }
}

/* On inp given in bf16, the forward writes the bits of linear_forward's out rounded to bf16 and the
 * backward adds the bits linear_backward adds, where the shape takes the bf16 products (the attention's q,
 * k, v projections). */
static void test_linear_bf16_rows(void) {
    const size_t M = 512, Fi = 128, Fo = 160;
    if (!ops_bf16_supported()) {
        printf("  skipped: no bf16 products on this CPU (AVX-512 BF16 or AMX)\n");
        return;
    }
    ops_set_precision(OPS_PRECISION_BF16);
    EXPECT(linear_takes_bf16(M, Fi, Fo) && !linear_takes_bf16(2, Fi, Fo),
           "M %zu, %zu -> %zu should take the bf16 products, the time embedding's 2 rows not", M, Fi, Fo);
    EXPECT(linear_takes_bf16(M, 64, 64) == ops_amx_supported(),
           "M %zu, 64 -> 64 should take the bf16 products on AMX only (fp32 is as fast without)", M);
    float *inp = xmalloc(M * Fi * sizeof(float)), *weight = xmalloc(Fo * Fi * sizeof(float));
    float *bias = xmalloc(Fo * sizeof(float)), *dout = xmalloc(M * Fo * sizeof(float));
    float *out = xmalloc(M * Fo * sizeof(float));
    uint16_t *inp16 = xmalloc(M * Fi * sizeof(uint16_t)), *out16 = xmalloc(M * Fo * sizeof(uint16_t));
    fill_normal(inp, M * Fi, 21), fill_uniform(weight, Fo * Fi, 22, -0.1f, 0.1f), fill_normal(bias, Fo, 23);
    fill_normal(dout, M * Fo, 24);
    floats_to_bfloat16(inp16, inp, M * Fi);
    Tensor tinp = tensor_2d(inp, M, Fi), tweight = tensor_2d(weight, Fo, Fi), tbias = tensor_1d(bias, Fo);
    Tensor tdout = tensor_2d(dout, M, Fo);
    linear_forward(tensor_2d(out, M, Fo), tinp, tweight, tbias);
    linear_forward_bf16(out16, inp16, M, tweight, tbias);
    size_t differ = 0;
    for (size_t x = 0; x < M * Fo; x++) differ += out16[x] != float_to_bfloat16(out[x]);
    EXPECT(differ == 0, "%zu of %zu bf16 outputs are not linear_forward's rounded", differ, M * Fo);
    float *grads[2][3]; /* [fp32 inp, bf16 inp][dinp, dweight, dbias] */
    for (int k = 0; k < 2; k++) {
        grads[k][0] = xcalloc(M * Fi, sizeof(float)), grads[k][1] = xcalloc(Fo * Fi, sizeof(float));
        grads[k][2] = xcalloc(Fo, sizeof(float));
        Tensor dinp = tensor_2d(grads[k][0], M, Fi), dweight = tensor_2d(grads[k][1], Fo, Fi);
        Tensor dbias = tensor_1d(grads[k][2], Fo);
        if (k == 0) linear_backward(dinp, dweight, dbias, tdout, tinp, tweight);
        else linear_backward_bf16_input(dinp, dweight, dbias, tdout, inp16, tweight);
    }
    EXPECT(memcmp(grads[0][0], grads[1][0], M * Fi * sizeof(float)) == 0 &&
               memcmp(grads[0][1], grads[1][1], Fo * Fi * sizeof(float)) == 0 &&
               memcmp(grads[0][2], grads[1][2], Fo * sizeof(float)) == 0,
           "the backward on bf16 inp adds other gradients than on fp32 inp");
    ops_set_precision(OPS_PRECISION_FP32);
    EXPECT(!linear_takes_bf16(M, Fi, Fo), "fp32 precision takes the bf16 products");
    for (int k = 0; k < 2; k++) free(grads[k][0]), free(grads[k][1]), free(grads[k][2]);
    free(inp), free(weight), free(bias), free(dout), free(out), free(inp16), free(out16);
}

/* linear_residual_forward: (inp Wᵀ + bias + residual) scale against the reference linear and the sum formed,
 * narrow (one pass of narrow_gemm on AVX-512) and wide (linear_forward, then add_scaled_forward). */
static void check_linear_residual(size_t M, size_t Fi, size_t Fo, float scale) {
    float *inp = xmalloc(M * Fi * sizeof(float)), *weight = xmalloc(Fo * Fi * sizeof(float));
    float *bias = xmalloc(Fo * sizeof(float)), *residual = xmalloc(M * Fo * sizeof(float));
    float *want = xmalloc(M * Fo * sizeof(float)), *got = guarded_alloc(M * Fo);
    fill_normal(inp, M * Fi, 31), fill_uniform(weight, Fo * Fi, 32, -0.2f, 0.2f);
    fill_normal(bias, Fo, 33), fill_normal(residual, M * Fo, 34);
    linear_forward_reference(tensor_2d(want, M, Fo), tensor_2d(inp, M, Fi), tensor_2d(weight, Fo, Fi),
                             tensor_1d(bias, Fo));
    for (size_t i = 0; i < M * Fo; i++) want[i] = (want[i] + residual[i]) * scale;
    linear_residual_forward(tensor_2d(got, M, Fo), tensor_2d(inp, M, Fi), tensor_2d(weight, Fo, Fi),
                            tensor_1d(bias, Fo), tensor_2d(residual, M, Fo), scale);
    char what[96];
    snprintf(what, sizeof what, "linear_residual_forward M %zu, %zu -> %zu, scale %g", M, Fi, Fo, (double)scale);
    expect_close_scaled(what, got, want, M * Fo, 1e-5);
    guarded_check(what, got);
    guarded_free(got);
    free(inp), free(weight), free(bias), free(residual), free(want);
}

static void test_linear_residual(void) {
    check_linear_residual(12544, 32, 32, 1.0f); /* fashion-mnist's attention output at 14x14 */
    check_linear_residual(99, 64, 64, 0.5f);    /* leftover rows */
    check_linear_residual(300, 200, 200, 1.0f); /* wide: linear_forward and add_scaled */
}

/* ------------------------------------------------------------------------------------------------ */
/* CHECK failures */

typedef struct BadLinear {
    int which;
} BadLinear;

static void call_bad_linear(void *ctx) {
    float inp[12] = {0}, weight[12] = {0}, bias[4] = {0}, out[12] = {0};
    Tensor tinp = tensor_2d(inp, 3, 4), tweight = tensor_2d(weight, 3, 4), tout = tensor_2d(out, 3, 3);
    switch (((BadLinear *)ctx)->which) {
    case 0: linear_forward(tout, tensor_2d(inp, 4, 3), tweight, tensor_none()); break;
    case 1: linear_forward(tensor_2d(out, 4, 3), tinp, tweight, tensor_none()); break;
    case 2: linear_forward(tout, tinp, tweight, tensor_1d(bias, 4)); break;
    case 3: linear_forward(tout, tensor_2d(NULL, 3, 4), tweight, tensor_none()); break;
    case 4: linear_backward(tensor_none(), tensor_2d(weight, 4, 3), tensor_none(), tout, tinp, tweight); break;
    case 5: linear_backward_reference(tensor_2d(inp, 2, 6), tensor_none(), tensor_none(), tout, tinp, tweight); break;
    case 6: linear_forward_bf16((uint16_t *)out, (uint16_t *)inp, 3, tweight, tensor_none()); break;
    case 7: linear_residual_forward(tout, tinp, tweight, tensor_none(), tensor_2d(out + 3, 3, 3), 1.0f); break;
    case 8: linear_residual_forward(tout, tinp, tweight, tensor_none(), tensor_2d(inp, 4, 3), 1.0f); break;
    default: linear_forward_reference(tout, tinp, tensor_1d(weight, 12), tensor_none()); break;
    }
}

static void test_linear_rejects_bad_arguments(void) {
    static const char *expected[] = {
        "linear_forward: inp (last dimension = weight's Fi) has shape (4, 3), expected (4, 4)",
        "linear_forward: out has shape (4, 3), expected (3, 3)",
        "linear_forward: bias has shape (4), expected (3)",
        "linear_forward: inp is NULL",
        "linear_backward: dweight has shape (4, 3), expected (3, 4)",
        "linear_backward_reference: dinp has shape (2, 6), expected (3, 4)",
        "linear_forward_bf16: M 3, 4 -> 3 does not take the bf16 products",
        "linear_residual_forward: residual overlaps out",
        "linear_residual_forward: residual has shape (4, 3), expected (3, 3)",
        "linear_forward_reference: weight has shape (12), expected 2 dimensions",
    };
    for (int i = 0; i < (int)(sizeof expected / sizeof expected[0]); i++) {
        BadLinear bad = {i};
        expect_check_failure(expected[i], call_bad_linear, &bad, expected[i]);
    }
}

int main(void) {
    RUN(test_linear_reference_gradcheck);
    RUN(test_linear_matches_pytorch);
    RUN(test_linear_fast_matches_reference);
    RUN(test_linear_bias_gradient_thread_independent);
    RUN(test_linear_narrow_weight_gradient_thread_independent);
    RUN(test_linear_bf16_matches_rounded_reference);
    RUN(test_linear_bf16_rows);
    RUN(test_linear_residual);
    RUN(test_linear_rejects_bad_arguments);
    return harness_finish();
}
