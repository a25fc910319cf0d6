/* Diffusion library, part 1: β schedules (golden values, diffusers' tables, posterior identities), the
 * forward process and training objective, timestep sequences against diffusers' set_timesteps, invalid
 * options, and scheduler_config.json read / written in diffusers' format. Samplers are in
 * test_diffusion_samplers.c, the variational bound in test_diffusion_likelihood.c. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/error.h"
#include "core/json_values.h"
#include "diffusion/objective.h"
#include "diffusion/sampler.h"
#include "diffusion/schedule.h"
#include "diffusion/scheduler_config.h"
#include "harness.h"

static const char *const SCHEDULES[] = {"linear", "scaled_linear", "squaredcos_cap_v2"};

static Schedule make_schedule(BetaSchedule kind, SchedulePrecision precision) {
    ScheduleConfig cfg = schedule_config_default();
    cfg.beta_schedule = kind;
    cfg.precision = precision;
    Schedule s;
    Error err;
    CHECK(schedule_init(&s, &cfg, &err) == 0, "%s", err.message);
    return s;
}

static double max_rel_diff(const double *got, const float *want, size_t n) {
    double worst = 0;
    for (size_t i = 0; i < n; i++) worst = fmax(worst, fabs(got[i] - want[i]) / fabs((double)want[i]));
    return worst;
}

static bool contains(const char *haystack, const char *needle) { return strstr(haystack, needle) != NULL; }

/* ------------------------------------------------------------------------------------------------ */
/* Schedules */

static void test_fixed_small_golden_values(void) {
    /* diffusers' tests/schedulers/test_scheduler_ddpm.py: 0, 0.00979, 0.02 at t = 0, 487, 999. */
    for (int p = 0; p < 2; p++) {
        Schedule s = make_schedule(BETA_SCHEDULE_LINEAR, p ? SCHEDULE_PRECISION_DOUBLE : SCHEDULE_PRECISION_DIFFUSERS);
        double v0 = ddpm_step_variance(&s, VARIANCE_FIXED_SMALL, 0, -1);
        double v487 = ddpm_step_variance(&s, VARIANCE_FIXED_SMALL, 487, 486);
        double v999 = ddpm_step_variance(&s, VARIANCE_FIXED_SMALL, 999, 998);
        EXPECT(fabs(v0) < 1e-5 && v0 <= 1.0001e-20, "fixed_small variance at t=0: %g", v0);
        EXPECT(fabs(v487 - 0.00979) < 1e-5, "fixed_small variance at t=487: %.8f", v487);
        EXPECT(fabs(v999 - 0.02) < 1e-5, "fixed_small variance at t=999: %.8f", v999);
        /* The table agrees with the step's variance. */
        /* The double table and the step's value agree; diffusers' float32 β_t = 1 - ᾱ_t / ᾱ_{t-1} cancels
         * to about 6e-8 / β_t relative. */
        EXPECT(fabs(s.posterior_variance[487] - v487) < 1e-5 * v487 && s.posterior_variance[0] == 0,
               "posterior_variance table %.8f vs %.8f", s.posterior_variance[487], v487);
        double large = ddpm_step_variance(&s, VARIANCE_FIXED_LARGE, 487, 486);
        EXPECT(fabs(large - s.betas[487]) < 1e-5 * s.betas[487], "fixed_large variance %.9g is beta %.9g", large,
               s.betas[487]);
        schedule_free(&s);
    }
}

