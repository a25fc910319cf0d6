/* Diffusion library, part 2: the samplers against diffusers' schedulers. Every step's output, from the same
 * model output, x_t and noise as diffusers' step got, must match within 1e-5 (max abs):
 *   DDPM: single steps at 11 timesteps for every beta schedule x prediction type x variance type x clip
 *         setting, and chains with 10 to 50 inference steps over the three spacings;
 *   DDIM: chains of 10 and 50 steps for every schedule x prediction type x clip setting, plus spacings,
 *         set_alpha_to_one, steps_offset, eta > 0 and use_clipped_model_output;
 *   DPM-Solver++: chains of 10, 25 and 50 steps for every schedule x prediction type, plus orders 1 and
 *         3, heun, lower_order_final, final sigma, euler_at_final, spacings and learned_range.
 * Chains are also run whole through sampler_run and compared at the end. Then: DDPM equals eq. 11 without
 * clipping; fixed_large_log is fixed_large; sampling noise does not depend on the batch split; and with
 * the exact denoiser of Gaussian data, DPM-Solver++ reaches the data distribution in 10-25 steps. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/error.h"
#include "diffusion/sampler.h"
#include "diffusion/schedule.h"
#include "diffusion/scheduler_config.h"
#include "harness.h"

#define PARITY_ATOL 1e-5

static const char *const SCHEDULES[] = {"linear", "scaled_linear", "squaredcos_cap_v2"};
static const char *const PREDICTIONS[] = {"epsilon", "sample", "v_prediction"};

/* Worst errors per family, printed at the end. */
static double worst_ddpm_step, worst_ddpm_chain, worst_ddim[2], worst_dpm[3], worst_whole_chain;

static double max_abs_diff(const float *a, const float *b, size_t n) {
    double worst = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (!(d <= worst)) worst = d; /* NaN propagates */
    }
    return worst;
}

static bool contains(const char *haystack, const char *needle) { return strstr(haystack, needle) != NULL; }

/* ------------------------------------------------------------------------------------------------ */
/* DDPM single steps */

