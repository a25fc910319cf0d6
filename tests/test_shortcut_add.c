/* shortcut_add: the fused pass against the ops it stands for (concatenation, conv2d_forward_reference with
 * a 1x1 kernel, then (out + shortcut) scale), across register blocks, channel blocks, leftover rows, one or
 * two sources, with and without bias, the identity shortcut; its backward on two parts; guard words;
 * thread-count independence; the rule that picks it; CHECK failures. The U-Net's comparisons with diffusers
 * run it too. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/threads.h"
#include "harness.h"
#include "ops/conv2d.h"
#include "ops/precision.h"
#include "ops/shortcut_add.h"

typedef struct Case {
    size_t n, h, w, ca, cb, co;
    bool with_weight, with_bias;
    float scale;
} Case;

typedef struct Buffers {
    float *a, *b, *weight, *bias, *branch;
} Buffers;

static Buffers make_inputs(const Case *c) {
    const size_t rows = c->n * c->h * c->w, ci = c->ca + c->cb;
    Buffers in = {alloc_floats(rows * c->ca), c->cb ? alloc_floats(rows * c->cb) : NULL,
                  c->with_weight ? alloc_floats(c->co * ci) : NULL, c->with_bias ? alloc_floats(c->co) : NULL,
                  alloc_floats(rows * c->co)};
    fill_normal(in.a, rows * c->ca, 1);
    if (in.b) fill_normal(in.b, rows * c->cb, 2);
    if (in.weight) fill_uniform(in.weight, c->co * ci, 3, -1.0f / sqrtf((float)ci), 1.0f / sqrtf((float)ci));
    if (in.bias) fill_normal(in.bias, c->co, 4);
    fill_normal(in.branch, rows * c->co, 5);
    return in;
}

static void free_inputs(Buffers *in) {
    float *all[] = {in->a, in->b, in->weight, in->bias, in->branch};
    for (size_t i = 0; i < 5; i++) alloc_free(all[i]);
}

static Tensor image(const Case *c, float *data, size_t channels) {
    return data ? tensor_4d(data, c->n, c->h, c->w, channels) : tensor_none();
}

/* The fused pass into out (which starts as the branch). */
static void fused(const Case *c, const Buffers *in, float *out) {
    const size_t rows = c->n * c->h * c->w;
    memcpy(out, in->branch, rows * c->co * sizeof(float));
    shortcut_add_forward(image(c, out, c->co), image(c, in->a, c->ca), image(c, in->b, c->cb),
                         in->weight ? tensor_4d(in->weight, c->co, c->ca + c->cb, 1, 1) : tensor_none(),
                         in->bias ? tensor_1d(in->bias, c->co) : tensor_none(), c->scale);
}

/* The separate ops: concat, the reference convolution (or the identity), (branch + shortcut) scale. */
static void reference(const Case *c, const Buffers *in, float *out) {
    const size_t rows = c->n * c->h * c->w, ci = c->ca + c->cb;
    float *cat = alloc_floats(rows * ci), *shortcut = alloc_floats(rows * c->co);
    for (size_t r = 0; r < rows; r++) {
        memcpy(cat + r * ci, in->a + r * c->ca, c->ca * sizeof(float));
        if (c->cb) memcpy(cat + r * ci + c->ca, in->b + r * c->cb, c->cb * sizeof(float));
    }
    if (in->weight)
        conv2d_forward_reference(image(c, shortcut, c->co), image(c, cat, ci), tensor_4d(in->weight, c->co, ci, 1, 1),
                                 in->bias ? tensor_1d(in->bias, c->co) : tensor_none(), conv2d_params(1, 0));
    else
        memcpy(shortcut, cat, rows * c->co * sizeof(float));
    for (size_t i = 0; i < rows * c->co; i++) out[i] = (in->branch[i] + shortcut[i]) * c->scale;
    alloc_free(cat), alloc_free(shortcut);
}

