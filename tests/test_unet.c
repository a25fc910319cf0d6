/* The whole UNet2DModel against diffusers: forward output, the input gradient and every parameter's
 * gradient for small configs that together use every supported config value (tests/fixtures/unet.*,
 * from tools/torchref/fixtures_unet.py, computed by diffusers in float64). Plus the properties the
 * trainer relies on: backward accumulates, repeated passes are identical, dropout follows samples; bf16
 * plans (bf16 activations give the bits the fp32 ones do, near diffusers within bf16 rounding); Winograd
 * convolutions against direct ones; buffers share memory where their lifetimes allow. (Every comparison
 * here and in test_pipeline also checks that no buffer is reused while still in use.) */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/arena.h"
#include "core/threads.h"
#include "harness.h"
#include "io/model_folder.h"
#include "nn/unet.h"
#include "nn/unet_config.h"
#include "ops/conv2d_internal.h"
#include "ops/precision.h"

/* Tolerances: the issue's, as max |error| / max |value| of each tensor. Measured errors are ~1e-6 (see
 * the test output), so these leave room for kernel changes but catch any wrong formula. Some gradients
 * are exactly zero in exact arithmetic (to_k.bias: softmax ignores a constant added to every score of a
 * row), so a tensor's scale is floored at GRAD_SCALE_FLOOR of the largest gradient of the model. */
#define OUTPUT_TOL 1e-4
#define GRAD_TOL 1e-3
#define GRAD_SCALE_FLOOR 1e-3

/* max |got - want| / max(max |want|, floor) */
static double scaled_error(const float *got, const float *want, size_t n, double floor) {
    double err = 0;
    for (size_t i = 0; i < n; i++) err = fmax(err, fabs((double)got[i] - want[i]));
    return err / fmax(max_abs(want, n), floor);
}

typedef struct Case {
    UNet net;
    size_t n, h, w, c_in, c_out;
    float *x, *t, *dout;
    int *labels;
} Case;

static Fixture *fx;

/* unet_plan, stopping the run if the plan cannot be had (the tests' sizes are small). */
static void plan_or_stop(UNet *net, size_t n, size_t h, size_t w) {
    Error err = {0};
    CHECK(unet_plan(net, n, h, w, &err) == 0, "%s", err.message);
}

static float *fixture_named(const char *config, const char *what, size_t n) {
    char key[256];
    snprintf(key, sizeof key, "%s.%s", config, what);
    return fixture_floats(fx, key, n);
}

static void case_open(Case *c, const char *config) {
    char path[256];
    snprintf(path, sizeof path, "tests/fixtures/unet_%s.json", config);
    UNetConfig cfg;
    Error err;
    CHECK(model_config_load(&cfg, path, &err) == 0, "%s", err.message);
    CHECK(unet_init(&c->net, &cfg, true, &err) == 0, "%s", err.message);
    const ParamTable *table = &c->net.layout.params;
    for (size_t i = 0; i < table->n_entries; i++) {
        const ParamEntry *e = &table->entries[i];
        char what[PARAM_NAME_BYTES + 8];
        snprintf(what, sizeof what, "param.%s", e->name);
        float *v = fixture_named(config, what, e->numel);
        memcpy(c->net.params + e->offset, v, e->numel * sizeof(float));
        free(v);
    }
    c->n = 2;
    c->h = (size_t)cfg.sample_height, c->w = (size_t)cfg.sample_width;
    c->c_in = (size_t)cfg.in_channels, c->c_out = (size_t)cfg.out_channels;
    c->x = fixture_named(config, "x", c->n * c->h * c->w * c->c_in);
    c->t = fixture_named(config, "timesteps", c->n);
    c->dout = fixture_named(config, "dout", c->n * c->h * c->w * c->c_out);
    c->labels = NULL;
    if (cfg.num_class_embeds > 0) {
        float *l = fixture_named(config, "labels", c->n);
        c->labels = xmalloc(c->n * sizeof(int));
        for (size_t i = 0; i < c->n; i++) c->labels[i] = (int)l[i];
        free(l);
    }
    plan_or_stop(&c->net, c->n, c->h, c->w);
}