static void test_schedule_tables_match_diffusers(void) {
    Fixture *fx = fixture_open("diffusion");
    char name[128];
    for (int k = 0; k < 3; k++) {
        snprintf(name, sizeof name, "schedule.%s.betas", SCHEDULES[k]);
        float *betas = fixture_floats(fx, name, 1000);
        snprintf(name, sizeof name, "schedule.%s.alphas_cumprod", SCHEDULES[k]);
        float *ab = fixture_floats(fx, name, 1000);
        Schedule s = make_schedule((BetaSchedule)k, SCHEDULE_PRECISION_DIFFUSERS);
        Schedule d = make_schedule((BetaSchedule)k, SCHEDULE_PRECISION_DOUBLE);
        double rb = max_rel_diff(s.betas, betas, 1000), ra = max_rel_diff(s.alphas_cumprod, ab, 1000);
        double rd = max_rel_diff(d.alphas_cumprod, ab, 1000);
        printf("  %-17s betas rel %.2g, alphas_cumprod rel %.2g (double precision: %.2g)\n", SCHEDULES[k], rb, ra, rd);
        /* torch.linspace in float32 can differ from the rounded exact value by an ulp or so. */
        EXPECT(rb < 1e-6, "%s betas differ from diffusers by %.3g relative", SCHEDULES[k], rb);
        EXPECT(ra < 2e-6, "%s alphas_cumprod differ from diffusers by %.3g relative", SCHEDULES[k], ra);
        EXPECT(rd < 2e-5, "%s double alphas_cumprod differ from diffusers by %.3g relative", SCHEDULES[k], rd);
        if (k == BETA_SCHEDULE_SQUAREDCOS_CAP_V2)
            EXPECT(ra == 0, "the cosine schedule is computed in double by both and must match exactly (%.3g)", ra);
        free(betas);
        free(ab);
        schedule_free(&s);
        schedule_free(&d);
    }
    /* Non-default parameters: Stable Diffusion's scaled_linear, a 4000-step cosine schedule. */
    ScheduleConfig cfg = schedule_config_default();
    cfg.beta_schedule = BETA_SCHEDULE_SCALED_LINEAR, cfg.beta_start = 0.00085, cfg.beta_end = 0.012;
    Schedule s;
    Error err;
    EXPECT(schedule_init(&s, &cfg, &err) == 0, "%s", err.message);
    float *ab = fixture_floats(fx, "schedule.sd.alphas_cumprod", 1000);
    EXPECT(max_rel_diff(s.alphas_cumprod, ab, 1000) < 2e-6, "sd schedule");
    free(ab);
    schedule_free(&s);
    cfg = schedule_config_default();
    cfg.beta_schedule = BETA_SCHEDULE_SQUAREDCOS_CAP_V2, cfg.num_train_timesteps = 4000;
    EXPECT(schedule_init(&s, &cfg, &err) == 0, "%s", err.message);
    ab = fixture_floats(fx, "schedule.cosine4000.alphas_cumprod", 4000);
    EXPECT(max_rel_diff(s.alphas_cumprod, ab, 4000) == 0, "cosine 4000 schedule");
    free(ab);
    schedule_free(&s);
    fixture_close(fx);
}

static void test_posterior_identities(void) {
    /* The posterior of eq. 7 is consistent with the marginals: E[x_{t-1} | x_0] = √ᾱ_{t-1} x_0 needs
     * c1 + c2 √ᾱ_t = √ᾱ_{t-1}, and Var[x_{t-1} | x_0] = 1 - ᾱ_{t-1} needs β̃_t + c2² (1 - ᾱ_t) = 1 - ᾱ_{t-1}. */
    for (int k = 0; k < 3; k++) {
        Schedule s = make_schedule((BetaSchedule)k, SCHEDULE_PRECISION_DOUBLE);
        double worst_mean = 0, worst_var = 0;
        for (size_t t = 0; t < s.n_timesteps; t++) {
            double ab = s.alphas_cumprod[t], abp = s.alphas_cumprod_prev[t];
            worst_mean = fmax(worst_mean, fabs(s.posterior_mean_coef1[t] + s.posterior_mean_coef2[t] * sqrt(ab) - sqrt(abp)));
            double c2 = s.posterior_mean_coef2[t];
            worst_var = fmax(worst_var, fabs(s.posterior_variance[t] + c2 * c2 * (1 - ab) - (1 - abp)));
            if (t > 0)
                EXPECT(fabs(s.posterior_log_variance_clipped[t] - log(s.posterior_variance[t])) < 1e-12, "log var");
        }
        EXPECT(s.posterior_log_variance_clipped[0] == s.posterior_log_variance_clipped[1], "clipped log variance at 0");
        EXPECT(worst_mean < 1e-12 && worst_var < 1e-12, "%s posterior identities: mean %.3g, variance %.3g",
               SCHEDULES[k], worst_mean, worst_var);
        double max_beta = 0;
        for (size_t t = 0; t < s.n_timesteps; t++) max_beta = fmax(max_beta, s.betas[t]);
        if (k == BETA_SCHEDULE_SQUAREDCOS_CAP_V2) EXPECT(max_beta == 0.999, "cosine β cap: max %.6f", max_beta);
        if (k == BETA_SCHEDULE_LINEAR)
            EXPECT(s.betas[0] == 1e-4 && fabs(s.betas[999] - 0.02) < 1e-15, "linear ends %g %g", s.betas[0], s.betas[999]);
        schedule_free(&s);
    }
}