static void test_ddpm_steps_match_diffusers(void) {
    enum { ROWS = 11, N = 2, D = 48, C = 3 };
    static const char *const VARIANCES[] = {"fixed_small", "fixed_small_log", "fixed_large", "learned_range"};
    Fixture *fx = fixture_open("diffusion");
    float *tf = fixture_floats(fx, "ddpm.t", ROWS), *x = fixture_floats(fx, "ddpm.x", ROWS * N * D);
    float *model = fixture_floats(fx, "ddpm.model_output", ROWS * N * D);
    float *model_learned = fixture_floats(fx, "ddpm.model_output_learned", ROWS * N * D * 2);
    float *noise = fixture_floats(fx, "ddpm.noise", ROWS * N * D);
    float prev[N * D], x0[N * D];
    int n_configs = 0;
    for (int sc = 0; sc < 3; sc++) {
        for (int p = 0; p < 3; p++) {
            for (int v = 0; v < 4; v++) {
                for (int clip = 0; clip < 2; clip++) {
                    SchedulerConfig cfg = scheduler_config_default(SAMPLER_DDPM);
                    Error err;
                    CHECK(beta_schedule_from_name(SCHEDULES[sc], &cfg.schedule.beta_schedule, &err) == 0, "names");
                    CHECK(prediction_type_from_name(PREDICTIONS[p], &cfg.prediction_type, &err) == 0, "names");
                    CHECK(variance_type_from_name(VARIANCES[v], &cfg.variance_type, &err) == 0, "names");
                    cfg.clip_sample = clip;
                    Schedule s;
                    CHECK(schedule_init(&s, &cfg.schedule, &err) == 0, "%s", err.message);
                    char name[128];
                    snprintf(name, sizeof name, "ddpm.%s.%s.%s.clip%d", SCHEDULES[sc], PREDICTIONS[p], VARIANCES[v], clip);
                    char key[160];
                    snprintf(key, sizeof key, "%s.prev", name);
                    float *want = fixture_floats(fx, key, ROWS * N * D);
                    float *want_x0 = NULL;
                    snprintf(key, sizeof key, "%s.pred_x0", name);
                    if (fixture_has(fx, key)) want_x0 = fixture_floats(fx, key, ROWS * N * D);
                    int learned = cfg.variance_type == VARIANCE_LEARNED_RANGE;
                    for (int r = 0; r < ROWS; r++) {
                        int64_t t = (int64_t)tf[r];
                        StepBuffers b = {
                            .x_prev = prev,
                            .pred_x0 = x0,
                            .model_output = learned ? model_learned + r * N * D * 2 : model + r * N * D,
                            .x_t = x + r * N * D,
                            .noise = noise + r * N * D,
                            .n = N,
                            .sample_numel = D,
                            .n_channels = C,
                        };
                        ddpm_step(&b, &s, &cfg, t, t - 1);
                        double d = max_abs_diff(prev, want + r * N * D, N * D);
                        worst_ddpm_step = fmax(worst_ddpm_step, d);
                        EXPECT(d <= PARITY_ATOL, "%s t=%lld: max |diff| %.3g", name, (long long)t, d);
                        if (want_x0) {
                            /* x̂_0 = (x_t - √(1-ᾱ) ε̂) / √ᾱ: diffusers' float32 numerator carries ~1e-7 absolute
                             * error, which the division by √ᾱ amplifies (1e-4 at t = 900); diffuse computes it
                             * in double. */
                            char what[200];
                            snprintf(what, sizeof what, "%s t=%lld pred_x0", name, (long long)t);
                            double amplification = cfg.prediction_type == PREDICTION_SAMPLE ? 1 : 1 / sqrt(s.alphas_cumprod[t]);
                            expect_close(what, x0, want_x0 + r * N * D, N * D, 2e-7 * amplification, 1e-6);
                        }
                    }
                    free(want);
                    free(want_x0);
                    schedule_free(&s);
                    n_configs++;
                }
            }
        }
    }
    /* clip_sample_range 0.5. */
    SchedulerConfig cfg = scheduler_config_default(SAMPLER_DDPM);
    cfg.prediction_type = PREDICTION_SAMPLE, cfg.clip_sample_range = 0.5;
    Schedule s;
    Error err;
    CHECK(schedule_init(&s, &cfg.schedule, &err) == 0, "%s", err.message);
    float *want = fixture_floats(fx, "ddpm.range0.5.prev", ROWS * N * D);
    for (int r = 0; r < ROWS; r++) {
        StepBuffers b = {.x_prev = prev, .model_output = model + r * N * D, .x_t = x + r * N * D,
                         .noise = noise + r * N * D, .n = N, .sample_numel = D};
        ddpm_step(&b, &s, &cfg, (int64_t)tf[r], (int64_t)tf[r] - 1);
        double d = max_abs_diff(prev, want + r * N * D, N * D);
        worst_ddpm_step = fmax(worst_ddpm_step, d);
        EXPECT(d <= PARITY_ATOL, "clip range 0.5, t=%.0f: %.3g", tf[r], d);
    }
    free(want);
    schedule_free(&s);
    printf("  %d configurations x %d timesteps: max |diff| %.3g\n", n_configs + 1, ROWS, worst_ddpm_step);
    free(tf), free(x), free(model), free(model_learned), free(noise);
    fixture_close(fx);
}

/* ------------------------------------------------------------------------------------------------ */
/* Chains */

enum { CHAIN_N = 2, CHAIN_D = 24, CHAIN_C = 3, CHAIN_MAX_STEPS = 50 };

/* A model that replays the fixture's per-step outputs. */
typedef struct ReplayModel {
    const float *outputs;
    size_t per_step, calls;
} ReplayModel;

static int replay_model(void *ctx, const float *x_t, const int64_t *t, size_t n, float *out, Error *err) {
    (void)x_t, (void)t, (void)err;
    ReplayModel *m = ctx;
    CHECK(n == CHAIN_N, "batch %zu", n);
    memcpy(out, m->outputs + m->calls * m->per_step, m->per_step * sizeof(float));
    m->calls++;
    return 0;
}

/* Checks a chain stored under `name`: the timesteps, every step from diffusers' x, and the whole chain
 * run by sampler_run. Returns the worst per-step error. */