static void check_case(const Case *c) {
    char what[128];
    snprintf(what, sizeof what, "%zux%zux%zu %zu+%zu->%zu%s%s scale %g", c->n, c->h, c->w, c->ca, c->cb, c->co,
             c->with_weight ? "" : " identity", c->with_bias ? " bias" : "", (double)c->scale);
    if (!shortcut_add_fused(c->ca, c->cb, c->co, c->with_weight)) {
        printf("  skipped %s: this build has no fused pass for it\n", what);
        return;
    }
    const size_t n_out = c->n * c->h * c->w * c->co;
    Buffers in = make_inputs(c);
    float *got = guarded_alloc(n_out), *want = alloc_floats(n_out);
    fused(c, &in, got);
    reference(c, &in, want);
    /* one chain of ca + cb products in float against the reference's: a few ulps of the largest terms */
    if (!expect_close_scaled(what, got, want, n_out, 1e-5)) printf("  (failures above are for %s)\n", what);
    guarded_check(what, got);
    guarded_free(got), alloc_free(want);
    free_inputs(&in);
}

static void test_shortcut_add_matches_separate_ops(void) {
    shortcut_add_force(1);
    const float s = 1.0f / sqrtf(2.0f);
    static const Case cases[] = {
        {2, 28, 28, 32, 16, 16, true, true, 1.0f},  /* fashion-mnist's up block at 28x28: 24-row blocks */
        {2, 14, 14, 64, 32, 32, true, true, 1.0f},  /* 12-row blocks of 2 vectors */
        {3, 7, 5, 64, 64, 64, true, true, 0.5f},    /* 6-row blocks of 4 vectors, 105 rows: 3 left over */
        {1, 5, 5, 20, 13, 48, true, false, 1.0f},   /* 8-row blocks of 3 vectors, odd input widths, no bias */
        {2, 3, 7, 40, 0, 80, true, true, 1.0f},     /* one source; channel blocks of 64 and 16 */
        {1, 4, 9, 100, 44, 272, true, true, 1.0f},  /* channel blocks of 64 x 4 and 16 */
        {2, 6, 6, 24, 8, 32, false, false, 1.0f},   /* identity shortcut of a concatenation */
        {2, 6, 6, 24, 0, 24, false, false, 0.5f},   /* identity shortcut, one source */
        {1, 1, 1, 3, 5, 16, true, true, 1.0f},      /* a single row */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        Case c = cases[i];
        check_case(&c);
        c.scale = s;
        check_case(&c);
    }
    shortcut_add_force(-1);
}

/* The backward on two parts against conv2d_backward on their concatenation, then its split: the same bits
 * of da (written), db (added to its earlier contents), dweight and dbias (added to), where both run our
 * narrow products; and within 1e-5 of the reference convolution's backward. The identity: the split. */