static void test_schedule_errors(void) {
    Error err;
    BetaSchedule b;
    EXPECT(beta_schedule_from_name("foo", &b, &err) == -1 &&
               strcmp(err.message, "unknown beta_schedule 'foo' (supported: linear, scaled_linear, squaredcos_cap_v2)") == 0,
           "message: %s", err.message);
    EXPECT(beta_schedule_from_name("scaled_linear", &b, &err) == 0 && b == BETA_SCHEDULE_SCALED_LINEAR, "lookup");
    for (int k = 0; k < 3; k++) {
        EXPECT(beta_schedule_from_name(beta_schedule_name((BetaSchedule)k), &b, &err) == 0 && (int)b == k, "round trip");
    }
    Schedule s;
    ScheduleConfig cfg = schedule_config_default();
    cfg.num_train_timesteps = 0;
    EXPECT(schedule_init(&s, &cfg, &err) == -1 && contains(err.message, "num_train_timesteps"), "T = 0: %s", err.message);
    cfg = schedule_config_default();
    cfg.beta_end = 1.5;
    EXPECT(schedule_init(&s, &cfg, &err) == -1 && contains(err.message, "(0, 1)"), "beta_end 1.5: %s", err.message);
    cfg = schedule_config_default();
    double betas[3] = {0.1, 0.2, 0.3};
    cfg.trained_betas = betas, cfg.n_trained_betas = 3;
    EXPECT(schedule_init(&s, &cfg, &err) == -1 && contains(err.message, "trained_betas has 3"), "%s", err.message);
    cfg.num_train_timesteps = 3;
    EXPECT(schedule_init(&s, &cfg, &err) == 0, "%s", err.message);
    EXPECT(fabs(s.alphas_cumprod[2] - (double)(0.9f * 0.8f * 0.7f)) < 1e-7, "trained betas cumprod %.9f", s.alphas_cumprod[2]);
    schedule_free(&s);
    betas[1] = 0;
    EXPECT(schedule_init(&s, &cfg, &err) == -1 && contains(err.message, "beta_1"), "zero beta: %s", err.message);
}

/* ------------------------------------------------------------------------------------------------ */
/* Forward process and objective */

static void test_q_sample_and_velocity_match_diffusers(void) {
    Fixture *fx = fixture_open("diffusion");
    const size_t D = 48, N = 2;
    float *x0 = fixture_floats(fx, "q.x0", N * D), *noise = fixture_floats(fx, "q.noise", N * D);
    float *tf = fixture_floats(fx, "q.t", N);
    int64_t t[2] = {(int64_t)tf[0], (int64_t)tf[1]};
    float got[96], target[96];
    char name[64];
    for (int k = 0; k < 3; k++) {
        Schedule s = make_schedule((BetaSchedule)k, SCHEDULE_PRECISION_DIFFUSERS);
        snprintf(name, sizeof name, "q.%s.x_t", SCHEDULES[k]);
        float *want = fixture_floats(fx, name, N * D);
        objective_q_sample(got, x0, noise, t, N, D, &s);
        expect_close(name, got, want, N * D, 1e-6, 0);
        free(want);
        snprintf(name, sizeof name, "q.%s.v", SCHEDULES[k]);
        want = fixture_floats(fx, name, N * D);
        objective_target(target, PREDICTION_V, x0, noise, t, N, D, &s);
        expect_close(name, target, want, N * D, 1e-6, 0);
        free(want);
        objective_target(target, PREDICTION_EPSILON, x0, noise, t, N, D, &s);
        EXPECT(memcmp(target, noise, sizeof target) == 0, "epsilon target is the noise");
        objective_target(target, PREDICTION_SAMPLE, x0, noise, t, N, D, &s);
        EXPECT(memcmp(target, x0, sizeof target) == 0, "sample target is x0");
        /* In place: x_t may overwrite x0. */
        float copy[96];
        memcpy(copy, x0, sizeof copy);
        objective_q_sample(copy, copy, noise, t, N, D, &s);
        objective_q_sample(got, x0, noise, t, N, D, &s);
        EXPECT(memcmp(copy, got, sizeof copy) == 0, "q_sample in place");
        schedule_free(&s);
    }
    free(x0);
    free(noise);
    free(tf);
    fixture_close(fx);
}