static double check_chain(Fixture *fx, const char *name, const SchedulerConfig *cfg, SamplerOptions opt,
                          const float *noise) {
    char key[200];
    snprintf(key, sizeof key, "%s.timesteps", name);
    if (!fixture_has(fx, key)) {
        EXPECT(0, "fixture lacks %s", key);
        return INFINITY;
    }
    size_t steps = opt.num_inference_steps;
    float *ts = fixture_floats(fx, key, steps);
    bool learned = cfg->kind != SAMPLER_DDIM && cfg->variance_type == VARIANCE_LEARNED_RANGE;
    size_t out_per_step = CHAIN_N * CHAIN_D * (learned ? 2 : 1);
    snprintf(key, sizeof key, "%s.model_output", name);
    float *model = fixture_floats(fx, key, steps * out_per_step);
    snprintf(key, sizeof key, "%s.x", name);
    float *xs = fixture_floats(fx, key, (steps + 1) * CHAIN_N * CHAIN_D);
    opt.n_channels = CHAIN_C;
    Sampler sm;
    Error err;
    double worst = INFINITY;
    if (sampler_init(&sm, cfg, &opt, &err)) {
        EXPECT(0, "%s: %s", name, err.message);
        goto done;
    }
    for (size_t i = 0; i < steps; i++)
        if (sm.timesteps[i] != (int64_t)ts[i]) {
            EXPECT(0, "%s: timestep %zu is %lld, diffusers %.0f", name, i, (long long)sm.timesteps[i], ts[i]);
            break;
        }
    worst = 0;
    float prev[CHAIN_N * CHAIN_D];
    for (size_t i = 0; i < steps; i++) {
        StepBuffers b = {
            .x_prev = prev,
            .model_output = model + i * out_per_step,
            .x_t = xs + i * CHAIN_N * CHAIN_D,
            .noise = noise + i * CHAIN_N * CHAIN_D,
            .n = CHAIN_N,
            .sample_numel = CHAIN_D,
        };
        sampler_step(&sm, i, &b);
        double d = max_abs_diff(prev, xs + (i + 1) * CHAIN_N * CHAIN_D, CHAIN_N * CHAIN_D);
        if (d > PARITY_ATOL) EXPECT(0, "%s step %zu (t=%lld): max |diff| %.3g", name, i, (long long)sm.timesteps[i], d);
        worst = fmax(worst, d);
    }
    /* The whole chain from x_T, with the noise from buffers. */
    float x[CHAIN_N * CHAIN_D];
    memcpy(x, xs, sizeof x);
    ReplayModel rm = {.outputs = model, .per_step = out_per_step};
    NoiseSource ns = noise_source_buffers(noise, CHAIN_MAX_STEPS, CHAIN_N * CHAIN_D);
    SamplerRun run = {.model = replay_model, .model_ctx = &rm, .noise = &ns};
    EXPECT(sampler_run(&sm, x, CHAIN_N, CHAIN_D, &run, &err) == 0, "%s", err.message);
    double whole = max_abs_diff(x, xs + steps * CHAIN_N * CHAIN_D, CHAIN_N * CHAIN_D);
    worst_whole_chain = fmax(worst_whole_chain, whole);
    EXPECT(whole <= 1e-4, "%s: the whole chain ends %.3g from diffusers'", name, whole);
    sampler_free(&sm);
done:
    free(ts), free(model), free(xs);
    return worst;
}

