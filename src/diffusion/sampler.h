/* Samplers: from x_T ~ N(0, I) to x_0 by repeated steps of a diffusers scheduler, with the model as a
 * callback. DDPM ancestral (DDPMScheduler.step), DDIM (DDIMScheduler.step) and DPM-Solver++ multistep
 * (DPMSolverMultistepScheduler.step), each for the three prediction types and matching diffusers' step
 * outputs within 1e-5 for the same model outputs and noise (tests/test_diffusion_samplers.c).
 *
 * Buffers hold n samples of sample_numel floats each in the caller's layout (channels-last images for the
 * U-Net); every step is elementwise per sample, except that VARIANCE_LEARNED_RANGE reads a model output of
 * 2C channels per position, channels-last: C mean channels, then C variance channels.
 *
 * Noise. A NoiseSource supplies the standard normal noise of each stochastic step: from the counter-based
 * generator keyed by (seed, step index, global sample index), so a sample's trajectory does not depend on
 * the batch it was drawn in, or from explicit buffers (tests, and the CLI's --noise FILE, inject diffusers'
 * exact noise), or from the caller's own function. */
#ifndef DIFFUSE_SAMPLER_H
#define DIFFUSE_SAMPLER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "diffusion/schedule.h"
#include "diffusion/scheduler_config.h"

/* The model: out = model(x_t, t) for n samples (out has sample_numel values per sample, twice that with
 * VARIANCE_LEARNED_RANGE). timesteps holds one value per sample. Returns 0, or -1 with an Error. */
typedef int (*DiffusionModelFn)(void *ctx, const float *x_t, const int64_t *timesteps, size_t n, float *out,
                                Error *err);

/* ---- noise ---- */
typedef struct NoiseSource NoiseSource;
/* Writes n * sample_numel standard normal values: the noise of sampler step `step` for the batch. */
typedef void (*NoiseFillFn)(const NoiseSource *src, size_t step, size_t n, size_t sample_numel, float *out);
struct NoiseSource {
    NoiseFillFn fill;
    uint64_t seed;            /* noise_source_rng */
    size_t first_sample;      /* noise_source_rng: global index of the batch's first sample */
    const float *buffers;     /* noise_source_buffers: step k at buffers + k * step_numel */
    size_t n_steps, step_numel;
    void *ctx;                /* free for a caller's own fill function */
};
NoiseSource noise_source_rng(uint64_t seed, size_t first_sample);
/* The noise of step k is buffers[k * step_numel ...]; a step beyond n_steps or a batch larger than
 * step_numel is a CHECK failure. */
NoiseSource noise_source_buffers(const float *buffers, size_t n_steps, size_t step_numel);
/* x_T ~ N(0, I) for the batch, keyed by (seed, global sample index) like noise_source_rng. */
void sampler_initial_noise(float *x, size_t n, size_t sample_numel, uint64_t seed, size_t first_sample);

/* ---- one step of each family, pure functions of their arguments ---- */
typedef struct StepBuffers {
    float *x_prev;             /* out: the sample at the previous timestep; may alias x_t */
    float *pred_x0;            /* out, optional (NULL): the predicted x_0 after clipping */
    const float *model_output; /* n * sample_numel, or 2x with VARIANCE_LEARNED_RANGE */
    const float *x_t;
    const float *noise;        /* n * sample_numel standard normal; may be NULL where the step draws none */
    size_t n, sample_numel;
    size_t n_channels;         /* C, for VARIANCE_LEARNED_RANGE only */
} StepBuffers;

/* The variance DDPMScheduler._get_variance gives for a fixed variance type at t (prev_t = -1 for the last
 * step): VARIANCE_FIXED_SMALL / _LOG β̃ clamped at 1e-20, VARIANCE_FIXED_LARGE / _LOG β (of the step
 * t -> prev_t, 1 - ᾱ_t / ᾱ_prev). Rounded as diffusers rounds it. */
