/* A diffusers scheduler configuration: the options of DDPMScheduler, DDIMScheduler and
 * DPMSolverMultistepScheduler that diffuse implements, and scheduler_config.json read and written in
 * diffusers' own format (sorted keys, two-space indent, Python's float spelling), so a run folder's
 * scheduler/ loads in diffusers unchanged and diffusers' files load here.
 *
 * One struct serves the three classes, as diffusers' from_config lets one class load another's config
 * (DDIMScheduler.from_config(ddpm_config)): scheduler_config_read_as reads a file for another sampler.
 * Options diffusers has that diffuse does not implement (thresholding, rescale_betas_zero_snr, Karras and
 * other sigma spacings, the dpmsolver / sde algorithm types, "learned" variance) are rejected when a file
 * sets them to anything but their defaults, with a message listing what is supported. */
#ifndef DIFFUSE_SCHEDULER_CONFIG_H
#define DIFFUSE_SCHEDULER_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

#include "core/error.h"
#include "diffusion/objective.h"
#include "diffusion/schedule.h"

/* The diffusers version whose scheduler formulas and config format these files follow. */
#define SCHEDULER_CONFIG_DIFFUSERS_VERSION "0.42.1"

typedef enum SamplerKind {
    SAMPLER_DDPM,       /* DDPMScheduler: ancestral sampling */
    SAMPLER_DDIM,       /* DDIMScheduler */
    SAMPLER_DPM_SOLVER, /* DPMSolverMultistepScheduler, algorithm dpmsolver++ */
} SamplerKind;

typedef enum TimestepSpacing {
    TIMESTEP_SPACING_LEADING,
    TIMESTEP_SPACING_LINSPACE,
    TIMESTEP_SPACING_TRAILING,
} TimestepSpacing;

typedef enum VarianceType {
    VARIANCE_FIXED_SMALL,     /* β̃_t, the posterior variance */
    VARIANCE_FIXED_SMALL_LOG, /* β̃_t through its logarithm (diffusers' rl-diffuser variant; same value) */
    VARIANCE_FIXED_LARGE,     /* β_t */
    VARIANCE_FIXED_LARGE_LOG, /* β_t through its logarithm (GLIDE's max_log; see sampler_ddpm.c) */
    VARIANCE_LEARNED_RANGE,   /* model output has 2C channels; the second C interpolate log β̃_t .. log β_t */
} VarianceType;

typedef enum SolverType {
    SOLVER_MIDPOINT,
    SOLVER_HEUN,
} SolverType;

typedef enum FinalSigmas {
    FINAL_SIGMAS_ZERO,      /* the last step lands on σ = 0: it returns the predicted x_0 */
    FINAL_SIGMAS_SIGMA_MIN, /* the last step lands on σ of t = 0 */
} FinalSigmas;

typedef struct SchedulerConfig {
    SamplerKind kind;
    ScheduleConfig schedule; /* num_train_timesteps, beta_start, beta_end, beta_schedule, trained_betas */
    PredictionType prediction_type;
    TimestepSpacing timestep_spacing;
    size_t steps_offset;
    /* DDPM and DDIM: clamp the predicted x_0 to [-clip_sample_range, clip_sample_range]. */
    bool clip_sample;
    double clip_sample_range;
    /* DDPM. For DPM-Solver, VARIANCE_LEARNED_RANGE means the model output carries C extra variance
     * channels, which the solver drops (diffusers' variance_type "learned_range"); any other value means
     * none (diffusers' null). */
    VarianceType variance_type;
    /* DDIM: ᾱ after the last step is 1 (true) or ᾱ_0 (false). */
    bool set_alpha_to_one;
    /* DPM-Solver++ (multistep). */
    int solver_order; /* 1, 2 or 3 */
    SolverType solver_type;
    bool lower_order_final; /* first/second order for the last steps when there are fewer than 15 */
    bool euler_at_final;    /* first order for the last step */
    FinalSigmas final_sigmas_type;
    /* Storage of schedule.trained_betas when the config was read from a file (freed by
     * scheduler_config_free); NULL otherwise. */
    double *owned_trained_betas;
} SchedulerConfig;

/* diffusers' defaults for the class (DDPM and DDIM: leading spacing, clip_sample true; DPM-Solver:
 * linspace spacing, order 2, midpoint, lower_order_final, final σ zero). */
SchedulerConfig scheduler_config_default(SamplerKind kind);
void scheduler_config_free(SchedulerConfig *cfg);

/* Checks every field; -1 with a message naming the field and what is supported. */
int scheduler_config_validate(const SchedulerConfig *cfg, Error *err);

/* Names: the short ones the CLI takes ("ddpm", "ddim", "dpm++"; also "dpm-solver") and diffusers' class names. */
const char *sampler_kind_name(SamplerKind k);
int sampler_kind_from_name(const char *name, SamplerKind *out, Error *err);
const char *sampler_kind_class_name(SamplerKind k);
int sampler_kind_from_class_name(const char *class_name, SamplerKind *out, Error *err);
/* diffusers' spellings: "leading" / "linspace" / "trailing", "fixed_small" ..., "midpoint" / "heun",
 * "zero" / "sigma_min". */
const char *timestep_spacing_name(TimestepSpacing s);
int timestep_spacing_from_name(const char *name, TimestepSpacing *out, Error *err);
const char *variance_type_name(VarianceType v);
int variance_type_from_name(const char *name, VarianceType *out, Error *err);
const char *solver_type_name(SolverType s);
int solver_type_from_name(const char *name, SolverType *out, Error *err);
const char *final_sigmas_name(FinalSigmas f);
int final_sigmas_from_name(const char *name, FinalSigmas *out, Error *err);

/* Parses the JSON text of a scheduler_config.json (`what` names it in messages, e.g. the path). The class
 * comes from _class_name. On success the caller owns cfg (scheduler_config_free); on failure cfg holds
 * nothing to free. */
int scheduler_config_parse(SchedulerConfig *cfg, const char *json, const char *what, Error *err);
int scheduler_config_read(SchedulerConfig *cfg, const char *path, Error *err);
/* A config of any of the three classes read for sampler `kind`, as diffusers' Kind.from_config(config)
 * does with the dict of that file: an option the file sets and the class knows keeps its value, every
 * other option takes the class's default. So DPMSolverMultistepScheduler from a saved DDPMScheduler config
 * keeps its timestep_spacing ("leading"), but from a file without that key gets its own "linspace". The
 * variance_type carries to DDPM and, as learned / learned_range only, to DPM-Solver (a DDPM fixed variance
 * means no variance channels there); DDIM has none. */
int scheduler_config_parse_as(SchedulerConfig *cfg, const char *json, SamplerKind kind, const char *what,
                              Error *err);
int scheduler_config_read_as(SchedulerConfig *cfg, const char *path, SamplerKind kind, Error *err);
/* The JSON text diffusers' save_config writes for this config (malloc'ed, ends with a newline). */
char *scheduler_config_to_json(const SchedulerConfig *cfg);
/* Writes the file atomically. */
int scheduler_config_write(const SchedulerConfig *cfg, const char *path, Error *err);

#endif