static void test_ddpm_chains_match_diffusers(void) {
    Fixture *fx = fixture_open("diffusion");
    float *noise = fixture_floats(fx, "chain.noise", CHAIN_MAX_STEPS * CHAIN_N * CHAIN_D);
    struct {
        const char *name;
        TimestepSpacing spacing;
        size_t offset, steps;
        VarianceType variance;
        BetaSchedule schedule;
        PredictionType pred;
        bool clip;
    } cases[] = {
        {"leading10", TIMESTEP_SPACING_LEADING, 0, 10, VARIANCE_FIXED_SMALL, BETA_SCHEDULE_LINEAR, PREDICTION_EPSILON, true},
        {"trailing10", TIMESTEP_SPACING_TRAILING, 0, 10, VARIANCE_FIXED_SMALL, BETA_SCHEDULE_LINEAR, PREDICTION_EPSILON, true},
        {"linspace10", TIMESTEP_SPACING_LINSPACE, 0, 10, VARIANCE_FIXED_SMALL, BETA_SCHEDULE_LINEAR, PREDICTION_EPSILON, true},
        {"leading50_offset1", TIMESTEP_SPACING_LEADING, 1, 50, VARIANCE_FIXED_LARGE, BETA_SCHEDULE_LINEAR,
         PREDICTION_EPSILON, true},
        {"cosine_v_learned25", TIMESTEP_SPACING_LEADING, 0, 25, VARIANCE_LEARNED_RANGE, BETA_SCHEDULE_SQUAREDCOS_CAP_V2,
         PREDICTION_V, false},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        SchedulerConfig cfg = scheduler_config_default(SAMPLER_DDPM);
        cfg.timestep_spacing = cases[k].spacing, cfg.steps_offset = cases[k].offset;
        cfg.variance_type = cases[k].variance, cfg.schedule.beta_schedule = cases[k].schedule;
        cfg.prediction_type = cases[k].pred, cfg.clip_sample = cases[k].clip;
        char name[128];
        snprintf(name, sizeof name, "ddpm_chain.%s", cases[k].name);
        double d = check_chain(fx, name, &cfg, (SamplerOptions){.num_inference_steps = cases[k].steps}, noise);
        worst_ddpm_chain = fmax(worst_ddpm_chain, d);
    }
    printf("  DDPM chains: max |diff| per step %.3g\n", worst_ddpm_chain);
    free(noise);
    fixture_close(fx);
}

static void test_ddim_chains_match_diffusers(void) {
    Fixture *fx = fixture_open("diffusion_ddim");
    float *noise = fixture_floats(fx, "chain.noise", CHAIN_MAX_STEPS * CHAIN_N * CHAIN_D);
    static const size_t STEPS[2] = {10, 50};
    int n_chains = 0;
    for (int si = 0; si < 2; si++) {
        size_t steps = STEPS[si];
        for (int sc = 0; sc < 3; sc++)
            for (int p = 0; p < 3; p++)
                for (int clip = 0; clip < 2; clip++) {
                    SchedulerConfig cfg = scheduler_config_default(SAMPLER_DDIM);
                    cfg.schedule.beta_schedule = (BetaSchedule)sc, cfg.prediction_type = (PredictionType)p;
                    cfg.clip_sample = clip;
                    char name[128];
                    snprintf(name, sizeof name, "ddim.%zu.%s.%s.clip%d", steps, SCHEDULES[sc], PREDICTIONS[p], clip);
                    worst_ddim[si] = fmax(worst_ddim[si], check_chain(fx, name, &cfg, (SamplerOptions){.num_inference_steps = steps}, noise));
                    n_chains++;
                }
        for (int v = 0; v < 6; v++) {
            SchedulerConfig cfg = scheduler_config_default(SAMPLER_DDIM);
            SamplerOptions opt = {.num_inference_steps = steps};
            const char *name = NULL;
            switch (v) {
            case 0:
                name = "trailing", cfg.timestep_spacing = TIMESTEP_SPACING_TRAILING;
                break;
            case 1:
                name = "linspace", cfg.timestep_spacing = TIMESTEP_SPACING_LINSPACE;
                break;
            case 2:
                name = "no_alpha_one_offset1", cfg.set_alpha_to_one = false, cfg.steps_offset = 1;
                break;
            case 3:
                name = "eta1", opt.eta = 1.0;
                break;
            case 4:
                name = "eta0.5_clipped_output", cfg.prediction_type = PREDICTION_V, opt.eta = 0.5;
                opt.use_clipped_model_output = true;
                break;
            default:
                name = "cosine_trailing_sample_noclip", cfg.schedule.beta_schedule = BETA_SCHEDULE_SQUAREDCOS_CAP_V2;
                cfg.timestep_spacing = TIMESTEP_SPACING_TRAILING, cfg.prediction_type = PREDICTION_SAMPLE;
                cfg.clip_sample = false;
                break;
            }
            char full[128];
            snprintf(full, sizeof full, "ddim.%zu.%s", steps, name);
            worst_ddim[si] = fmax(worst_ddim[si], check_chain(fx, full, &cfg, opt, noise));
            n_chains++;
        }
    }
    printf("  %d DDIM chains: max |diff| per step %.3g (10 steps), %.3g (50 steps)\n", n_chains, worst_ddim[0], worst_ddim[1]);
    free(noise);
    fixture_close(fx);
}