double ddpm_step_variance(const Schedule *s, VarianceType v, int64_t t, int64_t prev_t);
/* DDPMScheduler.step from t to prev_t: x̂_0 from the model output, optional clip, posterior mean
 * (eq. 7), plus σ z when t > 0. */
void ddpm_step(const StepBuffers *b, const Schedule *s, const SchedulerConfig *cfg, int64_t t, int64_t prev_t);
/* DDIMScheduler.step from t to prev_t (eq. 12 of Song et al.), σ = eta · √variance; the noise is used only
 * when eta > 0. */
void ddim_step(const StepBuffers *b, const Schedule *s, const SchedulerConfig *cfg, int64_t t, int64_t prev_t,
               double eta, bool use_clipped_model_output);

/* ---- a sampler: a schedule, its timesteps and the multistep state ---- */
typedef struct SamplerOptions {
    size_t num_inference_steps;    /* 1 .. T */
    double eta;                    /* DDIM: 0 deterministic .. 1 DDPM-like; >= 0 */
    bool use_clipped_model_output; /* DDIM */
    size_t n_channels;             /* C of the samples, needed with VARIANCE_LEARNED_RANGE */
} SamplerOptions;

typedef struct Sampler {
    SchedulerConfig config; /* without trained_betas: the schedule holds its own copy of them */
    SamplerOptions options;
    Schedule schedule;
    size_t n_steps;
    int64_t *timesteps;      /* n_steps, decreasing: the model is called at these */
    int64_t *prev_timesteps; /* n_steps: where each DDPM / DDIM step lands, -1 for x_0 */
    double *sigmas;          /* DPM-Solver: n_steps + 1 values of √((1-ᾱ)/ᾱ), the last the final σ */
    /* DPM-Solver history: the converted (x_0) model outputs of the last solver_order steps, newest last. */
    float *history[3];
    size_t history_numel;
    int lower_order_nums;
    size_t next_step;
} Sampler;

/* Builds the schedule and the timesteps exactly as the diffusers class's set_timesteps does. Invalid
 * options (steps < 1 or > T, eta < 0, a spacing that gives diffusers a broken sequence for this many steps,
 * an unsupported option combination) return -1 with an Error. */
int sampler_init(Sampler *sm, const SchedulerConfig *cfg, const SamplerOptions *opt, Error *err);
void sampler_free(Sampler *sm);
/* Forgets the multistep history: the next step is step 0 again. */
void sampler_reset(Sampler *sm);
/* Whether step i draws noise (DDPM at t > 0, DDIM with eta > 0). */
bool sampler_step_needs_noise(const Sampler *sm, size_t i);
/* Step i (steps go in order 0 .. n_steps-1; CHECKed) from x_t at timesteps[i], using b->model_output
 * computed at that timestep. */
void sampler_step(Sampler *sm, size_t i, const StepBuffers *b);

/* The whole chain: x holds x_T on entry (e.g. from sampler_initial_noise) and x_0 on return.
 * on_step, when not NULL, is called after each step (progress display). */
typedef struct SamplerRun {
    DiffusionModelFn model;
    void *model_ctx;
    const NoiseSource *noise;
    void (*on_step)(void *ctx, size_t step, size_t n_steps);
    void *on_step_ctx;
} SamplerRun;
int sampler_run(Sampler *sm, float *x, size_t n, size_t sample_numel, const SamplerRun *run, Error *err);

/* The timesteps of a spacing as the diffusers class's set_timesteps computes them: num_inference_steps
 * values written to out. -1 with an Error when steps < 1 or > T, or when diffusers' arithmetic gives a
 * broken sequence (a negative, repeated or out-of-range timestep, or one too many: trailing spacing with
 * 61 of 1000 steps, DPM-Solver with as many steps as T). */
int sampler_timesteps(int64_t *out, SamplerKind kind, TimestepSpacing spacing, size_t num_train_timesteps,
                      size_t num_inference_steps, size_t steps_offset, Error *err);

/* DPM-Solver++ step i (sampler_dpm.c); sampler_step dispatches here. */
void dpm_solver_step(Sampler *sm, size_t i, const StepBuffers *b);

#endif
