/* conv2d: finite-difference gradient checks of the reference path; both paths against PyTorch fixtures
 * (tools/torchref/fixtures_conv2d.py); the oneDNN path against the reference at the U-Net's shapes with
 * guard words, NaN/inf checks and accumulation; bf16 precision against the reference on rounded operands;
 * the Winograd plans against the reference and the direct kernels; repeatability; the plan cache's
 * least-recently-used order and eviction; CHECK failures. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/half.h"
#include "ops/lru_cache.h"
#include "ops/narrow_gemm.h"
#include "core/threads.h"
#include "harness.h"
#include "ops/conv2d.h"
#include "ops/conv2d_internal.h"
#include "ops/precision.h"

typedef struct Case {
    size_t n, h, w, ci, co, kh, kw;
    Conv2dParams p;
    bool with_bias;
} Case;

#define PAD(t, b, l, r) .pad_top = t, .pad_bottom = b, .pad_left = l, .pad_right = r
#define S1P1 {.stride = 1, PAD(1, 1, 1, 1)}

static size_t case_ho(const Case *c) { return conv2d_out_size(c->h, c->kh, c->p.stride, c->p.pad_top, c->p.pad_bottom); }
static size_t case_wo(const Case *c) { return conv2d_out_size(c->w, c->kw, c->p.stride, c->p.pad_left, c->p.pad_right); }
static size_t n_inp(const Case *c) { return c->n * c->h * c->w * c->ci; }
static size_t n_out(const Case *c) { return c->n * case_ho(c) * case_wo(c) * c->co; }
static size_t n_weight(const Case *c) { return c->co * c->ci * c->kh * c->kw; }

static const char *case_str(const Case *c) {
    static char buf[160];
    snprintf(buf, sizeof buf, "N%zu %zux%zu %zu->%zu k%zux%zu s%d pad(%d,%d,%d,%d)%s", c->n, c->h, c->w, c->ci, c->co,
             c->kh, c->kw, c->p.stride, c->p.pad_top, c->p.pad_bottom, c->p.pad_left, c->p.pad_right,
             c->with_bias ? "" : " no bias");
    return buf;
}

/* The tensors of one call, over guarded buffers (every output and gradient, so overruns show). */
typedef struct Conv {
    Case c;
    Tensor inp, weight, bias, out, dout, dinp, dweight, dbias;
} Conv;

static Conv conv_alloc(const Case *c) {
    Conv v = {.c = *c};
    size_t ho = case_ho(c), wo = case_wo(c);
    v.inp = tensor_4d(guarded_alloc(n_inp(c)), c->n, c->h, c->w, c->ci);
    v.dinp = tensor_4d(guarded_alloc(n_inp(c)), c->n, c->h, c->w, c->ci);
    v.out = tensor_4d(guarded_alloc(n_out(c)), c->n, ho, wo, c->co);
    v.dout = tensor_4d(guarded_alloc(n_out(c)), c->n, ho, wo, c->co);
    v.weight = tensor_4d(guarded_alloc(n_weight(c)), c->co, c->ci, c->kh, c->kw);
    v.dweight = tensor_4d(guarded_alloc(n_weight(c)), c->co, c->ci, c->kh, c->kw);
    v.bias = c->with_bias ? tensor_1d(guarded_alloc(c->co), c->co) : tensor_none();
    v.dbias = c->with_bias ? tensor_1d(guarded_alloc(c->co), c->co) : tensor_none();
    return v;
}

/* Standard normal activations and output gradients; weights scaled by 1/sqrt(fan-in) as PyTorch
 * initialises them, so outputs stay of order one. */
static void conv_fill(Conv *v, uint64_t seed) {
    const Case *c = &v->c;
    fill_normal(v->inp.data, n_inp(c), seed);
    fill_normal(v->dout.data, n_out(c), seed + 1);
    fill_normal(v->weight.data, n_weight(c), seed + 2);
    float scale = 1.0f / sqrtf((float)(c->ci * c->kh * c->kw));
    for (size_t i = 0; i < n_weight(c); i++) v->weight.data[i] *= scale;
    if (c->with_bias) fill_normal(v->bias.data, c->co, seed + 3);
}

/* dst's operands (inp, weight, dout, bias) = src's. */
static void conv_copy_operands(Conv *dst, const Conv *src) {
    const Case *c = &src->c;
    memcpy(dst->inp.data, src->inp.data, n_inp(c) * sizeof(float));
    memcpy(dst->weight.data, src->weight.data, n_weight(c) * sizeof(float));
    memcpy(dst->dout.data, src->dout.data, n_out(c) * sizeof(float));
    if (c->with_bias) memcpy(dst->bias.data, src->bias.data, c->co * sizeof(float));
}

static void conv_zero_grads(Conv *v) {
    memset(v->dinp.data, 0, n_inp(&v->c) * sizeof(float));
    memset(v->dweight.data, 0, n_weight(&v->c) * sizeof(float));
    if (v->c.with_bias) memset(v->dbias.data, 0, v->c.co * sizeof(float));
}

static void conv_check_guards(const Conv *v, const char *what) {
    char name[256];
    const Tensor *all[] = {&v->inp, &v->dinp, &v->out, &v->dout, &v->weight, &v->dweight, &v->bias, &v->dbias};
    const char *names[] = {"inp", "dinp", "out", "dout", "weight", "dweight", "bias", "dbias"};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        if (tensor_is_none(*all[i])) continue;
        snprintf(name, sizeof name, "%s %s %s", what, case_str(&v->c), names[i]);
        guarded_check(name, all[i]->data);
    }
}

static void conv_free(Conv *v) {
    Tensor *all[] = {&v->inp, &v->dinp, &v->out, &v->dout, &v->weight, &v->dweight, &v->bias, &v->dbias};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) guarded_free(all[i]->data);
}

/* Forward overwrites every output: out starts as NaN, so an element it skips fails the finite checks. */
static void run_forward(Conv *v, bool fast) {
    for (size_t i = 0; i < n_out(&v->c); i++) v->out.data[i] = NAN;
    (fast ? conv2d_forward : conv2d_forward_reference)(v->out, v->inp, v->weight, v->bias, v->c.p);
}

static void run_backward(Conv *v, bool fast) {
    (fast ? conv2d_backward : conv2d_backward_reference)(v->dinp, v->dweight, v->dbias, v->dout, v->inp, v->weight,
                                                         v->c.p);
}

static bool expect_scaled(const char *what, const Case *c, const char *tensor, const float *got, const float *want,
                          size_t n, double tol) {
    char name[256];
    snprintf(name, sizeof name, "%s %s %s", what, case_str(c), tensor);
    return expect_close_scaled(name, got, want, n, tol);
}

/* ------------------------------------------------------------------------------------------------ */
/* Finite differences of the reference path */

static double conv_loss(void *ctx) {
    Conv *v = ctx;
    conv2d_forward_reference(v->out, v->inp, v->weight, v->bias, v->c.p);
    return dot_double(v->out.data, v->dout.data, n_out(&v->c));
}

static void test_reference_gradcheck(void) {
    const Case cases[] = {
        {2, 5, 6, 3, 4, 3, 3, S1P1, true},
        {2, 4, 5, 3, 4, 1, 1, {.stride = 1}, true},
        {2, 7, 6, 3, 4, 3, 3, {.stride = 2, PAD(1, 1, 1, 1)}, true},
        {2, 7, 7, 3, 4, 3, 3, {.stride = 2}, true},
        {2, 6, 6, 3, 4, 3, 3, {.stride = 2, PAD(0, 1, 0, 1)}, true},
        {1, 5, 5, 3, 2, 3, 3, {.stride = 1, PAD(0, 1, 0, 1)}, true},
        {1, 4, 6, 2, 3, 1, 3, {.stride = 2, PAD(0, 0, 1, 1)}, false},
    };
    /* The loss sum(out * dout) is linear in every input, weight and bias, so a central difference has
     * no truncation error and a large step is safe; what is left is the float rounding of out (~1e-7
     * relative, over at most a few hundred outputs) divided by 2 eps: ~1e-5 absolute. atol = rtol =
     * 1e-3 leaves a 100x margin, while a wrong tap, stride or padding changes a gradient by a whole
     * product term, O(0.1..1). Every element is probed. */
    const double eps = 0.05, atol = 1e-3, rtol = 1e-3;
    /* Thousands of tiny forward calls: one thread spares each its parallel-region start-up. */
    int saved_threads = threads_get();
    threads_set(1);
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        const Case *c = &cases[k];
        Conv v = conv_alloc(c);
        conv_fill(&v, 100 + k);
        conv_zero_grads(&v);
        conv2d_backward_reference(v.dinp, v.dweight, v.dbias, v.dout, v.inp, v.weight, c->p);
        char what[256];
        snprintf(what, sizeof what, "gradcheck %s dinp", case_str(c));
        gradcheck(what, conv_loss, &v, v.inp.data, v.dinp.data, n_inp(c), n_inp(c), eps, atol, rtol);
        snprintf(what, sizeof what, "gradcheck %s dweight", case_str(c));
        gradcheck(what, conv_loss, &v, v.weight.data, v.dweight.data, n_weight(c), n_weight(c), eps, atol, rtol);
        if (c->with_bias) {
            snprintf(what, sizeof what, "gradcheck %s dbias", case_str(c));
            gradcheck(what, conv_loss, &v, v.bias.data, v.dbias.data, c->co, c->co, eps, atol, rtol);
        }
        conv_check_guards(&v, "gradcheck");
        conv_free(&v);
    }
    threads_set(saved_threads);
}