static void test_draws_do_not_depend_on_batch_split(void) {
    Schedule s = make_schedule(BETA_SCHEDULE_LINEAR, SCHEDULE_PRECISION_DIFFUSERS);
    enum { N = 8, D = 37 };
    int64_t t_all[N], t_split[N];
    float noise_all[N * D], noise_split[N * D];
    objective_sample_timesteps(t_all, N, &s, 42, 7, 100);
    objective_sample_timesteps(t_split, 3, &s, 42, 7, 100);
    objective_sample_timesteps(t_split + 3, 5, &s, 42, 7, 103);
    EXPECT(memcmp(t_all, t_split, sizeof t_all) == 0, "timesteps depend on the batch split");
    objective_sample_noise(noise_all, N, D, 42, 7, 100);
    objective_sample_noise(noise_split, 5, D, 42, 7, 100);
    objective_sample_noise(noise_split + 5 * D, 3, D, 42, 7, 105);
    EXPECT(memcmp(noise_all, noise_split, sizeof noise_all) == 0, "noise depends on the batch split");
    int64_t other[N];
    objective_sample_timesteps(other, N, &s, 42, 8, 100);
    EXPECT(memcmp(t_all, other, sizeof t_all) != 0, "timesteps ignore the step");
    /* Uniform over 0..T-1: 200k draws in 10 buckets of 100 timesteps. */
    enum { M = 200000 };
    int64_t *t = xmalloc(M * sizeof(int64_t));
    objective_sample_timesteps(t, M, &s, 1, 0, 0);
    int counts[10] = {0};
    int64_t lo = 1000, hi = -1;
    for (size_t i = 0; i < M; i++) counts[t[i] / 100]++, lo = t[i] < lo ? t[i] : lo, hi = t[i] > hi ? t[i] : hi;
    for (int b = 0; b < 10; b++) EXPECT(abs(counts[b] - M / 10) < 600, "bucket %d: %d draws", b, counts[b]);
    EXPECT(lo == 0 && hi == 999, "range %lld .. %lld", (long long)lo, (long long)hi);
    free(t);
    schedule_free(&s);
}

typedef struct LossCtx {
    float *pred, *target, *weights;
    size_t n, d;
} LossCtx;

static double loss_closure(void *ctx) {
    LossCtx *c = ctx;
    return objective_loss_forward(c->pred, c->target, c->weights, c->n, c->d);
}

static void test_loss_and_gradient(void) {
    enum { N = 3, D = 50 };
    float pred[N * D], target[N * D], weights[N] = {0.5f, 2.0f, 1.0f}, dpred[N * D];
    fill_normal(pred, N * D, 1);
    fill_normal(target, N * D, 2);
    double want = 0, want_w = 0;
    for (size_t i = 0; i < N; i++)
        for (size_t j = 0; j < D; j++) {
            double d = (double)pred[i * D + j] - target[i * D + j];
            want += d * d, want_w += weights[i] * d * d;
        }
    want /= N * D, want_w /= N * D;
    double got = objective_loss_forward(pred, target, NULL, N, D);
    double got_w = objective_loss_forward(pred, target, weights, N, D);
    EXPECT(fabs(got - want) < 1e-12 * want && fabs(got_w - want_w) < 1e-12 * want_w, "loss %.15g vs %.15g, weighted %.15g vs %.15g",
           got, want, got_w, want_w);
    for (int w = 0; w < 2; w++) {
        LossCtx c = {pred, target, w ? weights : NULL, N, D};
        memset(dpred, 0, sizeof dpred);
        objective_loss_backward(dpred, pred, target, c.weights, N, D, 1.0);
        double worst = gradcheck(w ? "weighted loss" : "loss", loss_closure, &c, pred, dpred, N * D, N * D, 1e-3, 1e-6, 1e-3);
        EXPECT(worst <= 1, "gradcheck ratio %.3g", worst);
    }
    /* Backward accumulates. */
    float acc[N * D];
    for (size_t i = 0; i < N * D; i++) acc[i] = 1.0f;
    memset(dpred, 0, sizeof dpred);
    objective_loss_backward(dpred, pred, target, NULL, N, D, 0.5);
    objective_loss_backward(acc, pred, target, NULL, N, D, 0.5);
    double worst = 0;
    for (size_t i = 0; i < N * D; i++) worst = fmax(worst, fabs(acc[i] - 1.0f - dpred[i]));
    EXPECT(worst < 1e-6, "backward must accumulate: %.3g", worst);
    /* SNR weights: ᾱ/(1-ᾱ). */
    Schedule s = make_schedule(BETA_SCHEDULE_LINEAR, SCHEDULE_PRECISION_DOUBLE);
    int64_t t[2] = {0, 999};
    float snr[2];
    objective_snr_weights(snr, t, 2, &s);
    EXPECT(fabs(snr[0] - 0.9999 / 1e-4) < 1e-2 && fabs(snr[1] - 4.0358e-05) < 1e-8, "snr %g %g", snr[0], snr[1]);
    schedule_free(&s);
}