static void test_dpm_chains_match_diffusers(void) {
    Fixture *fx = fixture_open("diffusion_dpm");
    static const size_t STEPS[3] = {10, 25, 50};
    float zeros[CHAIN_MAX_STEPS * CHAIN_N * CHAIN_D] = {0};
    int n_chains = 0;
    for (int si = 0; si < 3; si++) {
        size_t steps = STEPS[si];
        for (int sc = 0; sc < 3; sc++)
            for (int p = 0; p < 3; p++) {
                if (steps == 25 && (sc != 0 || p != 0)) continue;
                SchedulerConfig cfg = scheduler_config_default(SAMPLER_DPM_SOLVER);
                cfg.schedule.beta_schedule = (BetaSchedule)sc, cfg.prediction_type = (PredictionType)p;
                char name[128];
                snprintf(name, sizeof name, "dpm.%zu.%s.%s", steps, SCHEDULES[sc], PREDICTIONS[p]);
                worst_dpm[si] = fmax(worst_dpm[si], check_chain(fx, name, &cfg, (SamplerOptions){.num_inference_steps = steps}, zeros));
                n_chains++;
            }
        for (int v = 0; v < 9; v++) {
            SchedulerConfig cfg = scheduler_config_default(SAMPLER_DPM_SOLVER);
            const char *name = NULL;
            switch (v) {
            case 0: name = "order1", cfg.solver_order = 1; break;
            case 1: name = "order3", cfg.solver_order = 3; break;
            case 2: name = "heun", cfg.solver_type = SOLVER_HEUN; break;
            case 3: name = "no_lower_order_final", cfg.lower_order_final = false; break;
            case 4: name = "sigma_min", cfg.final_sigmas_type = FINAL_SIGMAS_SIGMA_MIN; break;
            case 5:
                name = "sigma_min_euler_at_final", cfg.final_sigmas_type = FINAL_SIGMAS_SIGMA_MIN;
                cfg.euler_at_final = true;
                break;
            case 6: name = "leading", cfg.timestep_spacing = TIMESTEP_SPACING_LEADING; break;
            case 7: name = "trailing", cfg.timestep_spacing = TIMESTEP_SPACING_TRAILING; break;
            default: name = "learned_range", cfg.variance_type = VARIANCE_LEARNED_RANGE; break;
            }
            char full[128];
            snprintf(full, sizeof full, "dpm.%zu.%s", steps, name);
            worst_dpm[si] = fmax(worst_dpm[si], check_chain(fx, full, &cfg, (SamplerOptions){.num_inference_steps = steps}, zeros));
            n_chains++;
        }
    }
    printf("  %d DPM-Solver++ chains: max |diff| per step %.3g / %.3g / %.3g (10 / 25 / 50 steps)\n", n_chains,
           worst_dpm[0], worst_dpm[1], worst_dpm[2]);
    fixture_close(fx);
}

/* ------------------------------------------------------------------------------------------------ */
/* Properties */