/* ------------------------------------------------------------------------------------------------ */
/* PyTorch fixtures */

/* Same order and values as CASES in tools/torchref/fixtures_conv2d.py. */
static const Case fixture_cases[] = {
    {2, 7, 6, 5, 4, 3, 3, S1P1, true},
    {2, 5, 5, 6, 3, 1, 1, {.stride = 1}, true},
    {2, 8, 7, 4, 5, 3, 3, {.stride = 2, PAD(1, 1, 1, 1)}, true},
    {2, 8, 8, 5, 4, 3, 3, {.stride = 2, PAD(0, 1, 0, 1)}, true},
    {1, 6, 9, 17, 19, 3, 3, S1P1, false},
    {2, 7, 7, 3, 4, 3, 3, {.stride = 2}, true},
    {1, 5, 6, 4, 6, 1, 3, {.stride = 1, PAD(0, 0, 1, 1)}, true},
    {1, 6, 6, 3, 4, 5, 5, {.stride = 1, PAD(2, 2, 2, 2)}, true},
};

static void load(Fixture *fx, int j, const char *name, float *dst, size_t n) {
    char key[64];
    snprintf(key, sizeof key, "c%d.%s", j, name);
    float *src = fixture_floats(fx, key, n);
    memcpy(dst, src, n * sizeof(float));
    free(src);
}

static void check_against_fixture(Fixture *fx, int j, const Conv *v, const char *what, const char *name,
                                  const float *got, size_t n) {
    /* PyTorch computed in float64 from the same float32 inputs, so the fixture is exact to float32
     * rounding; ours sums at most a few hundred float32 products (Ci kH kW <= 153 forward, N Ho Wo <= 84
     * for dweight), whose rounding stays below ~1e-6 of the largest value. 1e-5 of max |expected|
     * leaves a 10x margin. */
    char key[64];
    snprintf(key, sizeof key, "c%d.%s", j, name);
    float *want = fixture_floats(fx, key, n);
    expect_scaled(what, &v->c, name, got, want, n, 1e-5);
    free(want);
}

static void run_fixtures(bool fast) {
    const char *what = fast ? "fast vs PyTorch" : "reference vs PyTorch";
    Fixture *fx = fixture_open("conv2d");
    for (int j = 0; j < (int)(sizeof fixture_cases / sizeof fixture_cases[0]); j++) {
        const Case *c = &fixture_cases[j];
        float params[7];
        load(fx, j, "params", params, 7);
        const float mine[7] = {(float)c->p.stride, (float)c->p.pad_top, (float)c->p.pad_bottom, (float)c->p.pad_left,
                               (float)c->p.pad_right, (float)c->kh, (float)c->kw};
        EXPECT(memcmp(params, mine, sizeof mine) == 0, "fixture case %d params differ from the test's table (%s)", j,
               case_str(c));
        Conv v = conv_alloc(c);
        load(fx, j, "inp", v.inp.data, n_inp(c));
        load(fx, j, "weight", v.weight.data, n_weight(c));
        load(fx, j, "dout", v.dout.data, n_out(c));
        if (c->with_bias) load(fx, j, "bias", v.bias.data, c->co);
        run_forward(&v, fast);
        check_against_fixture(fx, j, &v, what, "out", v.out.data, n_out(c));
        run_backward(&v, fast);
        check_against_fixture(fx, j, &v, what, "dinp", v.dinp.data, n_inp(c));
        check_against_fixture(fx, j, &v, what, "dweight", v.dweight.data, n_weight(c));
        if (c->with_bias) check_against_fixture(fx, j, &v, what, "dbias", v.dbias.data, c->co);
        conv_check_guards(&v, what);
        conv_free(&v);
    }
    fixture_close(fx);
}

static void test_reference_matches_pytorch(void) { run_fixtures(false); }
static void test_fast_matches_pytorch(void) { run_fixtures(true); }

/* ------------------------------------------------------------------------------------------------ */
/* Fast path against the reference at the U-Net's shapes */

#ifndef __SANITIZE_ADDRESS__
static const Case unet_cases[] = {
    {2, 64, 64, 224, 224, 3, 3, S1P1, true},                           /* down0 resnet conv */
    {2, 32, 32, 448, 448, 3, 3, S1P1, true},                           /* down1 resnet conv */
    {2, 8, 8, 896, 896, 3, 3, S1P1, true},                             /* down3 / mid resnet conv */
    {2, 32, 32, 448, 448, 3, 3, {.stride = 2, PAD(0, 1, 0, 1)}, true}, /* DDPM Downsample2D */
    {2, 32, 32, 448, 224, 1, 1, {.stride = 1}, true},                  /* resnet conv_shortcut */
    {2, 64, 64, 3, 224, 3, 3, S1P1, true},                             /* conv_in */
    {2, 64, 64, 224, 3, 3, 3, S1P1, true},                             /* conv_out */
};
#endif

/* The same layers shrunk (channel counts off the 16-blocks, so padded weight layouts are exercised):
 * what the sanitizer build (-O1, instrumented loops) runs instead, and what the test of oneDNN's own
 * weight reorders runs. */
static const Case small_unet_cases[] = {
    {1, 16, 16, 40, 40, 3, 3, S1P1, true},
    {1, 8, 8, 72, 72, 3, 3, S1P1, true},
    {1, 4, 4, 96, 96, 3, 3, S1P1, true},
    {1, 16, 16, 40, 40, 3, 3, {.stride = 2, PAD(0, 1, 0, 1)}, true},
    {1, 16, 16, 72, 40, 1, 1, {.stride = 1}, true},
    {1, 16, 16, 3, 40, 3, 3, S1P1, true},
    {1, 16, 16, 40, 3, 3, 3, S1P1, true},
    {1, 32, 32, 64, 64, 3, 3, S1P1, true}, /* large enough for the Winograd plans */
};

/* Kernels, strides and paddings off the U-Net's beaten track, with channel counts that take oneDNN's
 * kernels (the PyTorch fixtures mostly have fewer than 16 input channels, which backward-data serves
 * with its GEMM path instead); the stride-1 ones have enough positions (>= 512) for backward-data to
 * run as a forward convolution, the others take oneDNN's backward-data. */
static const Case odd_cases[] = {
    {1, 9, 7, 20, 24, 5, 5, {.stride = 2, PAD(2, 2, 2, 2)}, true},
    {1, 25, 25, 17, 19, 5, 5, S1P1, true},
    {2, 16, 19, 17, 18, 1, 3, {.stride = 1, PAD(0, 0, 1, 1)}, false},
    {1, 7, 7, 33, 16, 3, 3, {.stride = 2}, true},
    {1, 24, 24, 16, 5, 3, 1, {.stride = 1, PAD(1, 0, 0, 0)}, true},
    {1, 6, 5, 16, 5, 3, 1, {.stride = 1, PAD(1, 0, 0, 0)}, true},
    /* Narrow input, large images: backward-data's GEMM path goes in groups of 4 images (7 MB each). */
    {5, 256, 256, 3, 4, 3, 3, S1P1, true},
    /* Narrow outputs at 3x3, stride 1 (conv2d_narrow_weights.c): padding different on every side, a
     * last block of 4 input channels, 1 to 5 outputs (two passes of up to three), more images than the
     * 16 image groups. */
    {2, 12, 10, 20, 3, 3, 3, {.stride = 1, PAD(0, 2, 2, 1)}, true},
    {20, 5, 6, 36, 5, 3, 3, S1P1, true},
    {3, 9, 8, 16, 1, 3, 3, {.stride = 1, PAD(2, 0, 0, 2)}, false},
    /* 16 outputs, whose forward takes oneDNN's direct kernels (conv2d_dnnl.c, prefers_direct): three input
     * channel blocks, and stride 2. */
    {2, 14, 13, 48, 16, 3, 3, S1P1, true},
    {2, 14, 14, 16, 16, 3, 3, {.stride = 2, PAD(1, 1, 1, 1)}, true},
};

/* The two paths sum float32 products in different orders: up to K = Ci kH kW = 4032 terms per output
 * (forward), Co kH kW per input gradient, N Ho Wo = 8192 per weight gradient. Rounding errors of
 * random sign grow about as sqrt(K) eps times the typical term, ~5e-6 of the largest value, which is
 * what we measure (<= 5e-6). 1e-4 of max |expected| leaves a 20x margin; any indexing, padding or
 * layout mistake shows as an O(1) difference. */