/* ------------------------------------------------------------------------------------------------ */
/* Timesteps */

static void test_timesteps_match_diffusers(void) {
    static const size_t STEPS[] = {1, 2, 3, 7, 10, 25, 50, 61, 80, 100, 103, 250, 333, 400, 500, 999, 1000};
    static const struct {
        const char *tag;
        SamplerKind kind;
        size_t T;
    } CLASSES[] = {{"ddpm", SAMPLER_DDPM, 1000}, {"ddim", SAMPLER_DDIM, 1000}, {"dpm", SAMPLER_DPM_SOLVER, 1000},
                   {"ddim", SAMPLER_DDIM, 50}};
    Fixture *fx = fixture_open("diffusion");
    int64_t *got = xmalloc(1001 * sizeof(int64_t));
    int n_compared = 0, n_broken = 0;
    for (size_t c = 0; c < 4; c++) {
        for (int sp = 0; sp < 3; sp++) {
            for (size_t offset = 0; offset < (sp == TIMESTEP_SPACING_LEADING ? 2u : 1u); offset++) {
                for (size_t k = 0; k < sizeof STEPS / sizeof STEPS[0]; k++) {
                    size_t n = STEPS[k], T = CLASSES[c].T;
                    if (n > T) continue;
                    char name[128];
                    snprintf(name, sizeof name, "timesteps.%s.T%zu.%s.off%zu.n%zu", CLASSES[c].tag, T,
                             timestep_spacing_name((TimestepSpacing)sp), offset, n);
                    Error err;
                    int rc = sampler_timesteps(got, CLASSES[c].kind, (TimestepSpacing)sp, T, n, offset, &err);
                    if (fixture_has(fx, name)) {
                        float *want = fixture_floats(fx, name, n);
                        EXPECT(rc == 0, "%s: %s", name, err.message);
                        for (size_t i = 0; rc == 0 && i < n; i++) {
                            if (got[i] != (int64_t)want[i]) {
                                EXPECT(0, "%s: timestep %zu is %lld, diffusers %.0f", name, i, (long long)got[i], want[i]);
                                break;
                            }
                        }
                        free(want);
                        n_compared++;
                    } else {
                        char broken[160];
                        snprintf(broken, sizeof broken, "%s.broken", name);
                        EXPECT(fixture_has(fx, broken), "fixture lacks %s", name);
                        EXPECT(rc == -1 && contains(err.message, "choose another number of steps"),
                               "%s: diffusers' sequence is broken, expected an error (rc %d)", name, rc);
                        n_broken++;
                    }
                }
            }
        }
    }
    printf("  %d sequences identical to diffusers', %d broken in diffusers rejected\n", n_compared, n_broken);
    EXPECT(n_compared > 150 && n_broken >= 8, "coverage: %d compared, %d broken", n_compared, n_broken);
    free(got);
    fixture_close(fx);
}