static void case_close(Case *c) {
    unet_free(&c->net);
    free(c->x), free(c->t), free(c->dout), free(c->labels);
}

static void check_config(const char *config) {
    Case c;
    case_open(&c, config);
    size_t n_out = c.n * c.h * c.w * c.c_out, n_in = c.n * c.h * c.w * c.c_in;
    float *out = guarded_alloc(n_out), *dx = guarded_alloc(n_in);
    unet_zero_grads(&c.net);
    unet_forward(&c.net, out, c.x, c.t, c.labels, NULL);
    unet_backward(&c.net, dx, c.dout);
    char what[256];
    float *want = fixture_named(config, "out", n_out);
    snprintf(what, sizeof what, "%s: output", config);
    expect_close_scaled(what, out, want, n_out, OUTPUT_TOL);
    double out_error = scaled_error(out, want, n_out, 0);
    free(want);
    want = fixture_named(config, "dx", n_in);
    snprintf(what, sizeof what, "%s: input gradient", config);
    expect_close_scaled(what, dx, want, n_in, GRAD_TOL);
    double dx_error = scaled_error(dx, want, n_in, 0);
    free(want);
    printf("  %s: output error %.2e, input-gradient error %.2e (of max |value|)\n", config, out_error, dx_error);
    guarded_check("output", out);
    guarded_check("dx", dx);
    const ParamTable *table = &c.net.layout.params;
    float **wants = xcalloc(table->n_entries, sizeof *wants);
    double largest = 0;
    for (size_t i = 0; i < table->n_entries; i++) {
        char key[PARAM_NAME_BYTES + 8];
        snprintf(key, sizeof key, "grad.%s", table->entries[i].name);
        wants[i] = fixture_named(config, key, table->entries[i].numel);
        largest = fmax(largest, max_abs(wants[i], table->entries[i].numel));
    }
    double worst = 0;
    const char *worst_name = "";
    for (size_t i = 0; i < table->n_entries; i++) {
        const ParamEntry *e = &table->entries[i];
        double err = scaled_error(c.net.grads + e->offset, wants[i], e->numel, GRAD_SCALE_FLOOR * largest);
        EXPECT(err <= GRAD_TOL, "%s: gradient of %s: error %.3g of its scale, over %.1g", config, e->name, err, GRAD_TOL);
        if (err > worst) worst = err, worst_name = e->name;
        free(wants[i]);
    }
    free(wants);
    printf("  %s: %zu parameter gradients, worst %.2e of scale (%s)\n", config, table->n_entries, worst, worst_name);
    guarded_free(out), guarded_free(dx);
    case_close(&c);
}

static void test_ddpm_config_matches_diffusers(void) { check_config("ddpm"); }
static void test_conditioned_config_matches_diffusers(void) { check_config("conditioned"); }
static void test_no_mid_config_matches_diffusers(void) { check_config("no_mid"); }
static void test_mid_without_attention_matches_diffusers(void) { check_config("mid_no_attention"); }

/* bf16 precision: a plan that keeps the fused norms' outputs in bf16 gives the same bits as one that keeps
 * them in fp32 for the convolutions to round (and takes less memory); both stay near diffusers' fp32
 * output and gradients, within what rounding each convolution's operands to bf16 (2^-9) adds up to. */
typedef struct Bf16Run {
    float *out, *dx, *grads;
    size_t plan_bytes;
} Bf16Run;

static Bf16Run bf16_run(Case *c, bool bf16_activations) {
    size_t n_out = c->n * c->h * c->w * c->c_out, n_in = c->n * c->h * c->w * c->c_in;
    Bf16Run r = {xmalloc(n_out * sizeof(float)), xcalloc(n_in, sizeof(float)),
                 xmalloc(c->net.n_params * sizeof(float)), 0};
    unet_bf16_activations(bf16_activations);
    ops_set_precision(OPS_PRECISION_BF16);
    plan_or_stop(&c->net, c->n, c->h, c->w);
    r.plan_bytes = unet_plan_bytes(&c->net);
    unet_zero_grads(&c->net);
    unet_forward(&c->net, r.out, c->x, c->t, c->labels, NULL);
    unet_backward(&c->net, r.dx, c->dout);
    memcpy(r.grads, c->net.grads, c->net.n_params * sizeof(float));
    ops_set_precision(OPS_PRECISION_FP32);
    unet_bf16_activations(true);
    return r;
}