#define FAST_VS_REFERENCE_TOL 1e-4

static bool same_bits(const float *a, const float *b, size_t n) { return memcmp(a, b, n * sizeof(float)) == 0; }

/* Every element of got equals 2 * once exactly: the second backward added the same values again. */
static void expect_doubled(const Case *c, const char *name, const float *got, const float *once, size_t n) {
    for (size_t i = 0; i < n; i++) {
        if (got[i] != 2.0f * once[i]) {
            EXPECT(false, "fast backward %s %s: after two calls element %zu is %.9g, expected twice %.9g", case_str(c),
                   name, i, (double)got[i], (double)once[i]);
            return;
        }
    }
}

static float *copy_of(const float *x, size_t n) {
    float *y = xmalloc(n * sizeof(float));
    memcpy(y, x, n * sizeof(float));
    return y;
}

static void fast_matches_reference(const Case *cases, size_t n_cases) {
    for (size_t k = 0; k < n_cases; k++) {
        const Case *c = &cases[k];
        Conv fast = conv_alloc(c), ref = conv_alloc(c);
        conv_fill(&ref, 7 * k + 1);
        conv_copy_operands(&fast, &ref);

        run_forward(&ref, false);
        run_forward(&fast, true);
        expect_all_finite("reference out", ref.out.data, n_out(c));
        expect_scaled("fast vs reference", c, "out", fast.out.data, ref.out.data, n_out(c), FAST_VS_REFERENCE_TOL);

        run_backward(&ref, false);
        run_backward(&fast, true);
        expect_scaled("fast vs reference", c, "dinp", fast.dinp.data, ref.dinp.data, n_inp(c), FAST_VS_REFERENCE_TOL);
        expect_scaled("fast vs reference", c, "dweight", fast.dweight.data, ref.dweight.data, n_weight(c),
                      FAST_VS_REFERENCE_TOL);
        if (c->with_bias)
            expect_scaled("fast vs reference", c, "dbias", fast.dbias.data, ref.dbias.data, c->co,
                          FAST_VS_REFERENCE_TOL);

        /* Backward accumulates: a second call adds the same gradients again. */
        float *dinp1 = copy_of(fast.dinp.data, n_inp(c)), *dweight1 = copy_of(fast.dweight.data, n_weight(c));
        float *dbias1 = c->with_bias ? copy_of(fast.dbias.data, c->co) : NULL, *out1 = copy_of(fast.out.data, n_out(c));
        run_backward(&fast, true);
        expect_doubled(c, "dinp", fast.dinp.data, dinp1, n_inp(c));
        expect_doubled(c, "dweight", fast.dweight.data, dweight1, n_weight(c));
        if (c->with_bias) expect_doubled(c, "dbias", fast.dbias.data, dbias1, c->co);
        /* Forward overwrites, and repeats bit for bit. */
        run_forward(&fast, true);
        EXPECT(same_bits(fast.out.data, out1, n_out(c)), "fast forward %s: a second call differs", case_str(c));

        /* Only some gradients: each one alone equals its share of the full call. */
        conv_zero_grads(&fast);
        conv2d_backward(tensor_none(), fast.dweight, tensor_none(), fast.dout, fast.inp, fast.weight, c->p);
        EXPECT(same_bits(fast.dweight.data, dweight1, n_weight(c)), "fast backward %s: dweight alone differs",
               case_str(c));
        conv2d_backward(fast.dinp, tensor_none(), tensor_none(), fast.dout, fast.inp, fast.weight, c->p);
        EXPECT(same_bits(fast.dinp.data, dinp1, n_inp(c)), "fast backward %s: dinp alone differs", case_str(c));
        if (c->with_bias) {
            conv2d_backward(tensor_none(), tensor_none(), fast.dbias, fast.dout, fast.inp, fast.weight, c->p);
            expect_scaled("fast dbias alone vs reference", c, "dbias", fast.dbias.data, ref.dbias.data, c->co,
                          FAST_VS_REFERENCE_TOL);
        }

        conv_check_guards(&fast, "fast");
        conv_check_guards(&ref, "reference");
        free(dinp1), free(dweight1), free(dbias1), free(out1);
        conv_free(&fast);
        conv_free(&ref);
    }
}

static void test_fast_matches_reference(void) {
    fast_matches_reference(odd_cases, sizeof odd_cases / sizeof odd_cases[0]);
#ifndef __SANITIZE_ADDRESS__
    fast_matches_reference(unet_cases, sizeof unet_cases / sizeof unet_cases[0]);
#else
    fast_matches_reference(small_unet_cases, sizeof small_unet_cases / sizeof small_unet_cases[0]);
#endif
}

/* fp32 3x3 convolutions with enough channels and positions run as Winograd (conv2d_dnnl.c,
 * winograd_fits), in calls of a few images where the batch is large (images_per_call), with narrower
 * layers and 7x7 images too on cores that split 512-bit FMAs: each case, under each of the two rules
 * whatever this CPU is, against the reference (through fast_matches_reference: accumulation, repeats,
 * each gradient alone), and against the direct kernels, whose bits it must not repeat where the rule takes
 * Winograd (so the path is known to run) and must repeat where it does not. */
typedef struct WinogradCase {
    Case c;
    size_t call_bytes; /* the limit on a call's activations; 0: the default */
    bool winograd[2];  /* taken by the rule for cores with full 512-bit FMAs, and for those that split them */
} WinogradCase;

#define FOUR_IMAGES (4 * 16 * 16 * 64 * sizeof(float))
#define TWENTY_TWO_IMAGES (22 * 7 * 7 * 64 * sizeof(float))
static const WinogradCase winograd_cases[] = {
    {{4, 16, 16, 64, 80, 3, 3, S1P1, true}, 0, {true, true}},                  /* 1024 positions */
    {{16, 8, 8, 64, 64, 3, 3, S1P1, false}, 0, {true, true}},                  /* 8x8 images */
    {{12, 16, 16, 64, 64, 3, 3, S1P1, true}, FOUR_IMAGES, {true, true}},       /* 3 calls of 4 images */
    {{6, 16, 16, 64, 64, 3, 3, S1P1, true}, FOUR_IMAGES, {true, true}},        /* calls of 3 too small: 1 of 6 */
    {{2, 16, 16, 64, 64, 3, 3, S1P1, true}, 0, {false, false}},                /* 512 positions */
    {{32, 7, 7, 64, 64, 3, 3, S1P1, true}, 0, {false, true}},                  /* 7x7 images */
    {{66, 7, 7, 64, 32, 3, 3, S1P1, true}, TWENTY_TWO_IMAGES, {false, true}},  /* 3 calls of 22 7x7 images */
    {{2, 32, 32, 48, 64, 3, 3, S1P1, true}, 0, {false, true}},                 /* 48 input channels */
    {{2, 32, 32, 32, 32, 3, 3, S1P1, true}, 0, {false, true}},                 /* 32 channels */
    {{2, 32, 32, 16, 32, 3, 3, S1P1, true}, 0, {false, false}},                /* 16 input channels */
    {{32, 6, 6, 64, 64, 3, 3, S1P1, true}, 0, {false, false}},                 /* 6x6 images */
    {{2, 32, 32, 72, 72, 3, 3, S1P1, true}, 0, {false, false}},                /* channels off the 16-blocks */
    {{2, 32, 32, 64, 64, 3, 3, {.stride = 1, PAD(1, 0, 1, 0)}, true}, 0, {false, false}}, /* padding */
};

/* Case k under the rule now set: against the reference, and taken or not as expected. */
static void winograd_case(const WinogradCase *w, size_t k, bool winograd, const char *rule_name) {
    const Case *c = &w->c;
    conv2d_fast_use_winograd(true, w->call_bytes);
    fast_matches_reference(c, 1);
    Conv v[2]; /* [0]: direct kernels only, [1]: the rule */
    for (int rule = 0; rule < 2; rule++) {
        conv2d_fast_use_winograd(rule, w->call_bytes);
        v[rule] = conv_alloc(c);
        conv_fill(&v[rule], 11 + k);
        conv_zero_grads(&v[rule]);
        run_forward(&v[rule], true);
        run_backward(&v[rule], true);
    }
    const float *xa[] = {v[0].out.data, v[0].dinp.data, v[0].dweight.data};
    const float *xb[] = {v[1].out.data, v[1].dinp.data, v[1].dweight.data};
    const size_t n[] = {n_out(c), n_inp(c), n_weight(c)};
    const char *names[] = {"out", "dinp", "dweight"};
    for (int t = 0; t < 3; t++) {
        EXPECT(same_bits(xa[t], xb[t], n[t]) != winograd,
               "%s, %s rule: %s %s the direct kernels' bits, so Winograd was %s", case_str(c), rule_name, names[t],
               winograd ? "repeats" : "differs from", winograd ? "not taken" : "taken");
        expect_scaled("winograd vs direct", c, names[t], xb[t], xa[t], n[t], FAST_VS_REFERENCE_TOL);
    }
    conv_free(&v[0]);
    conv_free(&v[1]);
}