static void test_invalid_sampler_options(void) {
    SchedulerConfig cfg = scheduler_config_default(SAMPLER_DDIM);
    Sampler sm;
    Error err;
    SamplerOptions opt = {.num_inference_steps = 2000};
    EXPECT(sampler_init(&sm, &cfg, &opt, &err) == -1 &&
               strcmp(err.message, "num_inference_steps 2000 exceeds num_train_timesteps 1000") == 0,
           "steps > T: %s", err.message);
    opt.num_inference_steps = 0;
    EXPECT(sampler_init(&sm, &cfg, &opt, &err) == -1 && contains(err.message, "at least 1"), "steps 0: %s", err.message);
    opt = (SamplerOptions){.num_inference_steps = 50, .eta = -0.5};
    EXPECT(sampler_init(&sm, &cfg, &opt, &err) == -1 && contains(err.message, "eta -0.5"), "eta < 0: %s", err.message);
    opt.eta = NAN;
    EXPECT(sampler_init(&sm, &cfg, &opt, &err) == -1 && contains(err.message, "eta"), "eta NaN: %s", err.message);
    opt.eta = 3.0;
    EXPECT(sampler_init(&sm, &cfg, &opt, &err) == -1 && contains(err.message, "too large"), "eta 3: %s", err.message);
    opt.eta = 1.0;
    EXPECT(sampler_init(&sm, &cfg, &opt, &err) == 0, "eta 1: %s", err.message);
    sampler_free(&sm);
    opt.eta = 0;
    cfg.schedule.beta_schedule = (BetaSchedule)7;
    EXPECT(sampler_init(&sm, &cfg, &opt, &err) == -1 && contains(err.message, "supported: linear"), "%s", err.message);
    cfg = scheduler_config_default(SAMPLER_DDPM);
    cfg.variance_type = VARIANCE_LEARNED_RANGE;
    EXPECT(sampler_init(&sm, &cfg, &opt, &err) == -1 && contains(err.message, "n_channels"), "%s", err.message);
    cfg = scheduler_config_default(SAMPLER_DPM_SOLVER);
    cfg.solver_order = 4;
    EXPECT(sampler_init(&sm, &cfg, &opt, &err) == -1 && contains(err.message, "solver_order 4"), "%s", err.message);
    cfg = scheduler_config_default(SAMPLER_DDIM);
    cfg.timestep_spacing = TIMESTEP_SPACING_TRAILING;
    opt.num_inference_steps = 61;
    EXPECT(sampler_init(&sm, &cfg, &opt, &err) == -1 && contains(err.message, "trailing"), "%s", err.message);
    cfg.clip_sample_range = -1;
    opt.num_inference_steps = 10;
    EXPECT(sampler_init(&sm, &cfg, &opt, &err) == -1 && contains(err.message, "clip_sample_range"), "%s", err.message);
    /* Names. */
    SamplerKind k;
    VarianceType v;
    TimestepSpacing sp;
    PredictionType p;
    EXPECT(sampler_kind_from_name("euler", &k, &err) == -1 &&
               strcmp(err.message, "unknown sampler 'euler' (supported: ddpm, ddim, dpm++)") == 0, "%s", err.message);
    EXPECT(variance_type_from_name("learned", &v, &err) == -1 && contains(err.message, "fixed_small, fixed_small_log"),
           "%s", err.message);
    EXPECT(timestep_spacing_from_name("uniform", &sp, &err) == -1 && contains(err.message, "leading, linspace, trailing"),
           "%s", err.message);
    EXPECT(prediction_type_from_name("flow", &p, &err) == -1 && contains(err.message, "epsilon, sample, v_prediction"),
           "%s", err.message);
    for (int i = 0; i < 3; i++) {
        EXPECT(sampler_kind_from_name(sampler_kind_name((SamplerKind)i), &k, &err) == 0 && (int)k == i, "kind names");
        EXPECT(prediction_type_from_name(prediction_type_name((PredictionType)i), &p, &err) == 0 && (int)p == i, "pred");
    }
}

/* ------------------------------------------------------------------------------------------------ */
/* scheduler_config.json */

static char *read_text(const char *path) {
    FILE *f = fopen(path, "rb");
    CHECK(f, "cannot open %s", path);
    char *buf = xcalloc(1 << 16, 1);
    size_t n = fread(buf, 1, (1 << 16) - 1, f);
    buf[n] = 0;
    fclose(f);
    return buf;
}

static void test_config_files_written_like_diffusers(void) {
    static const char *const FILES[] = {"diffusion_config_ddpm.json", "diffusion_config_ddpm_cifar10.json",
                                        "diffusion_config_ddpm_custom.json", "diffusion_config_ddim.json",
                                        "diffusion_config_ddim_sd.json", "diffusion_config_dpm.json"};
    for (size_t i = 0; i < sizeof FILES / sizeof FILES[0]; i++) {
        char path[256];
        snprintf(path, sizeof path, "tests/fixtures/%s", FILES[i]);
        SchedulerConfig cfg;
        Error err;
        if (scheduler_config_read(&cfg, path, &err)) {
            EXPECT(0, "%s", err.message);
            continue;
        }
        char *want = read_text(path), *got = scheduler_config_to_json(&cfg);
        EXPECT(strcmp(got, want) == 0, "%s: written differently from diffusers' save_config:\n%s\nvs\n%s", FILES[i], got, want);
        /* Written to a file and read back: the same config. */
        const char *out = harness_tmp_path("scheduler_config.json");
        EXPECT(scheduler_config_write(&cfg, out, &err) == 0, "%s", err.message);
        char *again = read_text(out);
        EXPECT(strcmp(again, want) == 0, "%s: file differs", FILES[i]);
        SchedulerConfig back;
        EXPECT(scheduler_config_read(&back, out, &err) == 0, "%s", err.message);
        char *json_back = scheduler_config_to_json(&back);
        EXPECT(strcmp(json_back, want) == 0, "%s: round trip differs", FILES[i]);
        free(json_back);
        scheduler_config_free(&back);
        free(again);
        free(want);
        free(got);
        scheduler_config_free(&cfg);
    }
}

