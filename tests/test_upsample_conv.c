/* upsample_conv: both ways of computing it (four 2x2 phase convolutions, or upsampling then the 3x3
 * convolution) against the composition of the reference ops (upsample_nearest2x, then
 * conv2d_forward_reference / conv2d_backward_reference), with accumulation, each gradient alone, guard
 * words and a bf16 run; the width rule; CHECK failures. The U-Net's comparisons with diffusers run it too. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "harness.h"
#include "ops/conv2d.h"
#include "ops/conv2d_internal.h"
#include "ops/precision.h"
#include "ops/resample.h"
#include "ops/upsample_conv.h"

typedef struct Case {
    size_t n, h, w, ci, co;
    bool with_bias;
} Case;

/* The reference: out = conv(upsample(inp)), and its backward accumulated into the given gradients. */
static void reference_forward(const Case *c, float *out, const float *inp, const float *weight, const float *bias) {
    float *up = alloc_floats(c->n * 4 * c->h * c->w * c->ci);
    upsample_nearest2x_forward(tensor_4d(up, c->n, 2 * c->h, 2 * c->w, c->ci),
                               tensor_4d((float *)inp, c->n, c->h, c->w, c->ci));
    conv2d_forward_reference(tensor_4d(out, c->n, 2 * c->h, 2 * c->w, c->co), tensor_4d(up, c->n, 2 * c->h, 2 * c->w, c->ci),
                             tensor_4d((float *)weight, c->co, c->ci, 3, 3),
                             bias ? tensor_1d((float *)bias, c->co) : tensor_none(), conv2d_params(1, 1));
    alloc_free(up);
}

static void reference_backward(const Case *c, float *dinp, float *dweight, float *dbias, const float *dout,
                               const float *inp, const float *weight) {
    const size_t n_up = c->n * 4 * c->h * c->w * c->ci;
    float *up = alloc_floats(n_up), *d_up = alloc_floats(n_up);
    Tensor up_t = tensor_4d(up, c->n, 2 * c->h, 2 * c->w, c->ci), d_up_t = tensor_4d(d_up, c->n, 2 * c->h, 2 * c->w, c->ci);
    upsample_nearest2x_forward(up_t, tensor_4d((float *)inp, c->n, c->h, c->w, c->ci));
    memset(d_up, 0, n_up * sizeof(float));
    conv2d_backward_reference(d_up_t, tensor_4d(dweight, c->co, c->ci, 3, 3),
                              dbias ? tensor_1d(dbias, c->co) : tensor_none(),
                              tensor_4d((float *)dout, c->n, 2 * c->h, 2 * c->w, c->co), up_t,
                              tensor_4d((float *)weight, c->co, c->ci, 3, 3), conv2d_params(1, 1));
    upsample_nearest2x_backward(tensor_4d(dinp, c->n, c->h, c->w, c->ci), d_up_t);
    alloc_free(up);
    alloc_free(d_up);
}

/* One case, the phases forced on or off: forward, then backward into gradients holding earlier values
 * (ops accumulate), then each gradient alone; all within tol of the largest reference value. */