static void test_ddpm_equals_eq11_without_clipping(void) {
    /* x_{t-1} = (x_t - β_t / √(1-ᾱ_t) ε̂) / √α_t + σ_t z  (Ho et al. eq. 11), σ² = β̃_t or β_t. */
    enum { D = 64 };
    float x[D], eps[D], z[D], out[D];
    fill_normal(x, D, 11);
    fill_normal(eps, D, 12);
    fill_normal(z, D, 13);
    for (int p = 0; p < 2; p++) {
        for (int large = 0; large < 2; large++) {
            SchedulerConfig cfg = scheduler_config_default(SAMPLER_DDPM);
            cfg.clip_sample = false;
            cfg.variance_type = large ? VARIANCE_FIXED_LARGE : VARIANCE_FIXED_SMALL;
            cfg.schedule.precision = p ? SCHEDULE_PRECISION_DOUBLE : SCHEDULE_PRECISION_DIFFUSERS;
            Schedule s;
            Error err;
            CHECK(schedule_init(&s, &cfg.schedule, &err) == 0, "%s", err.message);
            double worst = 0;
            for (int64_t t = 0; t < 1000; t++) {
                StepBuffers b = {.x_prev = out, .model_output = eps, .x_t = x, .noise = z, .n = 1, .sample_numel = D};
                ddpm_step(&b, &s, &cfg, t, t - 1);
                double beta = s.betas[t], alpha = s.alphas[t], ab = s.alphas_cumprod[t];
                double sigma = t == 0 ? 0 : sqrt(large ? beta : s.posterior_variance[t]);
                for (int j = 0; j < D; j++) {
                    double want = (x[j] - beta / sqrt(1 - ab) * eps[j]) / sqrt(alpha) + sigma * z[j];
                    worst = fmax(worst, fabs(out[j] - want));
                }
            }
            /* In double the two forms agree to float rounding. Under diffusers' precision the step uses
             * diffusers' float32 β_t = 1 - ᾱ_t / ᾱ_{t-1}, which cancels to ~6e-8 / β_t relative error (6e-4 at
             * t = 0), while eq. 11 here uses the exact β_t: that, not the algebra, is the difference. */
            double tol = p ? 1e-6 : 5e-4;
            EXPECT(worst < tol, "%s precision, %s: eq. 11 differs by %.3g", p ? "double" : "diffusers",
                   large ? "fixed_large" : "fixed_small", worst);
            printf("  eq. 11 vs posterior form (%s, %s): max |diff| %.3g over t = 0..999\n", p ? "double" : "diffusers",
                   large ? "fixed_large" : "fixed_small", worst);
            schedule_free(&s);
        }
    }
}

static void test_log_variances_equal_plain_ones(void) {
    enum { D = 32 };
    float x[D], m[D], z[D], a[D], b[D];
    fill_normal(x, D, 1), fill_normal(m, D, 2), fill_normal(z, D, 3);
    for (int pair = 0; pair < 2; pair++) {
        SchedulerConfig plain = scheduler_config_default(SAMPLER_DDPM), logv = plain;
        plain.variance_type = pair ? VARIANCE_FIXED_LARGE : VARIANCE_FIXED_SMALL;
        logv.variance_type = pair ? VARIANCE_FIXED_LARGE_LOG : VARIANCE_FIXED_SMALL_LOG;
        Schedule s;
        Error err;
        CHECK(schedule_init(&s, &plain.schedule, &err) == 0, "%s", err.message);
        double worst = 0;
        for (int64_t t = 1; t < 1000; t += 7) {
            StepBuffers ba = {.x_prev = a, .model_output = m, .x_t = x, .noise = z, .n = 1, .sample_numel = D};
            StepBuffers bb = ba;
            bb.x_prev = b;
            ddpm_step(&ba, &s, &plain, t, t - 1);
            ddpm_step(&bb, &s, &logv, t, t - 1);
            worst = fmax(worst, max_abs_diff(a, b, D));
        }
        EXPECT(worst < 1e-6, "%s differs from its log form by %.3g", pair ? "fixed_large" : "fixed_small", worst);
        schedule_free(&s);
    }
}

/* A per-sample deterministic stand-in model. */
static int toy_model(void *ctx, const float *x_t, const int64_t *t, size_t n, float *out, Error *err) {
    (void)err;
    size_t D = *(const size_t *)ctx;
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < D; j++) out[i * D + j] = 0.5f * x_t[i * D + j] + 1e-4f * (float)t[i];
    return 0;
}

static void run_batch(SamplerKind kind, float *x, size_t n, size_t D, size_t first_sample) {
    SchedulerConfig cfg = scheduler_config_default(kind);
    SamplerOptions opt = {.num_inference_steps = 20, .eta = 1.0};
    Sampler sm;
    Error err;
    CHECK(sampler_init(&sm, &cfg, &opt, &err) == 0, "%s", err.message);
    sampler_initial_noise(x, n, D, 99, first_sample);
    NoiseSource ns = noise_source_rng(99, first_sample);
    SamplerRun run = {.model = toy_model, .model_ctx = &D, .noise = &ns};
    EXPECT(sampler_run(&sm, x, n, D, &run, &err) == 0, "%s", err.message);
    sampler_free(&sm);
}