static void test_config_fields_parsed(void) {
    SchedulerConfig cfg;
    Error err;
    EXPECT(scheduler_config_read(&cfg, "tests/fixtures/diffusion_config_ddpm_cifar10.json", &err) == 0, "%s", err.message);
    EXPECT(cfg.kind == SAMPLER_DDPM && cfg.variance_type == VARIANCE_FIXED_LARGE && cfg.clip_sample &&
               cfg.schedule.num_train_timesteps == 1000 && cfg.schedule.beta_start == 1e-4 && cfg.schedule.beta_end == 0.02 &&
               cfg.schedule.beta_schedule == BETA_SCHEDULE_LINEAR && cfg.timestep_spacing == TIMESTEP_SPACING_LEADING,
           "google/ddpm-cifar10-32 style config");
    scheduler_config_free(&cfg);
    EXPECT(scheduler_config_read(&cfg, "tests/fixtures/diffusion_config_ddpm_custom.json", &err) == 0, "%s", err.message);
    EXPECT(cfg.schedule.num_train_timesteps == 4 && cfg.schedule.n_trained_betas == 4 &&
               cfg.schedule.trained_betas[2] == 0.000125 && cfg.prediction_type == PREDICTION_V &&
               cfg.variance_type == VARIANCE_FIXED_SMALL_LOG && !cfg.clip_sample && cfg.clip_sample_range == 2.5 &&
               cfg.timestep_spacing == TIMESTEP_SPACING_TRAILING && cfg.steps_offset == 1,
           "custom DDPM config");
    Schedule s;
    EXPECT(schedule_init(&s, &cfg.schedule, &err) == 0 && fabs(s.betas[3] - 0.5) < 1e-9, "schedule from trained_betas");
    schedule_free(&s);
    /* Sampling with another class from this config, as DDIMScheduler.from_config does. */
    cfg.kind = SAMPLER_DDIM;
    Sampler sm;
    SamplerOptions opt = {.num_inference_steps = 2};
    EXPECT(sampler_init(&sm, &cfg, &opt, &err) == 0, "%s", err.message);
    EXPECT(sm.timesteps[0] == 3 && sm.timesteps[1] == 1, "trailing over 4: %lld %lld", (long long)sm.timesteps[0],
           (long long)sm.timesteps[1]);
    sampler_free(&sm);
    scheduler_config_free(&cfg);
    EXPECT(scheduler_config_read(&cfg, "tests/fixtures/diffusion_config_ddim_sd.json", &err) == 0, "%s", err.message);
    EXPECT(cfg.kind == SAMPLER_DDIM && !cfg.set_alpha_to_one && cfg.steps_offset == 1 &&
               cfg.schedule.beta_schedule == BETA_SCHEDULE_SCALED_LINEAR && cfg.schedule.beta_start == 0.00085,
           "DDIM config");
    scheduler_config_free(&cfg);
    EXPECT(scheduler_config_read(&cfg, "tests/fixtures/diffusion_config_dpm.json", &err) == 0, "%s", err.message);
    EXPECT(cfg.kind == SAMPLER_DPM_SOLVER && cfg.solver_order == 2 && cfg.timestep_spacing == TIMESTEP_SPACING_LINSPACE &&
               cfg.final_sigmas_type == FINAL_SIGMAS_ZERO && cfg.lower_order_final,
           "DPM config");
    scheduler_config_free(&cfg);
}

static void expect_parse_error(const char *json, const char *expected) {
    SchedulerConfig cfg;
    Error err;
    int rc = scheduler_config_parse(&cfg, json, "scheduler_config.json", &err);
    EXPECT(rc == -1, "accepted: %s", json);
    if (rc == 0) {
        scheduler_config_free(&cfg);
        return;
    }
    EXPECT(contains(err.message, expected), "message '%s' lacks '%s'", err.message, expected);
    EXPECT(contains(err.message, "scheduler_config.json"), "message '%s' does not name the file", err.message);
}

