/* Optimizers, EMA, learning-rate schedules and gradient clipping against PyTorch / diffusers trajectories
 * (tests/fixtures/optim.safetensors from tools/torchref/fixtures_optim.py), plus the determinism of the
 * reductions they use. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/threads.h"
#include "harness.h"
#include "optim/adamw.h"
#include "optim/ema.h"
#include "optim/grad_clip.h"
#include "optim/lr_schedule.h"
#include "optim/reduce.h"
#include "optim/sgd.h"

enum { N = 1000, STEPS = 5 };

static Fixture *fx;
static float *p0, *grads;

/* Float updates in a different but equivalent order than PyTorch's kernels: a few ulps per step. */
#define TRAJECTORY_RTOL 1e-5
#define TRAJECTORY_ATOL 1e-6

static void check_trajectory(const char *name, void (*step)(float *p, const float *g, float *s1, float *s2, long k)) {
    float *want = fixture_floats(fx, name, (size_t)STEPS * N);
    float *p = xmalloc(N * sizeof(float));
    float *s1 = xcalloc(N, sizeof(float)), *s2 = xcalloc(N, sizeof(float));
    memcpy(p, p0, N * sizeof(float));
    for (long k = 1; k <= STEPS; k++) {
        step(p, grads + (k - 1) * N, s1, s2, k);
        char what[64];
        snprintf(what, sizeof what, "%s after step %ld", name, k);
        expect_close(what, p, want + (k - 1) * N, N, TRAJECTORY_ATOL, TRAJECTORY_RTOL);
    }
    free(want), free(p), free(s1), free(s2);
}

static void sgd_plain(float *p, const float *g, float *s1, float *s2, long k) {
    (void)s2;
    sgd_step(p, g, s1, N, (SgdConfig){0}, 1e-2f, k);
}
static void sgd_momentum_wd(float *p, const float *g, float *s1, float *s2, long k) {
    (void)s2;
    sgd_step(p, g, s1, N, (SgdConfig){.momentum = 0.9f, .weight_decay = 1e-2f, .dampening = 0.1f}, 1e-2f, k);
}
static void sgd_nesterov(float *p, const float *g, float *s1, float *s2, long k) {
    (void)s2;
    sgd_step(p, g, s1, N, (SgdConfig){.momentum = 0.9f, .nesterov = true}, 1e-2f, k);
}
static void adamw_diffusers(float *p, const float *g, float *s1, float *s2, long k) {
    adamw_step(p, g, s1, s2, N, adamw_diffusers_defaults(), 1e-4f, k);
}
static void adamw_strong_decay(float *p, const float *g, float *s1, float *s2, long k) {
    adamw_step(p, g, s1, s2, N, (AdamWConfig){.beta1 = 0.9f, .beta2 = 0.99f, .eps = 1e-6f, .weight_decay = 0.1f}, 1e-2f, k);
}

static void test_sgd_matches_torch(void) {
    check_trajectory("sgd_plain", sgd_plain);
    check_trajectory("sgd_momentum_wd", sgd_momentum_wd);
    check_trajectory("sgd_nesterov", sgd_nesterov);
}

static void test_adamw_matches_torch(void) {
    check_trajectory("adamw_diffusers", adamw_diffusers);
    check_trajectory("adamw_strong_decay", adamw_strong_decay);
}

static void check_ema(const char *name, EmaConfig cfg) {
    char key[64];
    snprintf(key, sizeof key, "%s_decay", name);
    float *want_decay = fixture_floats(fx, key, STEPS);
    snprintf(key, sizeof key, "%s_average", name);
    float *want_avg = fixture_floats(fx, key, (size_t)STEPS * N);
    float *ema = xmalloc(N * sizeof(float));
    memcpy(ema, p0, N * sizeof(float));
    for (long k = 1; k <= STEPS; k++) {
        double decay = ema_decay(cfg, k);
        EXPECT(fabs(decay - want_decay[k - 1]) < 1e-7, "%s: decay at step %ld is %.9g, diffusers %.9g", name, k, decay,
               (double)want_decay[k - 1]);
        ema_update(ema, grads + (k - 1) * N, N, decay);
        snprintf(key, sizeof key, "%s average after step %ld", name, k);
        expect_close(key, ema, want_avg + (k - 1) * N, N, 1e-6, 1e-5);
    }
    snprintf(key, sizeof key, "%s_decay_1000", name);
    double want_1000 = fixture_scalar(fx, key);
    EXPECT(fabs(ema_decay(cfg, 1000) - want_1000) < 1e-7, "%s: decay at step 1000 %.9g, diffusers %.9g", name,
           ema_decay(cfg, 1000), want_1000);
    free(want_decay), free(want_avg), free(ema);
}