static void check_case(const Case *c, int phases, double tol) {
    upsample_conv_force_phases(phases);
    const size_t n_inp = c->n * c->h * c->w * c->ci, n_out = c->n * 4 * c->h * c->w * c->co, n_w = c->co * c->ci * 9;
    float *inp = guarded_alloc(n_inp), *weight = guarded_alloc(n_w), *bias = c->with_bias ? guarded_alloc(c->co) : NULL;
    float *dout = guarded_alloc(n_out), *out = guarded_alloc(n_out), *want = alloc_floats(n_out);
    float *dinp = guarded_alloc(n_inp), *dweight = guarded_alloc(n_w), *dbias = c->with_bias ? guarded_alloc(c->co) : NULL;
    float *want_dinp = alloc_floats(n_inp), *want_dweight = alloc_floats(n_w), *want_dbias = alloc_floats(c->co);
    fill_normal(inp, n_inp, 1);
    fill_normal(weight, n_w, 2);
    if (bias) fill_normal(bias, c->co, 3);
    fill_normal(dout, n_out, 4);
    const size_t n_work = upsample_conv_work_floats(c->n, c->h, c->w, c->ci, c->co, true);
    const size_t n_phase = upsample_conv_phase_weight_floats(c->n, c->h, c->w, c->ci, c->co);
    EXPECT((n_phase > 0) == (phases == 1), "phase weights %zu floats with the phases %s", n_phase, phases ? "on" : "off");
    float *work = alloc_floats(n_work), *phase_weights = n_phase ? alloc_floats(n_phase) : NULL;
    char what[160];
    snprintf(what, sizeof what, "N%zu %zux%zu %zu->%zu%s, %s", c->n, c->h, c->w, c->ci, c->co,
             c->with_bias ? "" : " no bias", phases ? "phases" : "upsampled");

    Tensor inp_t = tensor_4d(inp, c->n, c->h, c->w, c->ci), w_t = tensor_4d(weight, c->co, c->ci, 3, 3);
    Tensor b_t = bias ? tensor_1d(bias, c->co) : tensor_none();
    Tensor out_t = tensor_4d(out, c->n, 2 * c->h, 2 * c->w, c->co), dout_t = tensor_4d(dout, c->n, 2 * c->h, 2 * c->w, c->co);
    upsample_conv_forward(out_t, inp_t, w_t, b_t, work, phase_weights);
    reference_forward(c, want, inp, weight, bias);
    EXPECT(expect_close_scaled(what, out, want, n_out, tol), "%s: forward", what);

    /* accumulation: gradients start from fixed values */
    fill_normal(dinp, n_inp, 5), fill_normal(dweight, n_w, 6);
    memcpy(want_dinp, dinp, n_inp * sizeof(float)), memcpy(want_dweight, dweight, n_w * sizeof(float));
    if (dbias) fill_normal(dbias, c->co, 7), memcpy(want_dbias, dbias, c->co * sizeof(float));
    Tensor dinp_t = tensor_4d(dinp, c->n, c->h, c->w, c->ci), dw_t = tensor_4d(dweight, c->co, c->ci, 3, 3);
    Tensor db_t = dbias ? tensor_1d(dbias, c->co) : tensor_none();
    upsample_conv_backward(dinp_t, dw_t, db_t, dout_t, inp_t, w_t, work, phase_weights);
    reference_backward(c, want_dinp, want_dweight, dbias ? want_dbias : NULL, dout, inp, weight);
    EXPECT(expect_close_scaled(what, dinp, want_dinp, n_inp, tol), "%s: dinp", what);
    EXPECT(expect_close_scaled(what, dweight, want_dweight, n_w, tol), "%s: dweight", what);
    if (dbias) EXPECT(expect_close_scaled(what, dbias, want_dbias, c->co, tol), "%s: dbias", what);

    /* each gradient alone, from zero: the same values as the reference's */
    memset(dinp, 0, n_inp * sizeof(float)), memset(want_dinp, 0, n_inp * sizeof(float));
    memset(dweight, 0, n_w * sizeof(float)), memset(want_dweight, 0, n_w * sizeof(float));
    reference_backward(c, want_dinp, want_dweight, NULL, dout, inp, weight);
    upsample_conv_backward(dinp_t, tensor_none(), tensor_none(), dout_t, inp_t, w_t, work, phase_weights);
    upsample_conv_backward(tensor_none(), dw_t, tensor_none(), dout_t, inp_t, w_t, work, phase_weights);
    EXPECT(expect_close_scaled(what, dinp, want_dinp, n_inp, tol), "%s: dinp alone", what);
    EXPECT(expect_close_scaled(what, dweight, want_dweight, n_w, tol), "%s: dweight alone", what);

    float *guarded[] = {out, dinp, dweight, dbias};
    for (size_t i = 0; i < 4; i++)
        if (guarded[i]) guarded_check(what, guarded[i]);
    float *all[] = {inp, weight, bias, dout, out, dinp, dweight, dbias};
    for (size_t i = 0; i < 8; i++)
        if (all[i]) guarded_free(all[i]);
    alloc_free(want), alloc_free(want_dinp), alloc_free(want_dweight), alloc_free(want_dbias);
    alloc_free(work), alloc_free(phase_weights);
    upsample_conv_force_phases(-1);
}

/* Odd and non-square sizes, channel counts that are not multiples of the vector width, more or fewer
 * outputs than inputs, with and without bias, a single pixel; the U-Net's fashion-mnist shapes; and enough
 * tiles (128) for the phases to run as our fp32 Winograd F(4x4, 2x2) where it is built. */
