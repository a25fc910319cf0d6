/* The sampler common to the three families: timestep sequences computed with diffusers' exact numpy
 * arithmetic, noise sources, the step dispatcher and the sampling loop. The steps themselves live in
 * sampler_ddpm.c, sampler_ddim.c and sampler_dpm.c. */
#include "diffusion/sampler.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/rng.h"

/* ------------------------------------------------------------------------------------------------ */
/* Noise */

static void fill_from_rng(const NoiseSource *src, size_t step, size_t n, size_t sample_numel, float *out) {
#pragma omp parallel for schedule(static) if (rng_spread_samples(n, sample_numel))
    for (size_t i = 0; i < n; i++) {
        uint64_t stream = rng_stream(RNG_PURPOSE_SAMPLER_NOISE, step, src->first_sample + i);
        rng_fill_normal(out + i * sample_numel, sample_numel, src->seed, stream, 0);
    }
}

static void fill_from_buffers(const NoiseSource *src, size_t step, size_t n, size_t sample_numel, float *out) {
    CHECK(step < src->n_steps, "noise for step %zu requested, but only %zu steps were supplied", step, src->n_steps);
    CHECK(n * sample_numel <= src->step_numel, "noise for %zu values requested, but each step has %zu",
          n * sample_numel, src->step_numel);
    memcpy(out, src->buffers + step * src->step_numel, n * sample_numel * sizeof(float));
}

NoiseSource noise_source_rng(uint64_t seed, size_t first_sample) {
    return (NoiseSource){.fill = fill_from_rng, .seed = seed, .first_sample = first_sample};
}

NoiseSource noise_source_buffers(const float *buffers, size_t n_steps, size_t step_numel) {
    return (NoiseSource){.fill = fill_from_buffers, .buffers = buffers, .n_steps = n_steps, .step_numel = step_numel};
}

void sampler_initial_noise(float *x, size_t n, size_t sample_numel, uint64_t seed, size_t first_sample) {
#pragma omp parallel for schedule(static) if (rng_spread_samples(n, sample_numel))
    for (size_t i = 0; i < n; i++) {
        uint64_t stream = rng_stream(RNG_PURPOSE_SAMPLER_INIT, first_sample + i, 0);
        rng_fill_normal(x + i * sample_numel, sample_numel, seed, stream, 0);
    }
}

/* ------------------------------------------------------------------------------------------------ */
/* Timesteps, as numpy computes them in diffusers' set_timesteps */

/* np.linspace(0, stop, num)[i]: i * (stop / (num - 1)), the last point exactly stop. */
static double np_linspace_at(double stop, size_t num, size_t i) {
    if (num == 1) return 0;
    if (i == num - 1) return stop;
    return (double)i * (stop / (double)(num - 1));
}

/* np.arange(start, 0, -step) for start, step > 0: numpy takes ceil(start / step) values, the first two
 * start and start - step, then start + i * d with d the difference of those two (as numpy's fill does).
 * Returns the count; writes at most cap values. */
static size_t np_arange_down(double *out, size_t cap, double start, double step) {
    double len = ceil((0.0 - start) / -step);
    size_t n = len > 0 ? (size_t)len : 0;
    double second = start + -step, d = second - start;
    for (size_t i = 0; i < n && i < cap; i++) out[i] = i == 0 ? start : i == 1 ? second : start + (double)i * d;
    return n;
}