static void test_ema_matches_diffusers(void) {
    check_ema("ema_warmup", ema_diffusers_defaults());
    check_ema("ema_plain", (EmaConfig){.max_decay = 0.999, .update_after_step = 2, .use_warmup = false});
}

static void test_lr_schedules_match_diffusers(void) {
    const char *names[] = {"constant", "constant_with_warmup", "linear", "cosine"};
    for (int i = 0; i < 4; i++) {
        LrSchedule s = {.warmup_steps = 10, .total_steps = 50};
        Error err;
        EXPECT(lr_schedule_from_name(names[i], &s.kind, &err) == 0, "%s", err.message);
        EXPECT(strcmp(lr_schedule_name(s.kind), names[i]) == 0, "name round trip %s", names[i]);
        char key[64];
        snprintf(key, sizeof key, "lr_%s", names[i]);
        float *want = fixture_floats(fx, key, 60);
        for (long k = 0; k < 60; k++)
            EXPECT(fabs(lr_schedule_factor(s, k) - want[k]) < 1e-6, "%s at step %ld: %.9g, diffusers %.9g", names[i], k,
                   lr_schedule_factor(s, k), (double)want[k]);
        free(want);
    }
    LrScheduleKind kind;
    Error err;
    EXPECT(lr_schedule_from_name("cosine_restarts", &kind, &err) == -1 && strstr(err.message, "supported: constant"),
           "unknown schedule: %s", err.message);
}

static void test_grad_clip_matches_torch(void) {
    const char *names[] = {"clip_large", "clip_small"};
    const float scales[] = {10.0f, 0.001f};
    for (int i = 0; i < 2; i++) {
        float *g = xmalloc(N * sizeof(float));
        for (size_t j = 0; j < N; j++) g[j] = grads[j] * scales[i];
        double norm = grad_clip_norm(g, N, 1.0);
        char key[64];
        snprintf(key, sizeof key, "%s_norm", names[i]);
        double want_norm = fixture_scalar(fx, key);
        EXPECT(fabs(norm - want_norm) <= 1e-5 * want_norm, "%s: norm %.9g, torch %.9g", names[i], norm, want_norm);
        snprintf(key, sizeof key, "%s_grads", names[i]);
        float *want = fixture_floats(fx, key, N);
        expect_close(key, g, want, N, 1e-7, 1e-5);
        free(g), free(want);
    }
}

static void test_reductions_independent_of_threads(void) {
    size_t n = 3000001;
    float *x = xmalloc(n * sizeof(float));
    fill_normal(x, n, 11);
    int saved = threads_get();
    threads_set(1);
    double one = reduce_sum_squares(x, n);
    threads_set(2);
    double two = reduce_sum_squares(x, n);
    threads_set(saved);
    EXPECT(one == two, "sum of squares differs between 1 and 2 threads: %.17g vs %.17g", one, two);
    EXPECT(fabs(one - (double)n) < 5 * sqrt(2.0 * (double)n), "sum of squares of normals %.6g far from %zu", one, n);
    EXPECT(reduce_all_finite(x, n), "finite buffer reported non-finite");
    x[n - 1] = NAN;
    EXPECT(!reduce_all_finite(x, n), "NaN not detected");
    x[n - 1] = INFINITY;
    EXPECT(!reduce_all_finite(x, n), "inf not detected");
    free(x);
}

static void call_sgd_nesterov_without_momentum(void *ctx) {
    (void)ctx;
    float p = 0, g = 0;
    sgd_step(&p, &g, NULL, 1, (SgdConfig){.nesterov = true}, 0.1f, 1);
}

static void test_bad_optimizer_settings_are_checked(void) {
    expect_check_failure("Nesterov without momentum", call_sgd_nesterov_without_momentum, NULL, "Nesterov");
}

int main(void) {
    fx = fixture_open("optim");
    p0 = fixture_floats(fx, "p0", N);
    grads = fixture_floats(fx, "grads", (size_t)STEPS * N);
    RUN(test_sgd_matches_torch);
    RUN(test_adamw_matches_torch);
    RUN(test_ema_matches_diffusers);
    RUN(test_lr_schedules_match_diffusers);
    RUN(test_grad_clip_matches_torch);
    RUN(test_reductions_independent_of_threads);
    RUN(test_bad_optimizer_settings_are_checked);
    free(p0), free(grads);
    fixture_close(fx);
    return harness_finish();
}