static void test_winograd_plans(void) {
    const bool available = conv2d_fast_has_winograd();
    if (!available) printf("  this CPU has no Winograd kernels: every case must take the direct ones\n");
    conv2d_fast_use_winograd_fp32(false, false); /* oneDNN's Winograd here; ours: test_winograd_fp32 */
    for (int split_fma = 0; split_fma < 2; split_fma++) {
        conv2d_fast_winograd_split_fma(split_fma);
        for (size_t k = 0; k < sizeof winograd_cases / sizeof winograd_cases[0]; k++)
            winograd_case(&winograd_cases[k], k, winograd_cases[k].winograd[split_fma] && available,
                          split_fma ? "split-FMA" : "full-FMA");
    }
    conv2d_fast_winograd_split_fma(-1);
    conv2d_fast_use_winograd(true, 0);
    conv2d_fast_use_winograd_fp32(true, false);
}

/* Our fp32 Winograd F(4x4, 3x3) (conv2d_winograd_fp32.c): its size rule on cores that split 512-bit FMAs;
 * then at every size it can run (any AVX-512 CPU), against the reference through fast_matches_reference
 * (accumulation, repeats, each gradient alone), with other bits than oneDNN's kernels (so it ran), and
 * the same bits with 1 and 3 threads. */
/* Whether a Winograd's size rule (picks) takes a 32x32 128->128 convolution at stride 2 or without padding. */
static bool picks_strided_or_unpadded(bool (*picks)(size_t, size_t, size_t, size_t, size_t, Conv2dParams)) {
    return picks(16, 32, 32, 128, 128, (Conv2dParams){.stride = 2, PAD(0, 1, 0, 1)}) ||
           picks(16, 32, 32, 128, 128, (Conv2dParams){.stride = 1});
}

static bool winograd_fp32_picks(size_t n, size_t h, size_t w, size_t ci, size_t co, Conv2dParams p) {
    return conv2d_winograd_fp32_fits((Conv2dShape){n, h, w, ci, co, 3, 3, h, w}, p);
}

static void test_winograd_fp32(void) {
    const Conv2dParams s1p1 = conv2d_params(1, 1);
    if (winograd_fp32_picks(16, 32, 32, 128, 128, s1p1)) {
        EXPECT(winograd_fp32_picks(64, 7, 7, 64, 64, s1p1) && winograd_fp32_picks(16, 16, 16, 256, 256, s1p1) &&
                   winograd_fp32_picks(64, 14, 14, 96, 32, s1p1) && winograd_fp32_picks(64, 28, 28, 16, 16, s1p1) &&
                   winograd_fp32_picks(64, 14, 14, 48, 32, s1p1),
               "fp32 Winograd: not picked from 16 channels, 128 tiles, up to 256x256 channels");
        EXPECT(!winograd_fp32_picks(16, 16, 16, 512, 256, s1p1) && !winograd_fp32_picks(16, 8, 8, 256, 256, s1p1) &&
                   !winograd_fp32_picks(64, 28, 28, 8, 16, s1p1) && !winograd_fp32_picks(64, 28, 28, 16, 24, s1p1),
               "fp32 Winograd: picked past 256x256 channels, below 128 tiles, 16 channels or blocks of 16");
        EXPECT(!picks_strided_or_unpadded(winograd_fp32_picks),
               "fp32 Winograd: picked for a stride of 2 or no padding");
        ops_set_precision(OPS_PRECISION_BF16);
        EXPECT(!winograd_fp32_picks(16, 32, 32, 128, 128, s1p1), "fp32 Winograd: picked in bf16 precision");
        ops_set_precision(OPS_PRECISION_FP32);
    }
    conv2d_fast_use_winograd_fp32(true, true);
    if (!winograd_fp32_picks(1, 4, 4, 32, 32, s1p1)) {
        printf("  skipped: built without AVX-512\n");
        conv2d_fast_use_winograd_fp32(true, false);
        return;
    }
    /* Even and odd sides (partial tiles at the last row and column), output blocks of 64, 32 and 16, tile
     * counts off the GEMM's row blocks, several chunks per thread (the 24x24 case); backward-weights chunk
     * by chunk (below 32x64 channels; runs of several chunks per partial: the 11-image case), by block (32x64
     * to 64x64) and in shared chunks (24x24). 2x2 kernels, F(4x4, 2x2), padded as the upsamplers' four
     * phases are (upsample_conv.c). */
    static const Case cases[] = {
        {2, 14, 14, 32, 32, 3, 3, S1P1, true},  {3, 7, 7, 64, 64, 3, 3, S1P1, true},
        {1, 9, 5, 96, 32, 3, 3, S1P1, false},   {1, 5, 5, 32, 96, 3, 3, S1P1, true},
        {4, 24, 24, 64, 128, 3, 3, S1P1, true}, {2, 11, 13, 16, 16, 3, 3, S1P1, true},
        {1, 10, 6, 48, 80, 3, 3, S1P1, true},   {11, 32, 32, 16, 16, 3, 3, S1P1, true},
        {3, 7, 7, 64, 64, 2, 2, {.stride = 1, PAD(1, 0, 0, 1)}, true},
        {2, 9, 6, 32, 16, 2, 2, {.stride = 1, PAD(0, 1, 1, 0)}, true},
        {1, 6, 10, 16, 48, 2, 2, {.stride = 1, PAD(1, 0, 1, 0)}, false},
        {2, 14, 13, 32, 32, 2, 2, {.stride = 1, PAD(0, 1, 0, 1)}, true},
    };
    const size_t n_cases = sizeof cases / sizeof cases[0];
    fast_matches_reference(cases, n_cases);
    for (size_t k = 0; k < n_cases; k++) {
        const Case *c = &cases[k];
        Conv v[3]; /* ours with 1 thread, with 3 threads; oneDNN's */
        const int saved_threads = threads_get();
        for (int r = 0; r < 3; r++) {
            threads_set(r == 1 ? 3 : r == 0 ? 1 : saved_threads);
            conv2d_fast_use_winograd_fp32(r < 2, true);
            v[r] = conv_alloc(c);
            conv_fill(&v[r], 40 + k);
            conv_zero_grads(&v[r]);
            run_forward(&v[r], true);
            run_backward(&v[r], true);
        }
        threads_set(saved_threads);
        conv2d_fast_use_winograd_fp32(true, true);
        EXPECT(same_bits(v[0].out.data, v[1].out.data, n_out(c)) &&
                   same_bits(v[0].dinp.data, v[1].dinp.data, n_inp(c)) &&
                   same_bits(v[0].dweight.data, v[1].dweight.data, n_weight(c)),
               "fp32 Winograd %s: differs between 1 and 3 threads", case_str(c));
        EXPECT(!same_bits(v[0].out.data, v[2].out.data, n_out(c)) &&
                   !same_bits(v[0].dinp.data, v[2].dinp.data, n_inp(c)) &&
                   !same_bits(v[0].dweight.data, v[2].dweight.data, n_weight(c)),
               "fp32 Winograd %s: oneDNN's kernels gave the same bits, so it did not run", case_str(c));
        for (int r = 0; r < 3; r++) conv_free(&v[r]);
    }
    conv2d_fast_use_winograd_fp32(true, false);
}

/* The fast path moves weights with its own loops where it can (conv2d_weights.c) and with oneDNN's
 * reorders elsewhere; this runs the latter everywhere, so both stay tested. */
static void test_fast_with_onednn_weight_reorders(void) {
    conv2d_fast_use_own_weight_moves(false);
    run_fixtures(true);
    fast_matches_reference(odd_cases, sizeof odd_cases / sizeof odd_cases[0]);
    fast_matches_reference(small_unet_cases, sizeof small_unet_cases / sizeof small_unet_cases[0]);
    conv2d_fast_use_own_weight_moves(true);
}

/* ------------------------------------------------------------------------------------------------ */
/* bf16 precision: each pass rounds its two operands to bf16 and accumulates in fp32, so it equals the
 * fp32 reference run on operands rounded to bf16, within the summation-order tolerance above; against
 * the unrounded operands it is off by their rounding (2^-9 relative per term), which must show. */

static void round_to_bf16(float *x, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] = bfloat16_to_float(float_to_bfloat16(x[i]));
}