static void check_backward(const Case *c) {
    char what[128];
    snprintf(what, sizeof what, "backward %zux%zux%zu %zu+%zu->%zu%s", c->n, c->h, c->w, c->ca, c->cb, c->co,
             c->with_weight ? "" : " identity");
    if (!shortcut_add_backward_fused(c->ca, c->cb, c->co, c->with_weight)) {
        printf("  skipped %s: this build has no fused pass for it\n", what);
        return;
    }
    const size_t rows = c->n * c->h * c->w, ci = c->ca + c->cb, n_w = c->co * ci;
    Buffers in = make_inputs(c); /* branch: the gradient d */
    float *cat = alloc_floats(rows * ci), *dcat = alloc_floats(rows * ci), *d_ref = alloc_floats(rows * ci);
    float *da = guarded_alloc(rows * c->ca), *db = guarded_alloc(rows * c->cb), *db_before = alloc_floats(rows * c->cb);
    float *grads = alloc_floats(3 * (n_w + c->co)); /* dweight, dbias: fused, conv2d, reference */
    fill_normal(db_before, rows * c->cb, 6);
    fill_normal(grads, n_w + c->co, 7);
    memcpy(grads + n_w + c->co, grads, (n_w + c->co) * sizeof(float));
    memcpy(grads + 2 * (n_w + c->co), grads, (n_w + c->co) * sizeof(float));
    memcpy(db, db_before, rows * c->cb * sizeof(float));
    for (size_t r = 0; r < rows; r++) {
        memcpy(cat + r * ci, in.a + r * c->ca, c->ca * sizeof(float));
        memcpy(cat + r * ci + c->ca, in.b + r * c->cb, c->cb * sizeof(float));
    }
    Tensor weight = c->with_weight ? tensor_4d(in.weight, c->co, ci, 1, 1) : tensor_none();
    Tensor g_w[3], g_b[3];
    for (int k = 0; k < 3; k++) {
        g_w[k] = c->with_weight ? tensor_4d(grads + k * (n_w + c->co), c->co, ci, 1, 1) : tensor_none();
        g_b[k] = c->with_weight ? tensor_1d(grads + k * (n_w + c->co) + n_w, c->co) : tensor_none();
    }
    Tensor d = image(c, in.branch, c->co);
    shortcut_add_backward(tensor_overwrite(image(c, da, c->ca)), image(c, db, c->cb), g_w[0], g_b[0], d,
                          image(c, in.a, c->ca), image(c, in.b, c->cb), weight);
    /* the separate ops: the gradient of the concatenation, then its split */
    memset(dcat, 0, rows * ci * sizeof(float));
    memset(d_ref, 0, rows * ci * sizeof(float));
    if (c->with_weight) {
        conv2d_backward(image(c, dcat, ci), g_w[1], g_b[1], d, image(c, cat, ci), weight, conv2d_params(1, 0));
        conv2d_backward_reference(image(c, d_ref, ci), g_w[2], g_b[2], d, image(c, cat, ci), weight,
                                  conv2d_params(1, 0));
    } else {
        memcpy(dcat, in.branch, rows * ci * sizeof(float));
        memcpy(d_ref, in.branch, rows * ci * sizeof(float));
    }
    bool same = !c->with_weight || memcmp(grads, grads + n_w + c->co, (n_w + c->co) * sizeof(float)) == 0;
    float *got = alloc_floats(rows * ci);
    for (size_t r = 0; r < rows; r++) {
        memcpy(got + r * ci, da + r * c->ca, c->ca * sizeof(float));
        for (size_t k = 0; k < c->cb; k++) got[r * ci + c->ca + k] = db[r * c->cb + k] - db_before[r * c->cb + k];
        same = same && memcmp(da + r * c->ca, dcat + r * ci, c->ca * sizeof(float)) == 0;
        for (size_t k = 0; k < c->cb; k++)
            same = same && db[r * c->cb + k] == db_before[r * c->cb + k] + dcat[r * ci + c->ca + k];
    }
    EXPECT(same, "%s: differs from conv2d_backward on the concatenation", what);
    expect_close_scaled(what, got, d_ref, rows * ci, 1e-5);
    if (c->with_weight) expect_close_scaled(what, grads, grads + 2 * (n_w + c->co), n_w + c->co, 1e-5);
    guarded_check(what, da), guarded_check(what, db);
    guarded_free(da), guarded_free(db);
    alloc_free(cat), alloc_free(dcat), alloc_free(d_ref), alloc_free(db_before), alloc_free(grads), alloc_free(got);
    free_inputs(&in);
}

static void test_shortcut_add_backward_matches_separate_ops(void) {
    static const Case cases[] = {
        {2, 28, 28, 32, 16, 16, true, true, 1.0f}, /* fashion-mnist's up blocks */
        {2, 14, 14, 64, 32, 32, true, true, 1.0f},
        {3, 7, 5, 64, 64, 64, true, true, 1.0f},   /* 105 rows: leftover rows */
        {1, 3, 3, 16, 48, 32, true, true, 1.0f},   /* a split inside a 64-channel block */
        {2, 6, 6, 24, 8, 32, false, false, 1.0f},  /* identity */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) check_backward(&cases[i]);
}

/* Every output element is one chain over the input channels, whoever computes it. */
static void test_shortcut_add_thread_count_independent(void) {
    const Case c = {4, 14, 14, 64, 32, 32, true, true, 0.5f};
    if (!shortcut_add_fused(c.ca, c.cb, c.co, true)) return;
    const size_t n_out = c.n * c.h * c.w * c.co;
    Buffers in = make_inputs(&c);
    float *one = alloc_floats(n_out), *three = alloc_floats(n_out);
    const int saved = threads_get();
    threads_set(1);
    fused(&c, &in, one);
    threads_set(3);
    fused(&c, &in, three);
    threads_set(saved);
    EXPECT(memcmp(one, three, n_out * sizeof(float)) == 0, "results with 3 threads differ from 1 thread");
    alloc_free(one), alloc_free(three);
    free_inputs(&in);
}

/* The rule: identity shortcuts whose channels add up; 1x1 convolutions with whole vectors of outputs, in
 * fp32, up to the measured widths; nothing when turned off. */