static void check_bf16(const char *config) {
    Case c;
    case_open(&c, config);
    size_t n_out = c.n * c.h * c.w * c.c_out, n_in = c.n * c.h * c.w * c.c_in;
    Bf16Run kept = bf16_run(&c, true), rounded = bf16_run(&c, false);
    bool same = memcmp(kept.out, rounded.out, n_out * sizeof(float)) == 0 &&
                memcmp(kept.dx, rounded.dx, n_in * sizeof(float)) == 0 &&
                memcmp(kept.grads, rounded.grads, c.net.n_params * sizeof(float)) == 0;
    EXPECT(same, "%s: bf16 activations change the results of the bf16 plan", config);
    EXPECT(kept.plan_bytes < rounded.plan_bytes, "%s: bf16 activations take %zu bytes, fp32 ones %zu", config,
           kept.plan_bytes, rounded.plan_bytes);
    float *want = fixture_named(config, "out", n_out);
    double out_error = scaled_error(kept.out, want, n_out, 0);
    free(want);
    want = fixture_named(config, "dx", n_in);
    double dx_error = scaled_error(kept.dx, want, n_in, 0);
    free(want);
    EXPECT(out_error < 3e-2 && dx_error < 3e-2 && out_error > 1e-5, "%s: bf16 output error %.2g, input-gradient error "
           "%.2g of max |value|, expected bf16 rounding (1e-5 .. 3e-2)", config, out_error, dx_error);
    printf("  %s in bf16: output error %.2e, input-gradient error %.2e; plan %zu bytes (%zu with fp32 activations)\n",
           config, out_error, dx_error, kept.plan_bytes, rounded.plan_bytes);
    free(kept.out), free(kept.dx), free(kept.grads), free(rounded.out), free(rounded.dx), free(rounded.grads);
    case_close(&c);
}

static void test_bf16_plans(void) {
    if (!ops_bf16_supported()) {
        printf("  skipped: this CPU has no bf16 arithmetic (AVX-512 BF16 or AMX)\n");
        return;
    }
    check_bf16("ddpm");        /* default time conditioning: every fused norm writes bf16 */
    check_bf16("conditioned"); /* scale_shift and resnet resampling: the fp32 fallbacks */
}

/* A U-Net whose attention takes bf16 operands (64 channels in one head at 16x16 of a 32x32 input, where
 * attention_reads_bf16 holds on AMX): its bf16 plan keeps q, k and v in bf16 as the projections write them,
 * and gives the bits of the plan that keeps them in fp32 for the attention to round. */
static void test_bf16_attention_operands(void) {
    if (!ops_amx_supported()) {
        printf("  skipped: this CPU has no AMX, where bf16 attention runs\n");
        return;
    }
    Case c = {.n = 2, .h = 32, .w = 32, .c_in = 3, .c_out = 3};
    UNetConfig cfg;
    Error err;
    CHECK(model_config_load(&cfg, "tests/fixtures/unet_ddpm.json", &err) == 0, "%s", err.message);
    cfg.block_out_channels[0] = cfg.block_out_channels[1] = 64;
    cfg.sample_height = cfg.sample_width = 32;
    CHECK(unet_init(&c.net, &cfg, true, &err) == 0, "%s", err.message);
    unet_init_weights(&c.net, 4);
    const size_t n_in = c.n * c.h * c.w * c.c_in, n_out = c.n * c.h * c.w * c.c_out;
    c.x = xmalloc(n_in * sizeof(float)), c.dout = xmalloc(n_out * sizeof(float)), c.t = xmalloc(2 * sizeof(float));
    fill_normal(c.x, n_in, 7), fill_normal(c.dout, n_out, 8);
    c.t[0] = 20, c.t[1] = 900;
    Bf16Run kept = bf16_run(&c, true);
    int bf16_operands = 0;
    for (int i = 0; i < c.net.layout.n_layers; i++) bf16_operands += c.net.states[i].attn.qkv16[0] != NULL &&
                                                                      c.net.layout.layers[i].kind == UNET_LAYER_ATTENTION;
    Bf16Run rounded = bf16_run(&c, false);
    EXPECT(bf16_operands == 4, "%d attention layers keep bf16 q, k, v, expected all 4 (down, mid, up twice)",
           bf16_operands);
    EXPECT(memcmp(kept.out, rounded.out, n_out * sizeof(float)) == 0 &&
               memcmp(kept.dx, rounded.dx, n_in * sizeof(float)) == 0 &&
               memcmp(kept.grads, rounded.grads, c.net.n_params * sizeof(float)) == 0,
           "bf16 q, k, v change the results of the bf16 plan");
    free(kept.out), free(kept.dx), free(kept.grads), free(rounded.out), free(rounded.dx), free(rounded.grads);
    case_close(&c);
}