static void bf16_matches_rounded_reference(const Case *c, uint64_t seed) {
    Conv fast = conv_alloc(c), ref = conv_alloc(c);
    conv_fill(&fast, seed);
    conv_copy_operands(&ref, &fast);
    /* The unrounded fp32 result first, to show that bf16 changes it. */
    run_forward(&ref, false);
    float *out_fp32 = copy_of(ref.out.data, n_out(c));
    round_to_bf16(ref.inp.data, n_inp(c));
    round_to_bf16(ref.weight.data, n_weight(c));
    round_to_bf16(ref.dout.data, n_out(c));
    run_forward(&ref, false);
    conv_zero_grads(&ref);
    run_backward(&ref, false);

    ops_set_precision(OPS_PRECISION_BF16);
    run_forward(&fast, true);
    conv_zero_grads(&fast);
    run_backward(&fast, true);
    /* The input handed over already in bf16 gives the same bits. */
    uint16_t *inp_bf16 = xmalloc(n_inp(c) * sizeof(uint16_t));
    floats_to_bfloat16(inp_bf16, fast.inp.data, n_inp(c));
    Bf16Image image = {inp_bf16, c->n, c->h, c->w, c->ci};
    float *out_once = copy_of(fast.out.data, n_out(c)), *dweight_once = copy_of(fast.dweight.data, n_weight(c));
    conv2d_forward_bf16_input(fast.out, image, fast.weight, fast.bias, c->p);
    memset(fast.dweight.data, 0, n_weight(c) * sizeof(float));
    conv2d_backward_bf16_input(tensor_none(), fast.dweight, tensor_none(), fast.dout, image, fast.weight, c->p);
    EXPECT(same_bits(fast.out.data, out_once, n_out(c)) && same_bits(fast.dweight.data, dweight_once, n_weight(c)),
           "bf16 %s: a bf16 input gives other results than the same values in fp32", case_str(c));
    ops_set_precision(OPS_PRECISION_FP32);
    free(inp_bf16), free(out_once), free(dweight_once);

    expect_scaled("bf16 vs rounded reference", c, "out", fast.out.data, ref.out.data, n_out(c), FAST_VS_REFERENCE_TOL);
    expect_scaled("bf16 vs rounded reference", c, "dinp", fast.dinp.data, ref.dinp.data, n_inp(c),
                  FAST_VS_REFERENCE_TOL);
    expect_scaled("bf16 vs rounded reference", c, "dweight", fast.dweight.data, ref.dweight.data, n_weight(c),
                  FAST_VS_REFERENCE_TOL);
    if (c->with_bias)
        expect_scaled("bf16 vs rounded reference", c, "dbias", fast.dbias.data, ref.dbias.data, c->co,
                      FAST_VS_REFERENCE_TOL);
    double worst = 0, scale = max_abs(out_fp32, n_out(c));
    for (size_t i = 0; i < n_out(c); i++) worst = fmax(worst, fabs((double)fast.out.data[i] - out_fp32[i]));
    EXPECT(worst / scale > 1e-4 && worst / scale < 2e-2, "bf16 %s: out differs from fp32 by %.2g of its scale, "
           "expected bf16 rounding (1e-4 .. 2e-2)", case_str(c), worst / scale);
    conv_check_guards(&fast, "bf16");
    free(out_fp32);
    conv_free(&fast);
    conv_free(&ref);
}

static void test_bf16_matches_rounded_reference(void) {
    if (!ops_bf16_supported()) {
        printf("  skipped: this CPU has no bf16 arithmetic (AVX-512 BF16 or AMX)\n");
        return;
    }
    conv2d_fast_use_winograd_bf16(false, false); /* oneDNN's bf16 kernels round the operands; see test_winograd_bf16 */
    /* Inputs of 16 channels or more: below that, backward-data stays fp32 (conv2d_dnnl.c). From 512 output
     * positions at stride 1, backward-data runs as a forward convolution of flipped weights. */
    static const Case cases[] = {
        {1, 16, 16, 40, 40, 3, 3, S1P1, true},
        {2, 16, 16, 40, 48, 3, 3, S1P1, true},
        {2, 16, 16, 72, 40, 1, 1, {.stride = 1}, false},
        {2, 16, 16, 20, 24, 5, 5, {.stride = 1, PAD(2, 1, 0, 3)}, true},
        {1, 4, 4, 96, 96, 3, 3, S1P1, true},
        {1, 16, 16, 40, 40, 3, 3, {.stride = 2, PAD(0, 1, 0, 1)}, true},
        {1, 16, 16, 72, 40, 1, 1, {.stride = 1}, false},
        {1, 16, 16, 40, 3, 3, 3, S1P1, true},
        {1, 9, 7, 20, 24, 5, 5, {.stride = 2, PAD(2, 2, 2, 2)}, true},
#ifndef __SANITIZE_ADDRESS__
        {2, 32, 32, 256, 256, 3, 3, S1P1, true},
        {2, 8, 8, 512, 512, 3, 3, S1P1, true},
#endif
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) bf16_matches_rounded_reference(&cases[k], 100 + 5 * k);
    conv2d_fast_use_winograd_bf16(true, false);
}

/* bf16 Winograd F(2x2, 3x3) (conv2d_winograd_bf16.c): forward, backward-data and backward-weights of 3x3
 * stride-1 pad-1 convolutions in bf16 precision, on CPUs with AVX-512 BF16 and no AMX. It rounds the
 * transformed operands, not the operands, so it is held to the unrounded fp32 reference: within 2e-2 of
 * the largest value (measured 2.5e-3 .. 6.7e-3; relative RMS error 3.9e-3 against bf16 direct's 2.3e-3,
 * tools/winograd_bf16_error.py), and off by more than 1e-4, the rounding must show. Any transform, tile or
 * layout mistake is an O(1) error. */
#define WINOGRAD_BF16_TOL 2e-2

static bool within_bf16_rounding(const char *what, const Case *c, const char *name, const float *got,
                                 const float *want, size_t n) {
    double worst = 0, scale = max_abs(want, n);
    for (size_t i = 0; i < n; i++) worst = fmax(worst, fabs((double)got[i] - want[i]));
    EXPECT(worst / scale > 1e-4 && worst / scale < WINOGRAD_BF16_TOL,
           "%s %s %s: differs from the fp32 reference by %.2g of its scale, expected 1e-4 .. %g", what, case_str(c),
           name, worst / scale, WINOGRAD_BF16_TOL);
    return worst / scale < WINOGRAD_BF16_TOL;
}