static void test_shortcut_add_rule(void) {
    EXPECT(shortcut_add_fused(32, 16, 48, false), "identity of 32 + 16 channels");
    EXPECT(!shortcut_add_fused(32, 16, 32, false), "identity whose channels do not add up");
    bool avx512 = false;
#if defined(__AVX512F__)
    avx512 = true;
#endif
    EXPECT(shortcut_add_fused(32, 16, 16, true) == avx512, "32 + 16 -> 16 with AVX-512 only");
    EXPECT(!shortcut_add_fused(32, 16, 24, true), "24 outputs, not whole vectors");
    EXPECT(shortcut_add_fused(256, 128, 128, true) == avx512, "256 + 128 -> 128 with AVX-512 only");
    EXPECT(!shortcut_add_fused(256, 256, 256, true), "256 outputs: oneDNN's");
    EXPECT(shortcut_add_backward_fused(32, 16, 16, true) == avx512, "backward of 32 + 16 -> 16 with AVX-512 only");
    EXPECT(shortcut_add_backward_fused(24, 8, 32, false), "backward of an identity of 24 + 8 channels");
    EXPECT(!shortcut_add_backward_fused(48, 0, 16, true), "backward of one part: conv2d_backward's");
    EXPECT(!shortcut_add_backward_fused(8, 24, 16, true), "backward split off a vector boundary");
    EXPECT(!shortcut_add_backward_fused(128, 64, 64, true), "backward of 192 inputs: past the weight gradient's 128");
    shortcut_add_force(0);
    EXPECT(!shortcut_add_fused(32, 16, 48, false), "turned off");
    shortcut_add_force(-1);
    if (ops_bf16_supported()) {
        ops_set_precision(OPS_PRECISION_BF16);
        EXPECT(!shortcut_add_fused(32, 16, 16, true), "a bf16 convolution is oneDNN's");
        EXPECT(shortcut_add_fused(32, 16, 48, false), "identity in bf16");
        ops_set_precision(OPS_PRECISION_FP32);
    }
}

static void bad_call(void *ctx) {
    static float out[2 * 3 * 3 * 16], a[2 * 3 * 3 * 32], b[3 * 3 * 3 * 16], w[16 * 48], bias[16];
    Tensor ot = tensor_4d(out, 2, 3, 3, 16), at = tensor_4d(a, 2, 3, 3, 32);
    switch (*(int *)ctx) {
    case 0: /* b has 3 samples */
        shortcut_add_forward(ot, at, tensor_4d(b, 3, 3, 3, 16), tensor_4d(w, 16, 48, 1, 1), tensor_none(), 1.0f);
        break;
    case 1: /* a 3x3 kernel */
        shortcut_add_forward(ot, at, tensor_4d(b, 2, 3, 3, 16), tensor_4d(w, 16, 48, 3, 1), tensor_none(), 1.0f);
        break;
    case 2: shortcut_add_forward(ot, at, tensor_none(), tensor_none(), tensor_none(), 1.0f); break;
    case 3: /* backward: da has 16 channels, a 32 */
        shortcut_add_backward(tensor_4d(out, 2, 3, 3, 16), tensor_4d(b, 2, 3, 3, 16), tensor_none(), tensor_none(), ot,
                              at, tensor_4d(b, 2, 3, 3, 16), tensor_4d(w, 16, 48, 1, 1));
        break;
    default:
        shortcut_add_forward(ot, at, tensor_4d(b, 2, 3, 3, 16), tensor_4d(w, 16, 48, 1, 1), tensor_1d(bias, 8), 1.0f);
        break;
    }
}

static void test_shortcut_add_check_failures(void) {
    static const char *expected[] = {
        "b has shape (3, 3, 3, 16), expected (2, 3, 3, 16)",
        "weight has shape (16, 48, 3, 1), expected (16, 48, 1, 1)",
        "an identity shortcut needs 32 + 0 input channels = 16 output channels",
        "da has shape (2, 3, 3, 16), expected (2, 3, 3, 32)",
        "bias has shape (8), expected (16)",
    };
    for (int i = 0; i < (int)(sizeof expected / sizeof expected[0]); i++)
        expect_check_failure(expected[i], bad_call, &i, expected[i]);
}

int main(void) {
    RUN(test_shortcut_add_matches_separate_ops);
    RUN(test_shortcut_add_backward_matches_separate_ops);
    RUN(test_shortcut_add_thread_count_independent);
    RUN(test_shortcut_add_rule);
    RUN(test_shortcut_add_check_failures);
    return harness_finish();
}