static void test_backward_accumulates_and_repeats_exactly(void) {
    Case c;
    case_open(&c, "conditioned");
    size_t n_out = c.n * c.h * c.w * c.c_out;
    float *out1 = xmalloc(n_out * sizeof(float)), *out2 = xmalloc(n_out * sizeof(float));
    float *once = xmalloc(c.net.n_params * sizeof(float));
    unet_zero_grads(&c.net);
    unet_forward(&c.net, out1, c.x, c.t, c.labels, NULL);
    unet_backward(&c.net, NULL, c.dout);
    memcpy(once, c.net.grads, c.net.n_params * sizeof(float));
    unet_forward(&c.net, out2, c.x, c.t, c.labels, NULL);
    unet_backward(&c.net, NULL, c.dout);
    EXPECT(memcmp(out1, out2, n_out * sizeof(float)) == 0, "a second forward pass differs from the first");
    for (size_t i = 0; i < c.net.n_params; i++) once[i] *= 2;
    expect_close("gradients after two backward passes", c.net.grads, once, c.net.n_params, 1e-7, 1e-5);
    free(out1), free(out2), free(once);
    case_close(&c);
}

/* Dropout masks are keyed by each sample's global index: a batch of two gives each sample what a batch of
 * one gives it, and an active mask changes the output. */
static void test_dropout_follows_samples(void) {
    UNetConfig cfg;
    Error err;
    CHECK(model_config_load(&cfg, "tests/fixtures/unet_ddpm.json", &err) == 0, "%s", err.message);
    cfg.dropout = 0.3;
    UNet net;
    CHECK(unet_init(&net, &cfg, true, &err) == 0, "%s", err.message);
    unet_init_weights(&net, 1);
    const size_t h = (size_t)cfg.sample_height, w = (size_t)cfg.sample_width, c = (size_t)cfg.in_channels;
    const size_t per = h * w * c;
    float *x = xmalloc(2 * per * sizeof(float)), *pair = xmalloc(2 * per * sizeof(float));
    float *single = xmalloc(per * sizeof(float)), *plain = xmalloc(2 * per * sizeof(float));
    fill_normal(x, 2 * per, 3);
    float t[2] = {10, 500};
    uint64_t ids[2] = {41, 7};
    UNetDropoutKeys keys = {.active = true, .seed = 5, .step = 12, .sample_ids = ids};
    plan_or_stop(&net, 2, h, w);
    unet_forward(&net, pair, x, t, NULL, &keys);
    unet_forward(&net, plain, x, t, NULL, NULL);
    EXPECT(memcmp(pair, plain, 2 * per * sizeof(float)) != 0, "dropout 0.3 did not change the output");
    plan_or_stop(&net, 1, h, w);
    for (int i = 0; i < 2; i++) {
        UNetDropoutKeys one = {.active = true, .seed = 5, .step = 12, .sample_ids = &ids[i]};
        unet_forward(&net, single, x + (size_t)i * per, &t[i], NULL, &one);
        char what[64];
        snprintf(what, sizeof what, "sample %d alone vs in the batch", i);
        expect_close(what, single, pair + (size_t)i * per, per, 1e-6, 1e-5);
    }
    free(x), free(pair), free(single), free(plain);
    unet_free(&net);
}