static void winograd_bf16_case(const Case *c, uint64_t seed) {
    const Conv2dShape shape = {.n = c->n, .h = c->h, .w = c->w, .ci = c->ci, .co = c->co, .kh = 3, .kw = 3,
                               .ho = c->h, .wo = c->w};
    Conv fast = conv_alloc(c), ref = conv_alloc(c);
    conv_fill(&ref, seed);
    conv_copy_operands(&fast, &ref);
    run_forward(&ref, false);
    conv_zero_grads(&ref);
    run_backward(&ref, false);

    ops_set_precision(OPS_PRECISION_BF16);
    EXPECT(conv2d_winograd_bf16_fits(shape, c->p), "bf16 Winograd %s: expected to fit", case_str(c));
    run_forward(&fast, true);
    conv_zero_grads(&fast);
    run_backward(&fast, true);
    within_bf16_rounding("bf16 Winograd", c, "out", fast.out.data, ref.out.data, n_out(c));
    within_bf16_rounding("bf16 Winograd", c, "dinp", fast.dinp.data, ref.dinp.data, n_inp(c));
    within_bf16_rounding("bf16 Winograd", c, "dweight", fast.dweight.data, ref.dweight.data, n_weight(c));
    if (c->with_bias)
        expect_scaled("bf16 Winograd", c, "dbias", fast.dbias.data, ref.dbias.data, c->co, FAST_VS_REFERENCE_TOL);

    /* The weight gradient adds to dweight, and is the same alone, from a bf16 input close to it. */
    float *dweight1 = copy_of(fast.dweight.data, n_weight(c));
    conv2d_backward(tensor_none(), fast.dweight, tensor_none(), fast.dout, fast.inp, fast.weight, c->p);
    expect_doubled(c, "dweight", fast.dweight.data, dweight1, n_weight(c));

    /* Backward-data adds to dinp, or overwrites a dinp marked so (here full of NaN). */
    float *dinp1 = copy_of(fast.dinp.data, n_inp(c)), *out1 = copy_of(fast.out.data, n_out(c));
    conv2d_backward(fast.dinp, tensor_none(), tensor_none(), fast.dout, fast.inp, fast.weight, c->p);
    expect_doubled(c, "dinp", fast.dinp.data, dinp1, n_inp(c));
    for (size_t i = 0; i < n_inp(c); i++) fast.dinp.data[i] = NAN;
    conv2d_backward(tensor_overwrite(fast.dinp), tensor_none(), tensor_none(), fast.dout, fast.inp, fast.weight, c->p);
    EXPECT(same_bits(fast.dinp.data, dinp1, n_inp(c)), "bf16 Winograd %s: an overwritten dinp differs", case_str(c));

    /* An input handed over in bf16 is the rounded input: close to the fp32 one's result, not the same. */
    uint16_t *inp_bf16 = xmalloc(n_inp(c) * sizeof(uint16_t));
    floats_to_bfloat16(inp_bf16, fast.inp.data, n_inp(c));
    conv2d_forward_bf16_input(fast.out, (Bf16Image){inp_bf16, c->n, c->h, c->w, c->ci}, fast.weight, fast.bias, c->p);
    within_bf16_rounding("bf16 Winograd, bf16 input", c, "out", fast.out.data, ref.out.data, n_out(c));
    EXPECT(!same_bits(fast.out.data, out1, n_out(c)), "bf16 Winograd %s: the bf16 input was not used", case_str(c));
    memset(fast.dweight.data, 0, n_weight(c) * sizeof(float));
    conv2d_backward_bf16_input(tensor_none(), fast.dweight, tensor_none(), fast.dout,
                               (Bf16Image){inp_bf16, c->n, c->h, c->w, c->ci}, fast.weight, c->p);
    within_bf16_rounding("bf16 Winograd, bf16 input", c, "dweight", fast.dweight.data, ref.dweight.data, n_weight(c));

    /* Each output and each sum stays with one thread: the same bits with 1 and 3 threads (uneven splits). */
    const int saved_threads = threads_get();
    Conv by_threads[2];
    for (int t = 0; t < 2; t++) {
        threads_set(t == 0 ? 1 : 3);
        by_threads[t] = conv_alloc(c);
        conv_copy_operands(&by_threads[t], &ref);
        run_forward(&by_threads[t], true);
        conv_zero_grads(&by_threads[t]);
        run_backward(&by_threads[t], true);
    }
    threads_set(saved_threads);
    EXPECT(same_bits(by_threads[0].out.data, by_threads[1].out.data, n_out(c)) &&
               same_bits(by_threads[0].dinp.data, by_threads[1].dinp.data, n_inp(c)) &&
               same_bits(by_threads[0].dweight.data, by_threads[1].dweight.data, n_weight(c)) &&
               (!c->with_bias || same_bits(by_threads[0].dbias.data, by_threads[1].dbias.data, c->co)),
           "bf16 Winograd %s: differs between 1 and 3 threads", case_str(c));
    conv_free(&by_threads[0]);
    conv_free(&by_threads[1]);

    /* With it off, bf16 precision takes oneDNN's kernels: other bits, so the kernel above did run. */
    conv2d_fast_use_winograd_bf16(false, false);
    EXPECT(!conv2d_winograd_bf16_fits(shape, c->p), "bf16 Winograd %s: fits while switched off", case_str(c));
    run_forward(&fast, true);
    EXPECT(!same_bits(fast.out.data, out1, n_out(c)), "bf16 Winograd %s: oneDNN gave the same bits", case_str(c));
    conv2d_fast_use_winograd_bf16(true, true);
    ops_set_precision(OPS_PRECISION_FP32);
    EXPECT(!conv2d_winograd_bf16_fits(shape, c->p), "bf16 Winograd %s: fits in fp32 precision", case_str(c));
    conv_check_guards(&fast, "bf16 Winograd");
    free(dinp1), free(out1), free(dweight1), free(inp_bf16);
    conv_free(&fast);
    conv_free(&ref);
}

/* Whether the size rule (conv2d_winograd_bf16.c) picks the bf16 Winograd for N images of HxW, ci -> co. */
static bool winograd_bf16_picks(size_t n, size_t h, size_t w, size_t ci, size_t co, Conv2dParams p) {
    return conv2d_winograd_bf16_fits((Conv2dShape){n, h, w, ci, co, 3, 3, h, w}, p);
}

static void test_winograd_bf16(void) {
    const Conv2dParams s1p1 = conv2d_params(1, 1);
    ops_set_precision(OPS_PRECISION_BF16);
    const bool runs = winograd_bf16_picks(16, 32, 32, 128, 128, s1p1);
    if (runs) {
        EXPECT(winograd_bf16_picks(16, 8, 8, 512, 256, s1p1) && winograd_bf16_picks(64, 4, 4, 256, 256, s1p1),
               "bf16 Winograd: not picked from 128 channels and 1024 positions");
        EXPECT(!winograd_bf16_picks(16, 4, 4, 256, 256, s1p1) && !winograd_bf16_picks(64, 14, 14, 64, 128, s1p1) &&
                   !winograd_bf16_picks(64, 14, 14, 128, 96, s1p1) && !winograd_bf16_picks(16, 32, 32, 144, 128, s1p1),
               "bf16 Winograd: picked below 1024 positions, below 128 channels or off blocks of 32 channels");
        EXPECT(!picks_strided_or_unpadded(winograd_bf16_picks),
               "bf16 Winograd: picked for a stride of 2 or no padding");
    }
    ops_set_precision(OPS_PRECISION_FP32);
    if (!runs) {
        printf("  skipped: built without AVX-512 BF16, or this CPU lacks it or has AMX\n");
        return;
    }
    /* At every size it can run: even and odd sides (partial tiles at the last row and column), 32 to 128
     * channels (output blocks of 64 and 32), tile counts off the GEMM's row blocks, several chunks per
     * thread (the 32x32 case). */
    conv2d_fast_use_winograd_bf16(true, true);
    static const Case cases[] = {
        {2, 14, 14, 32, 32, 3, 3, S1P1, true},  {3, 7, 7, 64, 64, 3, 3, S1P1, true},
        {1, 9, 5, 96, 32, 3, 3, S1P1, false},   {1, 5, 5, 32, 96, 3, 3, S1P1, true},
        {4, 32, 32, 64, 128, 3, 3, S1P1, true},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) winograd_bf16_case(&cases[k], 300 + 5 * k);
    conv2d_fast_use_winograd_bf16(true, false);
}

/* ------------------------------------------------------------------------------------------------ */
/* Held weights (sampling) */

/* Forward of the first image only, through views of v's tensors. */
static void forward_first_image(Conv *v) {
    const Case *c = &v->c;
    conv2d_forward(tensor_4d(v->out.data, 1, case_ho(c), case_wo(c), c->co), tensor_4d(v->inp.data, 1, c->h, c->w, c->ci),
                   v->weight, v->bias, c->p);
}

/* Held forwards give the bits of plain ones, keep two weight tensors of one shape apart, serve a second
 * batch size (another plan), and, where a copy is held (`moved`), do not see a held weight change until
 * released, as the caller promised not to make one. */
static void held_weights_case(const Case *c, OpsPrecision precision, bool moved) {
    ops_set_precision(precision);
    const size_t n = n_out(c), n_first = n / c->n;
    Conv a = conv_alloc(c), b = conv_alloc(c);
    conv_fill(&a, 7);
    conv_fill(&b, 8);
    memcpy(b.inp.data, a.inp.data, n_inp(c) * sizeof(float));
    float *want_a = xmalloc(n * sizeof(float)), *want_b = xmalloc(n * sizeof(float));
    float *want_first = xmalloc(n_first * sizeof(float));
    forward_first_image(&a);
    memcpy(want_first, a.out.data, n_first * sizeof(float));
    run_forward(&a, true);
    memcpy(want_a, a.out.data, n * sizeof(float));
    run_forward(&b, true);
    memcpy(want_b, b.out.data, n * sizeof(float));
    EXPECT(!same_bits(want_a, want_b, n), "held %s: the two weight tensors should give different outputs", case_str(c));

    conv2d_hold_weights(true);
    for (int round = 0; round < 2; round++) {
        run_forward(&a, true);
        EXPECT(same_bits(a.out.data, want_a, n), "held %s %s, round %d: out differs from the unheld forward",
               ops_precision_name(precision), case_str(c), round);
        run_forward(&b, true);
        EXPECT(same_bits(b.out.data, want_b, n), "held %s %s, round %d: the second weight tensor's out differs",
               ops_precision_name(precision), case_str(c), round);
        forward_first_image(&a);
        EXPECT(same_bits(a.out.data, want_first, n_first), "held %s %s, round %d: batch 1 differs",
               ops_precision_name(precision), case_str(c), round);
    }
    for (size_t i = 0; i < n_weight(c); i++) a.weight.data[i] *= 2;
    run_forward(&a, true);
    EXPECT(same_bits(a.out.data, want_a, n) == moved, "held %s %s: a held forward should %s its weights",
           ops_precision_name(precision), case_str(c), moved ? "not reread" : "read");
    conv2d_hold_weights(false);
    run_forward(&a, true);
    EXPECT(!same_bits(a.out.data, want_a, n), "released %s %s: the changed weights should be read",
           ops_precision_name(precision), case_str(c));
    conv_check_guards(&a, "held");
    free(want_a), free(want_b), free(want_first);
    conv_free(&a);
    conv_free(&b);
    ops_set_precision(OPS_PRECISION_FP32);
}

/* fp32 copies are held only while they all fit in 64 MB: of two 38 MB weight tensors the first is held,
 * the second read on every call. */