int sampler_timesteps(int64_t *out, SamplerKind kind, TimestepSpacing spacing, size_t num_train_timesteps,
                      size_t num_inference_steps, size_t steps_offset, Error *err) {
    size_t T = num_train_timesteps, n = num_inference_steps;
    if (n < 1) return error_set(err, "num_inference_steps must be at least 1");
    if (n > T) return error_set(err, "num_inference_steps %zu exceeds num_train_timesteps %zu", n, T);
    bool dpm = kind == SAMPLER_DPM_SOLVER;
    /* One more slot than needed lets a too-long sequence be detected. */
    double *v = xmalloc((n + 2) * sizeof(double));
    size_t count = n;
    switch (spacing) {
    case TIMESTEP_SPACING_LINSPACE:
        /* DDPM / DDIM: linspace(0, T-1, n) reversed. DPM-Solver: linspace(0, T-1, n+1) reversed, minus the
         * final 0. */
        for (size_t i = 0; i < n; i++)
            v[i] = dpm ? np_linspace_at((double)(T - 1), n + 1, n - i) : np_linspace_at((double)(T - 1), n, n - 1 - i);
        break;
    case TIMESTEP_SPACING_LEADING: {
        size_t ratio = dpm ? T / (n + 1) : T / n;
        for (size_t i = 0; i < n; i++) v[i] = (double)((dpm ? n - i : n - 1 - i) * ratio + steps_offset);
        break;
    }
    case TIMESTEP_SPACING_TRAILING:
        count = np_arange_down(v, n + 1, (double)T, (double)T / (double)n);
        for (size_t i = 0; i < count && i <= n; i++) v[i] = nearbyint(v[i]) - 1;
        break;
    default:
        free(v);
        return error_set(err, "invalid timestep_spacing %d (supported: leading, linspace, trailing)", (int)spacing);
    }
    const char *spacing_name = timestep_spacing_name(spacing);
    if (count != n) {
        free(v);
        return error_set(err,
                         "%s spacing gives %zu timesteps instead of %zu for num_inference_steps %zu "
                         "(diffusers' rounding); choose another number of steps or spacing",
                         spacing_name, count, n, n);
    }
    for (size_t i = 0; i < n; i++) {
        double t = nearbyint(v[i]); /* np.round: half to even */
        bool bad = !(t >= 0 && t < (double)T) || (i > 0 && t >= (double)out[i - 1]);
        if (bad) {
            free(v);
            return error_set(err,
                             "%s spacing with %zu of %zu steps (steps_offset %zu) gives diffusers a broken timestep "
                             "sequence (timestep %.0f at position %zu); choose another number of steps or spacing",
                             spacing_name, n, T, steps_offset, t, i);
        }
        out[i] = (int64_t)t;
    }
    free(v);
    return 0;
}

/* ------------------------------------------------------------------------------------------------ */
/* Sampler */

/* σ = √((1-ᾱ)/ᾱ) in diffusers' float32 operation order. */
static double dpm_sigma(const Schedule *s, double ab) {
    return schedule_round(s, sqrt(schedule_round(s, schedule_round(s, 1 - ab) / ab)));
}

int sampler_init(Sampler *sm, const SchedulerConfig *cfg, const SamplerOptions *opt, Error *err) {
    memset(sm, 0, sizeof *sm);
    if (scheduler_config_validate(cfg, err)) return -1;
    if (!(opt->eta >= 0) || !isfinite(opt->eta)) return error_set(err, "eta %g must be a finite number >= 0", opt->eta);
    bool learned = cfg->kind != SAMPLER_DDIM && cfg->variance_type == VARIANCE_LEARNED_RANGE;
    if (learned && opt->n_channels == 0)
        return error_set(err, "variance_type learned_range needs the number of channels of the samples (n_channels)");
    size_t T = cfg->schedule.num_train_timesteps, n = opt->num_inference_steps;
    if (n < 1) return error_set(err, "num_inference_steps must be at least 1");
    if (n > T) return error_set(err, "num_inference_steps %zu exceeds num_train_timesteps %zu", n, T);

    sm->config = *cfg;
    sm->config.owned_trained_betas = NULL;
    sm->options = *opt;
    if (schedule_init(&sm->schedule, &cfg->schedule, err)) return -1;
    /* The schedule holds its own copy of trained betas; the caller's array may go away. */
    sm->config.schedule.trained_betas = NULL;
    sm->config.schedule.n_trained_betas = 0;
    sm->n_steps = n;
    sm->timesteps = xmalloc(n * sizeof(int64_t));
    sm->prev_timesteps = xmalloc(n * sizeof(int64_t));
    if (sampler_timesteps(sm->timesteps, cfg->kind, cfg->timestep_spacing, T, n, cfg->steps_offset, err)) {
        sampler_free(sm);
        return -1;
    }
    const Schedule *s = &sm->schedule;
    for (size_t i = 0; i < n; i++) {
        if (cfg->kind == SAMPLER_DDIM) {
            /* DDIMScheduler steps back by T // n whatever the spacing (so trailing and linspace land between
             * the sequence's own timesteps); matched here, not corrected. */
            sm->prev_timesteps[i] = sm->timesteps[i] - (int64_t)(T / n);
        } else {
            sm->prev_timesteps[i] = i + 1 < n ? sm->timesteps[i + 1] : -1;
        }
    }
    if (cfg->kind == SAMPLER_DDIM && opt->eta > 0) {
        /* √(1 - ᾱ_prev - σ²) must exist: eta > 1 can exceed it. */
        for (size_t i = 0; i < n; i++) {
            int64_t t = sm->timesteps[i], p = sm->prev_timesteps[i];
            double a = s->alphas_cumprod[t];
            double ap = p >= 0 ? s->alphas_cumprod[p] : (cfg->set_alpha_to_one ? 1.0 : s->alphas_cumprod[0]);
            double var = (1 - ap) / (1 - a) * (1 - a / ap);
            if (1 - ap - opt->eta * opt->eta * var < 0) {
                int rc = error_set(err, "eta %g is too large: the DDIM noise variance exceeds 1 - alpha_cumprod at "
                                        "timestep %lld (use eta <= 1)", opt->eta, (long long)t);
                sampler_free(sm);
                return rc;
            }
        }
    }
    if (cfg->kind == SAMPLER_DPM_SOLVER) {
        sm->sigmas = xmalloc((n + 1) * sizeof(double));
        for (size_t i = 0; i < n; i++) sm->sigmas[i] = dpm_sigma(s, s->alphas_cumprod[sm->timesteps[i]]);
        sm->sigmas[n] = cfg->final_sigmas_type == FINAL_SIGMAS_ZERO ? 0.0 : dpm_sigma(s, s->alphas_cumprod[0]);
    }
    return 0;
}