static const Case cases[] = {
    {2, 5, 3, 3, 4, true}, {1, 1, 1, 5, 2, true}, {3, 4, 6, 8, 5, false}, {2, 7, 7, 64, 64, true}, {4, 14, 14, 32, 32, true},
    {8, 14, 14, 32, 32, true},
};

/* fp32 tolerance: 1e-5 of the largest reference value. The weight gradient sums N 2H 2W products per
 * element (3136 at 4x14x14), whose rounding measured 2.4e-6 for either way against the reference. */
static void test_phases_match_reference(void) {
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) check_case(&cases[i], 1, 1e-5);
}

static void test_upsampled_matches_reference(void) {
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) check_case(&cases[i], 0, 1e-5);
}

/* bf16 precision: the convolutions round their operands (the 2x2 kernels after summing the taps). */
static void test_bf16(void) {
    if (!ops_bf16_supported()) return;
    ops_set_precision(OPS_PRECISION_BF16);
    check_case(&cases[4], 1, 2e-2);
    check_case(&cases[4], 0, 2e-2);
    ops_set_precision(OPS_PRECISION_FP32);
}

/* Narrow layers take the phases; wider ones where the phases run on our fp32 Winograd (ddpm-cifar10's 16x16
 * upsampler at batch 16), else upsample (the default preset's 896 channels, or 4x4 images: too few tiles). */
static void test_width_rule(void) {
    const size_t max = UPSAMPLE_CONV_PHASES_MAX_CHANNELS;
    EXPECT(upsample_conv_uses_phases(2, 4, 4, 32, 32) && upsample_conv_uses_phases(2, 4, 4, max - 1, 64),
           "narrow layers should take the phases");
    EXPECT(!upsample_conv_uses_phases(4, 8, 8, 896, 896) && !upsample_conv_uses_phases(16, 4, 4, max, 256),
           "wide layers should upsample unless the phases run on our Winograd");
    const Conv2dParams phase = {.stride = 1, .pad_top = 1, .pad_bottom = 0, .pad_left = 1, .pad_right = 0};
    const bool ours = conv2d_winograd_fp32_serves((Conv2dShape){16, 16, 16, 256, 256, 2, 2, 16, 16}, phase);
    EXPECT(upsample_conv_uses_phases(16, 16, 16, 256, 256) == ours,
           "ddpm-cifar10's 16x16 upsampler should take the phases exactly where our Winograd runs them");
    EXPECT(upsample_conv_phase_weight_floats(4, 8, 8, 512, 512) == 0 &&
               upsample_conv_phase_weight_floats(2, 4, 4, 32, 16) == 16 * 32 * 16,
           "phase weight sizes");
}

static void bad_call(void *ctx) {
    const int which = *(int *)ctx;
    float *buf = alloc_floats(4096);
    Tensor inp = tensor_4d(buf, 1, 2, 2, 3), w3 = tensor_4d(buf, 4, 3, 3, 3), out = tensor_4d(buf, 1, 4, 4, 4);
    switch (which) {
    case 0: upsample_conv_forward(out, inp, tensor_4d(buf, 4, 3, 2, 2), tensor_none(), buf, buf); break;
    case 1: upsample_conv_forward(tensor_4d(buf, 1, 4, 3, 4), inp, w3, tensor_none(), buf, buf); break;
    case 2: upsample_conv_forward(out, inp, w3, tensor_none(), buf, NULL); break;
    default: upsample_conv_backward(tensor_4d(buf, 1, 2, 2, 4), tensor_none(), tensor_none(), out, inp, w3, buf, buf); break;
    }
}

static void test_check_failures(void) {
    static const char *expected[] = {
        "upsample_conv_forward: weight (Co, Ci, 3, 3) has shape (4, 3, 2, 2), expected (4, 3, 3, 3)",
        "upsample_conv_forward: out has shape (1, 4, 3, 4), expected (1, 4, 4, 4)",
        "upsample_conv_forward: 3 input channels take the phases, but phase_weights is NULL",
        "upsample_conv_backward: dinp has shape (1, 2, 2, 4), expected (1, 2, 2, 3)",
    };
    for (int i = 0; i < (int)(sizeof expected / sizeof expected[0]); i++)
        expect_check_failure(expected[i], bad_call, &i, expected[i]);
}

int main(void) {
    RUN(test_phases_match_reference);
    RUN(test_upsampled_matches_reference);
    RUN(test_bf16);
    RUN(test_width_rule);
    RUN(test_check_failures);
    return harness_finish();
}