static void test_held_weights_fp32_budget(void) {
    const Case wide = {1, 16, 16, 1024, 1024, 3, 3, S1P1, false}; /* enough positions for blocked weights */
    const size_t n = n_out(&wide);
    Conv a = conv_alloc(&wide), b = conv_alloc(&wide);
    conv_fill(&a, 9);
    conv_fill(&b, 10);
    float *want_a = xmalloc(n * sizeof(float)), *want_b = xmalloc(n * sizeof(float));
    conv2d_hold_weights(true);
    run_forward(&a, true);
    memcpy(want_a, a.out.data, n * sizeof(float));
    run_forward(&b, true);
    memcpy(want_b, b.out.data, n * sizeof(float));
    for (size_t i = 0; i < n_weight(&wide); i++) a.weight.data[i] *= 2, b.weight.data[i] *= 2;
    run_forward(&a, true);
    run_forward(&b, true);
    EXPECT(same_bits(a.out.data, want_a, n), "the first 38 MB of fp32 weights should be held");
    EXPECT(!same_bits(b.out.data, want_b, n), "the second 38 MB of fp32 weights should be read again");
    conv2d_hold_weights(false);
    free(want_a), free(want_b);
    conv_free(&a);
    conv_free(&b);
}

static void test_held_weights(void) {
    const Case blocked = {2, 16, 16, 32, 48, 3, 3, S1P1, true}, few_positions = {2, 4, 4, 64, 64, 3, 3, S1P1, false};
    /* bf16 forwards hold their rounded weights, fp32 ones their moved weights, whether our own loops or
     * oneDNN's reorder moves them; nothing is held where nothing moves them (the channels-first forward of
     * few positions). */
    held_weights_case(&blocked, OPS_PRECISION_FP32, true);
    conv2d_fast_use_own_weight_moves(false);
    held_weights_case(&blocked, OPS_PRECISION_FP32, true);
    conv2d_fast_use_own_weight_moves(true);
    held_weights_case(&few_positions, OPS_PRECISION_FP32, false);
    if (ops_bf16_supported()) { /* oneDNN's kernels, then the bf16 Winograd's transformed weights */
        conv2d_fast_use_winograd_bf16(false, false);
        held_weights_case(&blocked, OPS_PRECISION_BF16, true);
        held_weights_case(&few_positions, OPS_PRECISION_BF16, true);
        conv2d_fast_use_winograd_bf16(true, true);
        const Case winograd = {2, 8, 8, 64, 32, 3, 3, S1P1, true};
        ops_set_precision(OPS_PRECISION_BF16);
        if (winograd_bf16_picks(2, 8, 8, 64, 32, winograd.p)) held_weights_case(&winograd, OPS_PRECISION_BF16, true);
        ops_set_precision(OPS_PRECISION_FP32);
        conv2d_fast_use_winograd_bf16(true, false);
    }
    conv2d_fast_use_winograd_fp32(true, true); /* our fp32 Winograd's transformed weights */
    const Case winograd_fp32 = {2, 8, 8, 64, 32, 3, 3, S1P1, true};
    if (winograd_fp32_picks(2, 8, 8, 64, 32, winograd_fp32.p))
        held_weights_case(&winograd_fp32, OPS_PRECISION_FP32, true);
    conv2d_fast_use_winograd_fp32(true, false);
}

/* ------------------------------------------------------------------------------------------------ */
/* Repeatability across thread counts, and the plan cache */

/* Bit-exact at a fixed thread count is asserted above (second forward, doubled gradients). Across
 * thread counts oneDNN may split its backward-weights reduction differently (measured: the conv_in and
 * conv_out shapes differ in the last bits between 1 and 2 threads, the others do not), so the fast path
 * is held to the fast-vs-reference tolerance and the outcome printed; the reference is asserted
 * bitwise equal. */
static void thread_count_case(const Case *c) {
    Conv v[2][2]; /* [fast?][run with 1 thread, with all threads] */
    int saved = threads_get();
    for (int fast = 0; fast < 2; fast++) {
        for (int r = 0; r < 2; r++) {
            v[fast][r] = conv_alloc(c);
            conv_fill(&v[fast][r], 99);
            conv_zero_grads(&v[fast][r]);
            threads_set(r == 0 ? 1 : threads_available());
            run_forward(&v[fast][r], fast);
            run_backward(&v[fast][r], fast);
        }
    }
    threads_set(saved);
    const char *names[] = {"out", "dinp", "dweight", "dbias"};
    for (int fast = 0; fast < 2; fast++) {
        const Conv *a = &v[fast][0], *b = &v[fast][1];
        const float *xa[] = {a->out.data, a->dinp.data, a->dweight.data, a->dbias.data};
        const float *xb[] = {b->out.data, b->dinp.data, b->dweight.data, b->dbias.data};
        size_t n[] = {n_out(c), n_inp(c), n_weight(c), c->co};
        printf("  %s %s, 1 vs %d threads:", fast ? "fast" : "reference", case_str(c), threads_available());
        for (int t = 0; t < 4; t++) {
            bool same = same_bits(xa[t], xb[t], n[t]);
            printf(" %s %s", names[t], same ? "same" : "differs");
            if (fast) expect_scaled("fast 1 vs all threads", c, names[t], xb[t], xa[t], n[t], FAST_VS_REFERENCE_TOL);
            else EXPECT(same, "reference %s: %s differs between 1 and %d threads", case_str(c), names[t],
                        threads_available());
        }
        printf("\n");
    }
    for (int fast = 0; fast < 2; fast++)
        for (int r = 0; r < 2; r++) conv_free(&v[fast][r]);
}

static void test_thread_count_dependence(void) {
    if (threads_available() < 2) return;
    thread_count_case(&(Case){2, 16, 16, 64, 96, 3, 3, {.stride = 2, PAD(0, 1, 0, 1)}, true});
    thread_count_case(&(Case){2, 32, 32, 64, 3, 3, 3, S1P1, true});
}

/* fp32 1x1 convolutions on few channels (the narrow resnet blocks' shortcuts) take their backward from
 * narrow_gemm.c (conv2d_dnnl.c, pointwise_narrow_fits): against the reference (accumulation, each gradient
 * alone), and on AVX-512 builds the same bits as narrow_gemm_kco and narrow_weight_grad called directly,
 * so the path is known to run. Rows 546 and 98: chunks and row blocks with tails. */
static void test_pointwise_narrow(void) {
    const Case cases[] = {
        {3, 14, 13, 48, 16, 1, 1, {.stride = 1}, true},
        {2, 7, 7, 96, 64, 1, 1, {.stride = 1}, false},
        {2, 7, 7, 16, 128, 1, 1, {.stride = 1}, true},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        const Case *c = &cases[k];
        fast_matches_reference(c, 1);
        if (!narrow_gemm_serves(c->co, c->ci)) continue;
        Conv v = conv_alloc(c);
        conv_fill(&v, 5 + k);
        conv_zero_grads(&v);
        const size_t rows = c->n * c->h * c->w;
        float *dinp = xmalloc(n_inp(c) * sizeof(float)), *dweight = xmalloc(n_weight(c) * sizeof(float));
        narrow_gemm_kco(dinp, NULL, v.dout.data, c->co, NULL, 0, v.weight.data, NULL, c->ci, rows, 1.0f);
        memset(dweight, 0, n_weight(c) * sizeof(float));
        narrow_weight_grad(dweight, NULL, v.dout.data, c->co, v.inp.data, c->ci, NULL, 0, rows);
        conv2d_backward(v.dinp, v.dweight, v.dbias, v.dout, v.inp, v.weight, c->p);
        EXPECT(same_bits(v.dinp.data, dinp, n_inp(c)), "%s: dinp is not narrow_gemm_kco's", case_str(c));
        EXPECT(same_bits(v.dweight.data, dweight, n_weight(c)), "%s: dweight is not narrow_weight_grad's",
               case_str(c));
        free(dinp), free(dweight);
        conv_check_guards(&v, "pointwise");
        conv_free(&v);
    }
}

/* The cache behind the plans (ops/lru_cache.h), on int keys: a hit returns the same entry, a miss when
 * full destroys the least recently used entry, and clearing destroys the rest. */
static int lru_created, lru_destroyed;
static bool lru_matches(const void *entry, const void *key) { return *(const int *)entry == *(const int *)key; }
static void *lru_create(const void *key) {
    int *entry = xmalloc(sizeof *entry);
    *entry = *(const int *)key;
    lru_created++;
    return entry;
}
static void lru_destroy(void *entry) {
    lru_destroyed++;
    free(entry);
}

static void test_lru_cache_order(void) {
    LruCache cache = {.capacity = 2, .matches = lru_matches, .create = lru_create, .destroy = lru_destroy};
    const int a = 1, b = 2, c = 3;
    int *first = lru_cache_get(&cache, &a);
    lru_cache_get(&cache, &b);
    EXPECT(lru_cache_get(&cache, &a) == first && lru_created == 2, "a hit rebuilt the entry");
    lru_cache_get(&cache, &c); /* full: b, used less recently than a, goes */
    EXPECT(lru_destroyed == 1 && lru_cache_get(&cache, &a) == first && lru_created == 3,
           "the miss evicted a, the most recently used entry, not b");
    lru_cache_get(&cache, &b);
    EXPECT(lru_created == 4 && lru_destroyed == 2, "b was not rebuilt after its eviction");
    lru_cache_clear(&cache);
    EXPECT(lru_destroyed == 4 && !cache.entries[0] && !cache.entries[1], "clearing left entries behind");
}