/* Plans of ddpm-cifar10 (batch 2): a sampling plan keeps only the skips and the layer at hand, about a
 * fifth of a training plan (measured 0.19); a training plan puts the skips' gradients in the memory of
 * activations backward is done with (measured 0.94 of the buffers laid end to end). */
static void test_plans_share_memory(void) {
    UNetConfig cfg;
    Error err;
    CHECK(unet_config_preset(&cfg, "ddpm-cifar10", &err) == 0, "%s", err.message);
    size_t plan[2], end_to_end[2] = {0}; /* [0] sampling, [1] training */
    for (int train = 0; train < 2; train++) {
        UNet net;
        CHECK(unet_init(&net, &cfg, train, &err) == 0, "%s", err.message);
        plan_or_stop(&net, 2, 32, 32);
        plan[train] = unet_plan_bytes(&net);
        for (size_t i = 0; i < net.arena.n_requests; i++) end_to_end[train] += net.arena.requests[i].n * sizeof(float);
        unet_free(&net);
    }
    printf("  sampling plan %.1f MB, training plan %.1f MB (%.1f MB end to end)\n", plan[0] / 1e6, plan[1] / 1e6,
           end_to_end[1] / 1e6);
    EXPECT(plan[0] < plan[1] / 4, "a sampling plan of %zu bytes, a training plan of %zu", plan[0], plan[1]);
    EXPECT(plan[1] < end_to_end[1] / 100 * 97, "a training plan of %zu bytes for %zu bytes of buffers", plan[1],
           end_to_end[1]);
}

/* fp32 3x3 convolutions with 64 channels or more run as Winograd (ops/conv2d_dnnl.c), which no diffusers
 * fixture here is large enough to reach: a U-Net of 64 channels at 32x32 (Winograd at the outer level, in
 * calls of one image, direct kernels at the inner one) against the same U-Net on direct kernels only,
 * which the fixtures above check. */
static void test_winograd_matches_direct(void) {
    UNetConfig cfg;
    Error err;
    CHECK(model_config_load(&cfg, "tests/fixtures/unet_ddpm.json", &err) == 0, "%s", err.message);
    cfg.block_out_channels[0] = cfg.block_out_channels[1] = 64;
    cfg.sample_height = cfg.sample_width = 32;
    UNet net;
    CHECK(unet_init(&net, &cfg, true, &err) == 0, "%s", err.message);
    unet_init_weights(&net, 3);
    const size_t n = 2, per = 32 * 32 * (size_t)cfg.in_channels;
    float *x = xmalloc(n * per * sizeof(float)), *dout = xmalloc(n * per * sizeof(float)), t[2] = {3, 700};
    fill_normal(x, n * per, 5);
    fill_normal(dout, n * per, 6);
    float *out[2], *dx[2], *grads[2]; /* [0]: direct kernels, [1]: Winograd */
    for (int winograd = 0; winograd < 2; winograd++) {
        conv2d_fast_use_winograd(winograd, 32 * 32 * 128 * sizeof(float)); /* one image per call */
        out[winograd] = xmalloc(n * per * sizeof(float));
        dx[winograd] = xcalloc(n * per, sizeof(float));
        grads[winograd] = xmalloc(net.n_params * sizeof(float));
        plan_or_stop(&net, n, 32, 32);
        unet_zero_grads(&net);
        unet_forward(&net, out[winograd], x, t, NULL, NULL);
        unet_backward(&net, dx[winograd], dout);
        memcpy(grads[winograd], net.grads, net.n_params * sizeof(float));
    }
    conv2d_fast_use_winograd(true, 0);
    if (conv2d_fast_has_winograd())
        EXPECT(memcmp(out[0], out[1], n * per * sizeof(float)) != 0, "the output repeats the direct kernels' bits");
    else
        printf("  this CPU has no Winograd kernels: both runs take the direct ones\n");
    double out_error = scaled_error(out[1], out[0], n * per, 0), dx_error = scaled_error(dx[1], dx[0], n * per, 0);
    double grad_floor = GRAD_SCALE_FLOOR * max_abs(grads[0], net.n_params), grad_error = 0;
    const ParamTable *table = &net.layout.params;
    for (size_t i = 0; i < table->n_entries; i++) {
        const ParamEntry *e = &table->entries[i];
        grad_error = fmax(grad_error, scaled_error(grads[1] + e->offset, grads[0] + e->offset, e->numel, grad_floor));
    }
    EXPECT(out_error < OUTPUT_TOL && dx_error < GRAD_TOL && grad_error < GRAD_TOL,
           "Winograd against direct: output error %.2g, input-gradient error %.2g, worst parameter-gradient error "
           "%.2g of max |value|", out_error, dx_error, grad_error);
    printf("  Winograd against direct: output error %.2e, input-gradient error %.2e, parameter gradients %.2e\n",
           out_error, dx_error, grad_error);
    for (int k = 0; k < 2; k++) free(out[k]), free(dx[k]), free(grads[k]);
    free(x), free(dout);
    unet_free(&net);
}