void sampler_free(Sampler *sm) {
    schedule_free(&sm->schedule);
    free(sm->timesteps);
    free(sm->prev_timesteps);
    free(sm->sigmas);
    for (int k = 0; k < 3; k++) alloc_free(sm->history[k]);
    memset(sm, 0, sizeof *sm);
}

void sampler_reset(Sampler *sm) {
    sm->next_step = 0;
    sm->lower_order_nums = 0;
}

bool sampler_step_needs_noise(const Sampler *sm, size_t i) {
    CHECK(i < sm->n_steps, "step %zu of %zu", i, sm->n_steps);
    switch (sm->config.kind) {
    case SAMPLER_DDPM:
        return sm->timesteps[i] > 0;
    case SAMPLER_DDIM:
        return sm->options.eta > 0;
    case SAMPLER_DPM_SOLVER:
        return false;
    }
    CHECK(0, "invalid SamplerKind %d", (int)sm->config.kind);
    return false;
}

void sampler_step(Sampler *sm, size_t i, const StepBuffers *b) {
    CHECK(i < sm->n_steps, "step %zu of a %zu-step sampler", i, sm->n_steps);
    CHECK(i == sm->next_step, "sampler steps must go in order: step %zu requested, %zu expected (sampler_reset "
          "starts over)", i, sm->next_step);
    CHECK(b->x_prev && b->x_t && b->model_output && b->n > 0 && b->sample_numel > 0, "incomplete StepBuffers");
    CHECK(!sampler_step_needs_noise(sm, i) || b->noise, "step %zu needs noise", i);
    StepBuffers local = *b;
    if (local.n_channels == 0) local.n_channels = sm->options.n_channels;
    switch (sm->config.kind) {
    case SAMPLER_DDPM:
        ddpm_step(&local, &sm->schedule, &sm->config, sm->timesteps[i], sm->prev_timesteps[i]);
        break;
    case SAMPLER_DDIM:
        ddim_step(&local, &sm->schedule, &sm->config, sm->timesteps[i], sm->prev_timesteps[i], sm->options.eta,
                  sm->options.use_clipped_model_output);
        break;
    case SAMPLER_DPM_SOLVER:
        dpm_solver_step(sm, i, &local);
        break;
    }
    sm->next_step = i + 1;
}

int sampler_run(Sampler *sm, float *x, size_t n, size_t sample_numel, const SamplerRun *run, Error *err) {
    CHECK(run && run->model, "sampler_run needs a model callback");
    bool learned = sm->config.kind != SAMPLER_DDIM && sm->config.variance_type == VARIANCE_LEARNED_RANGE;
    size_t total = n * sample_numel;
    float *model_out = alloc_floats(total * (learned ? 2 : 1));
    float *noise = alloc_floats(total);
    int64_t *t = xmalloc(n * sizeof(int64_t));
    int rc = 0;
    sampler_reset(sm);
    for (size_t i = 0; i < sm->n_steps; i++) {
        for (size_t k = 0; k < n; k++) t[k] = sm->timesteps[i];
        if (run->model(run->model_ctx, x, t, n, model_out, err)) {
            rc = error_prefix(err, "sampling step %zu of %zu (timestep %lld)", i + 1, sm->n_steps,
                              (long long)sm->timesteps[i]);
            break;
        }
        bool needs_noise = sampler_step_needs_noise(sm, i);
        if (needs_noise) {
            CHECK(run->noise && run->noise->fill, "step %zu needs a noise source", i);
            run->noise->fill(run->noise, i, n, sample_numel, noise);
        }
        StepBuffers b = {
            .x_prev = x,
            .model_output = model_out,
            .x_t = x,
            .noise = needs_noise ? noise : NULL,
            .n = n,
            .sample_numel = sample_numel,
            .n_channels = sm->options.n_channels,
        };
        sampler_step(sm, i, &b);
        if (run->on_step) run->on_step(run->on_step_ctx, i, sm->n_steps);
    }
    alloc_free(model_out);
    alloc_free(noise);
    free(t);
    return rc;
}