/* More distinct shapes than the plan cache holds: evicted plans are rebuilt and results stay right. */
static void test_plan_cache_eviction(void) {
    enum { N_SHAPES = 70 };
    /* Hundreds of tiny calls: one thread spares each its parallel-region start-up. */
    int saved_threads = threads_get();
    threads_set(1);
    for (int round = 0; round < 2; round++) {
        for (size_t k = 0; k < N_SHAPES; k += round ? 7 : 1) {
            const Case c = {1, 3 + k % 5, 3 + k / 5, 3 + k % 3, 2 + k % 4, 3, 3, S1P1, k % 2 == 0};
            Conv fast = conv_alloc(&c), ref = conv_alloc(&c);
            conv_fill(&ref, k);
            conv_fill(&fast, k);
            conv_zero_grads(&fast);
            conv_zero_grads(&ref);
            run_forward(&fast, true);
            run_forward(&ref, false);
            run_backward(&fast, true);
            run_backward(&ref, false);
            expect_scaled("cache", &c, "out", fast.out.data, ref.out.data, n_out(&c), FAST_VS_REFERENCE_TOL);
            expect_scaled("cache", &c, "dinp", fast.dinp.data, ref.dinp.data, n_inp(&c), FAST_VS_REFERENCE_TOL);
            expect_scaled("cache", &c, "dweight", fast.dweight.data, ref.dweight.data, n_weight(&c),
                          FAST_VS_REFERENCE_TOL);
            conv_check_guards(&fast, "cache");
            conv_free(&fast);
            conv_free(&ref);
        }
    }
    conv2d_cache_free();
    /* And after everything was released, the fast path starts over. */
    const Case c = fixture_cases[3];
    Conv fast = conv_alloc(&c), ref = conv_alloc(&c);
    conv_fill(&ref, 5);
    conv_fill(&fast, 5);
    run_forward(&fast, true);
    run_forward(&ref, false);
    expect_scaled("after conv2d_cache_free", &c, "out", fast.out.data, ref.out.data, n_out(&c), FAST_VS_REFERENCE_TOL);
    conv_free(&fast);
    conv_free(&ref);
    threads_set(saved_threads);
}

/* ------------------------------------------------------------------------------------------------ */
/* CHECK failures */

/* One bad call: a small valid convolution (N1 4x4 3->2 k3 pad 1) with one thing changed. */
typedef struct BadCall {
    bool fast, backward;
    Tensor out, inp, weight, bias, dinp, dweight, dbias;
    Conv2dParams p;
} BadCall;

static float bad_buf[8][256];

static BadCall bad_base(bool fast) {
    return (BadCall){.fast = fast,
                     .out = tensor_4d(bad_buf[0], 1, 4, 4, 2),
                     .inp = tensor_4d(bad_buf[1], 1, 4, 4, 3),
                     .weight = tensor_4d(bad_buf[2], 2, 3, 3, 3),
                     .bias = tensor_1d(bad_buf[3], 2),
                     .dinp = tensor_4d(bad_buf[4], 1, 4, 4, 3),
                     .dweight = tensor_4d(bad_buf[5], 2, 3, 3, 3),
                     .dbias = tensor_1d(bad_buf[6], 2),
                     .p = conv2d_params(1, 1)};
}

static void bad_run(void *ctx) {
    BadCall *b = ctx;
    if (b->backward)
        (b->fast ? conv2d_backward : conv2d_backward_reference)(b->dinp, b->dweight, b->dbias, b->out, b->inp,
                                                                b->weight, b->p);
    else (b->fast ? conv2d_forward : conv2d_forward_reference)(b->out, b->inp, b->weight, b->bias, b->p);
}

static void expect_bad(const char *what, BadCall b, const char *expected) {
    char name[160];
    snprintf(name, sizeof name, "%s %s %s", b.fast ? "conv2d" : "conv2d_reference",
             b.backward ? "backward" : "forward", what);
    expect_check_failure(name, bad_run, &b, expected);
}

static void test_bad_arguments(void) {
    for (int fast = 0; fast < 2; fast++) {
        BadCall b = bad_base(fast);
        b.weight = tensor_4d(bad_buf[2], 2, 4, 3, 3);
        expect_bad("channels", b, "has 4 input channels but inp (1, 4, 4, 3) (N, H, W, C) has 3");
        b = bad_base(fast);
        b.out = tensor_4d(bad_buf[0], 1, 4, 4, 3);
        expect_bad("out channels", b, "out has shape (1, 4, 4, 3), expected (1, 4, 4, 2)");
        b = bad_base(fast);
        b.p = conv2d_params(1, 0);
        expect_bad("out size", b, "out has shape (1, 4, 4, 2), expected (1, 2, 2, 2)");
        b = bad_base(fast);
        b.p.stride = 3;
        expect_bad("stride", b, "stride 3, expected 1 or 2");
        b = bad_base(fast);
        b.p.pad_right = -1;
        expect_bad("negative padding", b, "negative padding (top 1, bottom 1, left 1, right -1)");
        b = bad_base(fast);
        b.inp.data = NULL;
        expect_bad("NULL inp", b, "inp is NULL");
        b = bad_base(fast);
        b.weight.data = NULL;
        expect_bad("NULL weight", b, "weight is NULL");
        b = bad_base(fast);
        b.inp = tensor_4d(bad_buf[1], 0, 4, 4, 3);
        expect_bad("zero batch", b, "inp has a zero dimension");
        b = bad_base(fast);
        b.inp = tensor_3d(bad_buf[1], 4, 4, 3);
        expect_bad("3-D inp", b, "inp has shape (4, 4, 3), expected 4 dimensions");
        b = bad_base(fast);
        b.bias = tensor_1d(bad_buf[3], 3);
        expect_bad("bias", b, "bias has shape (3), expected (2)");
        b = bad_base(fast);
        b.weight = tensor_4d(bad_buf[2], 2, 3, 7, 7);
        b.p = conv2d_params(1, 0);
        expect_bad("kernel too large", b, "kernel 7x7 does not fit inp (1, 4, 4, 3)");
        b = bad_base(fast);
        b.out = tensor_4d(bad_buf[1], 1, 4, 4, 2);
        expect_bad("in place", b, "out overlaps an input");

        b = bad_base(fast);
        b.backward = true;
        b.dinp = tensor_4d(bad_buf[4], 1, 4, 3, 3);
        expect_bad("dinp", b, "dinp has shape (1, 4, 3, 3), expected (1, 4, 4, 3)");
        b = bad_base(fast);
        b.backward = true;
        b.dweight = tensor_4d(bad_buf[5], 2, 3, 1, 1);
        expect_bad("dweight", b, "dweight has shape (2, 3, 1, 1), expected (2, 3, 3, 3)");
        b = bad_base(fast);
        b.backward = true;
        b.dbias = tensor_1d(bad_buf[6], 3);
        expect_bad("dbias", b, "dbias has shape (3), expected (2)");
        b = bad_base(fast);
        b.backward = true;
        b.out = tensor_4d(bad_buf[0], 1, 2, 4, 2); /* passed as dout */
        expect_bad("dout", b, "dout has shape (1, 2, 4, 2), expected (1, 4, 4, 2)");
        b = bad_base(fast);
        b.backward = true;
        b.dinp = tensor_4d(bad_buf[0], 1, 4, 4, 3); /* the same buffer as dout */
        expect_bad("dinp aliases dout", b, "dinp overlaps dout or weight");
    }
    EXPECT(conv2d_out_size(32, 3, 2, 0, 1) == 16 && conv2d_out_size(5, 3, 2, 1, 1) == 3 &&
               conv2d_out_size(2, 3, 1, 0, 0) == 0 && conv2d_out_size(7, 3, 2, 0, 0) == 3,
           "conv2d_out_size");
}

int main(void) {
    RUN(test_reference_gradcheck);
    RUN(test_reference_matches_pytorch);
    RUN(test_fast_matches_pytorch);
    RUN(test_fast_matches_reference);
    RUN(test_winograd_plans);
    RUN(test_winograd_fp32);
    RUN(test_fast_with_onednn_weight_reorders);
    RUN(test_bf16_matches_rounded_reference);
    RUN(test_winograd_bf16);
    RUN(test_held_weights);
    RUN(test_held_weights_fp32_budget);
    RUN(test_thread_count_dependence);
    RUN(test_pointwise_narrow);
    RUN(test_lru_cache_order);
    RUN(test_plan_cache_eviction);
    RUN(test_bad_arguments);
    conv2d_cache_free();
    return harness_finish();
}