static void test_sampling_does_not_depend_on_batch_split(void) {
    enum { N = 4, D = 30 };
    for (int kind = 0; kind < 3; kind++) {
        float all[N * D], split[N * D];
        run_batch((SamplerKind)kind, all, N, D, 10);
        run_batch((SamplerKind)kind, split, 1, D, 10);
        run_batch((SamplerKind)kind, split + D, 3, D, 11);
        EXPECT(memcmp(all, split, sizeof all) == 0, "%s samples depend on the batch split",
               sampler_kind_name((SamplerKind)kind));
        expect_all_finite("samples", all, N * D);
    }
    /* One sampler reused for batches of different sizes (the DPM-Solver history is resized at step 0). */
    SchedulerConfig cfg = scheduler_config_default(SAMPLER_DPM_SOLVER);
    Sampler sm;
    Error err;
    CHECK(sampler_init(&sm, &cfg, &(SamplerOptions){.num_inference_steps = 20}, &err) == 0, "%s", err.message);
    size_t d = D;
    float again[N * D], want[N * D];
    run_batch(SAMPLER_DPM_SOLVER, want, N, D, 0);
    SamplerRun run = {.model = toy_model, .model_ctx = &d};
    sampler_initial_noise(again, 1, D, 99, 0);
    EXPECT(sampler_run(&sm, again, 1, D, &run, &err) == 0, "%s", err.message);
    sampler_initial_noise(again, N, D, 99, 0);
    EXPECT(sampler_run(&sm, again, N, D, &run, &err) == 0, "%s", err.message);
    EXPECT(memcmp(again, want, sizeof want) == 0, "a reused DPM-Solver sampler differs");
    sampler_free(&sm);
}

static int failing_model(void *ctx, const float *x_t, const int64_t *t, size_t n, float *out, Error *err) {
    (void)ctx, (void)x_t, (void)t, (void)n, (void)out;
    return error_set(err, "model.safetensors: out of luck");
}

static void call_steps_out_of_order(void *ctx) {
    Sampler *sm = ctx;
    float x[4] = {0}, m[4] = {0};
    StepBuffers b = {.x_prev = x, .model_output = m, .x_t = x, .n = 1, .sample_numel = 4};
    sampler_step(sm, 1, &b);
}

static void test_sampler_errors(void) {
    SchedulerConfig cfg = scheduler_config_default(SAMPLER_DDIM);
    Sampler sm;
    Error err;
    CHECK(sampler_init(&sm, &cfg, &(SamplerOptions){.num_inference_steps = 5}, &err) == 0, "%s", err.message);
    float x[8] = {0};
    SamplerRun run = {.model = failing_model};
    EXPECT(sampler_run(&sm, x, 2, 4, &run, &err) == -1 && contains(err.message, "sampling step 1 of 5 (timestep 800)") &&
               contains(err.message, "out of luck"),
           "%s", err.message);
    expect_check_failure("steps out of order", call_steps_out_of_order, &sm, "steps must go in order");
    sampler_free(&sm);
}

/* ------------------------------------------------------------------------------------------------ */
/* Sample quality with a known optimal model */

typedef struct GaussianModel {
    const Schedule *s;
    double mu, sd;
    size_t D;
} GaussianModel;

/* The exact ε-predictor for data x_0 ~ N(mu, sd²) per element: E[ε | x_t] = b (x_t - a mu) / (a² sd² + b²). */
static int gaussian_model(void *ctx, const float *x_t, const int64_t *t, size_t n, float *out, Error *err) {
    (void)err;
    GaussianModel *g = ctx;
    for (size_t i = 0; i < n; i++) {
        double ab = g->s->alphas_cumprod[t[i]], a = sqrt(ab), b = sqrt(1 - ab);
        double k = b / (ab * g->sd * g->sd + b * b);
        for (size_t j = 0; j < g->D; j++) out[i * g->D + j] = (float)(k * (x_t[i * g->D + j] - a * g->mu));
    }
    return 0;
}

/* Samples with the exact denoiser of x_0 ~ N(0.3, 1) per element (diffusers gives the same moments to
 * 3 digits): the probability-flow ODE maps x_T to the data exactly, so the sample's spread measures each
 * solver's discretisation error. Measured: DPM-Solver++(2M) 10 steps -5.3% in std, 25 steps -0.05%; DDIM
 * 10 steps -17%, 50 steps -3.6%; DDPM 1000 steps within sampling error. (Narrower data is harder for every
 * ODE solver: with std 0.5, DPM-Solver++ gives -19% at 10 steps and -2.5% at 25, as diffusers does.) */