static void test_config_errors(void) {
    expect_parse_error("{\"_class_name\": \"DDPMScheduler\", \"beta_schedule\": \"foo\"}",
                       "unknown beta_schedule 'foo' (supported: linear, scaled_linear, squaredcos_cap_v2)");
    expect_parse_error("{\"_class_name\": \"DDPMScheduler\", \"beta_schedule\": \"sigmoid\"}", "supported: linear");
    expect_parse_error("{\"_class_name\": \"DDPMScheduler\", \"variance_type\": \"learned\"}",
                       "unknown variance_type 'learned' (supported: fixed_small");
    expect_parse_error("{\"_class_name\": \"DDPMScheduler\", \"thresholding\": true}", "supported: false");
    expect_parse_error("{\"_class_name\": \"DDIMScheduler\", \"rescale_betas_zero_snr\": true}", "supported: false");
    expect_parse_error("{\"_class_name\": \"DDPMScheduler\", \"clip_sample\": 1}", "\"clip_sample\" must be true or false");
    expect_parse_error("{\"_class_name\": \"DDPMScheduler\", \"num_train_timesteps\": 10.5}", "must be an integer");
    expect_parse_error("{\"_class_name\": \"DDPMScheduler\", \"num_train_timesteps\": 0}", "must be an integer >= 1");
    expect_parse_error("{\"_class_name\": \"DDPMScheduler\", \"num_train_timesteps\": 100000000}", "outside 1 .. 1000000");
    expect_parse_error("{\"_class_name\": \"DDPMScheduler\", \"prediction_type\": \"flow_prediction\"}",
                       "supported: epsilon, sample, v_prediction");
    expect_parse_error("{\"_class_name\": \"DDPMScheduler\", \"trained_betas\": [0.1, 0.2]}", "trained_betas has 2 values");
    expect_parse_error("{\"_class_name\": \"EulerDiscreteScheduler\"}",
                       "unknown _class_name 'EulerDiscreteScheduler' (supported: DDPMScheduler, DDIMScheduler");
    expect_parse_error("{\"beta_start\": 0.001}", "no \"_class_name\"");
    expect_parse_error("{\"_class_name\": \"DDPMScheduler\", ", "not valid JSON");
    expect_parse_error("[1, 2]", "must be a JSON object");
    expect_parse_error("{\"_class_name\": \"DPMSolverMultistepScheduler\", \"use_karras_sigmas\": true}",
                       "supported: false");
    expect_parse_error("{\"_class_name\": \"DPMSolverMultistepScheduler\", \"algorithm_type\": \"sde-dpmsolver++\"}",
                       "supported: dpmsolver++");
    expect_parse_error("{\"_class_name\": \"DPMSolverMultistepScheduler\", \"lambda_min_clipped\": -5.1}",
                       "supported: -Infinity");
    expect_parse_error("{\"_class_name\": \"DDPMScheduler\", \"beta_end\": NaN}", "not valid JSON");
    /* an ignored key holding more values than cJSON should be asked to hold (it took 2.7 GB at 64 MB) */
    char *many = xmalloc(2 * JSON_MAX_VALUES + 64);
    size_t at = (size_t)sprintf(many, "{\"_class_name\": \"DDPMScheduler\", \"x\": [");
    for (size_t i = 0; i < JSON_MAX_VALUES; i++) at += (size_t)sprintf(many + at, "0,");
    strcpy(many + at, "0]}");
    expect_parse_error(many, "more than 2097152 JSON values");
    free(many);
    Error err;
    EXPECT(scheduler_config_read(&(SchedulerConfig){0}, "tests/fixtures/no-such-file.json", &err) == -1 &&
               contains(err.message, "no-such-file.json"), "%s", err.message);
    /* Keys diffusers ignores are ignored: other classes' options, unknown keys, metadata. */
    SchedulerConfig cfg;
    EXPECT(scheduler_config_parse(&cfg,
                                  "{\"_class_name\": \"DDIMScheduler\", \"_name_or_path\": \"x\", \"variance_type\": "
                                  "\"fixed_large\", \"skip_prk_steps\": true, \"clip_sample\": false, "
                                  "\"name\": \"Infinity inside a string\"}",
                                  "cfg", &err) == 0,
           "%s", err.message);
    EXPECT(cfg.kind == SAMPLER_DDIM && !cfg.clip_sample && cfg.variance_type == VARIANCE_FIXED_SMALL, "ignored keys");
    scheduler_config_free(&cfg);
}

int main(void) {
    RUN(test_fixed_small_golden_values);
    RUN(test_schedule_tables_match_diffusers);
    RUN(test_posterior_identities);
    RUN(test_schedule_errors);
    RUN(test_q_sample_and_velocity_match_diffusers);
    RUN(test_draws_do_not_depend_on_batch_split);
    RUN(test_loss_and_gradient);
    RUN(test_timesteps_match_diffusers);
    RUN(test_invalid_sampler_options);
    RUN(test_config_files_written_like_diffusers);
    RUN(test_config_fields_parsed);
    RUN(test_config_errors);
    return harness_finish();
}