/* Once warmed up, a training step and a sampling step build no convolution plan: the plan cache holds
 * all of them (ops/conv2d_dnnl.c, PLAN_CACHE_CAPACITY). ddpm-cifar10 uses more plans than the 64 the
 * cache once had room for. */
static void test_warm_steps_build_no_plans(void) {
    const char *presets[] = {"fashion-mnist", "ddpm-cifar10"};
    for (size_t p = 0; p < sizeof presets / sizeof presets[0]; p++) {
        UNetConfig cfg;
        Error err;
        CHECK(unet_config_preset(&cfg, presets[p], &err) == 0, "%s", err.message);
        const size_t n = 1, h = (size_t)cfg.sample_height, w = (size_t)cfg.sample_width;
        const size_t n_in = n * h * w * (size_t)cfg.in_channels, n_out = n * h * w * (size_t)cfg.out_channels;
        UNet train, sample;
        CHECK(unet_init(&train, &cfg, true, &err) == 0, "%s", err.message);
        CHECK(unet_init(&sample, &cfg, false, &err) == 0, "%s", err.message);
        unet_init_weights(&train, 1);
        memcpy(sample.params, train.params, train.n_params * sizeof(float));
        plan_or_stop(&train, n, h, w);
        plan_or_stop(&sample, n, h, w);
        float *x = xmalloc(n_in * sizeof(float)), *dx = xmalloc(n_in * sizeof(float));
        float *out = xmalloc(n_out * sizeof(float)), t[1] = {500};
        fill_normal(x, n_in, 7);
        const size_t before = conv2d_fast_plans_built();
        size_t built[3];
        for (int step = 0; step < 3; step++) {
            unet_zero_grads(&train);
            unet_forward(&train, out, x, t, NULL, NULL);
            unet_backward(&train, dx, out);
            unet_forward(&sample, out, x, t, NULL, NULL);
            built[step] = conv2d_fast_plans_built();
        }
        printf("  %s: %zu plans built in the first step, %zu in the second, %zu in the third\n", presets[p],
               built[0] - before, built[1] - built[0], built[2] - built[1]);
        EXPECT(built[2] == built[1], "%s: a warmed-up training and sampling step built %zu plans", presets[p],
               built[2] - built[1]);
        free(x), free(dx), free(out);
        unet_free(&train), unet_free(&sample);
    }
}

int main(void) {
    fx = fixture_open("unet");
    RUN(test_ddpm_config_matches_diffusers);
    RUN(test_conditioned_config_matches_diffusers);
    RUN(test_no_mid_config_matches_diffusers);
    RUN(test_mid_without_attention_matches_diffusers);
    RUN(test_bf16_plans);
    RUN(test_bf16_attention_operands);
    RUN(test_backward_accumulates_and_repeats_exactly);
    RUN(test_dropout_follows_samples);
    RUN(test_winograd_matches_direct);
    RUN(test_plans_share_memory);
    RUN(test_warm_steps_build_no_plans);
    fixture_close(fx);
    return harness_finish();
}