static double sample_std_error(SamplerKind kind, size_t steps, double mu, double sd, double *mean_error) {
    enum { D = 20000 };
    float *x = alloc_floats(D);
    SchedulerConfig cfg = scheduler_config_default(kind);
    cfg.clip_sample = false;
    if (kind == SAMPLER_DDIM) cfg.timestep_spacing = TIMESTEP_SPACING_TRAILING;
    Sampler sm;
    Error err;
    CHECK(sampler_init(&sm, &cfg, &(SamplerOptions){.num_inference_steps = steps}, &err) == 0, "%s", err.message);
    GaussianModel g = {.s = &sm.schedule, .mu = mu, .sd = sd, .D = D};
    NoiseSource ns = noise_source_rng(5, 0);
    SamplerRun run = {.model = gaussian_model, .model_ctx = &g, .noise = &ns};
    sampler_initial_noise(x, 1, D, 5, 0);
    EXPECT(sampler_run(&sm, x, 1, D, &run, &err) == 0, "%s", err.message);
    double mean = 0, var = 0;
    for (size_t j = 0; j < D; j++) mean += x[j];
    mean /= D;
    for (size_t j = 0; j < D; j++) var += (x[j] - mean) * (x[j] - mean);
    double std = sqrt(var / (D - 1));
    printf("  %-10s %4zu steps: mean %.4f (data %.1f), std %.4f (data %.1f)\n", sampler_kind_name(kind), steps, mean, mu,
           std, sd);
    sampler_free(&sm);
    alloc_free(x);
    *mean_error = fabs(mean - mu);
    return fabs(std / sd - 1);
}

static void test_dpm_solver_reaches_the_data_distribution(void) {
    const double mu = 0.3, sd = 1.0;
    double m[5];
    double dpm10 = sample_std_error(SAMPLER_DPM_SOLVER, 10, mu, sd, &m[0]);
    double dpm25 = sample_std_error(SAMPLER_DPM_SOLVER, 25, mu, sd, &m[1]);
    double ddim10 = sample_std_error(SAMPLER_DDIM, 10, mu, sd, &m[2]);
    double ddim50 = sample_std_error(SAMPLER_DDIM, 50, mu, sd, &m[3]);
    double ddpm = sample_std_error(SAMPLER_DDPM, 1000, mu, sd, &m[4]);
    /* Sampling error alone: mean ± 0.02 and std ± 1.5% (3 standard errors for 20000 values). */
    for (int i = 0; i < 5; i++) EXPECT(m[i] < 0.025, "mean off by %.4f (run %d)", m[i], i);
    EXPECT(dpm10 < 0.07 && dpm25 < 0.015 && ddpm < 0.02, "std errors: DPM-Solver++ 10 steps %.3f, 25 steps %.3f, "
           "DDPM %.3f", dpm10, dpm25, ddpm);
    EXPECT(dpm10 < ddim10 && dpm25 < ddim50, "DPM-Solver++ (%.3f, %.3f) must beat DDIM (%.3f at 10, %.3f at 50 steps)",
           dpm10, dpm25, ddim10, ddim50);
}

static void print_summary(void) {
    printf("  parity summary (max |diff| vs diffusers per step): DDPM steps %.2g, DDPM chains %.2g, DDIM %.2g/%.2g "
           "(10/50), DPM-Solver++ %.2g/%.2g/%.2g (10/25/50); whole chains end within %.2g\n",
           worst_ddpm_step, worst_ddpm_chain, worst_ddim[0], worst_ddim[1], worst_dpm[0], worst_dpm[1], worst_dpm[2],
           worst_whole_chain);
}

int main(void) {
    RUN(test_ddpm_steps_match_diffusers);
    RUN(test_ddpm_chains_match_diffusers);
    RUN(test_ddim_chains_match_diffusers);
    RUN(test_dpm_chains_match_diffusers);
    RUN(test_ddpm_equals_eq11_without_clipping);
    RUN(test_log_variances_equal_plain_ones);
    RUN(test_sampling_does_not_depend_on_batch_split);
    RUN(test_sampler_errors);
    RUN(test_dpm_solver_reaches_the_data_distribution);
    print_summary();
    return harness_finish();
}
