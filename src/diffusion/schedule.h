/* The β schedule of a DDPM forward process and every table derived from it (Ho et al. 2020, eq. 4-7):
 *   α_t = 1 - β_t,   ᾱ_t = Π_{s<=t} α_s,   q(x_t | x_0) = N(√ᾱ_t x_0, (1 - ᾱ_t) I)
 *   posterior q(x_{t-1} | x_t, x_0) = N(c1_t x_0 + c2_t x_t, β̃_t I) with
 *   c1_t = β_t √ᾱ_{t-1} / (1 - ᾱ_t),  c2_t = (1 - ᾱ_{t-1}) √α_t / (1 - ᾱ_t),
 *   β̃_t = β_t (1 - ᾱ_{t-1}) / (1 - ᾱ_t)
 * Timesteps are 0-based as in diffusers: t = 0 .. T-1, and ᾱ_{-1} = 1.
 *
 * Schedules: linear (β from beta_start to beta_end), scaled_linear (√β linear, latent diffusion),
 * squaredcos_cap_v2 (Nichol & Dhariwal's cosine ᾱ with s = 0.008, β capped at 0.999), or explicit betas
 * (diffusers' trained_betas).
 *
 * Precision. Every table is computed in double. diffusers, though, stores betas, alphas and alphas_cumprod
 * as float32 tensors and computes each step's scalar coefficients in float32; at the far ends of a schedule
 * (ᾱ_999 = 2.4e-9 for the cosine schedule, x̂_0 = (x_t - √(1-ᾱ) ε) / √ᾱ amplifying by 2e4) those roundings
 * move a step's output by up to 5e-5. SCHEDULE_PRECISION_DIFFUSERS (the default) therefore rounds the
 * three stored tables to float exactly where diffusers does (β and α per element, ᾱ as a double running
 * product rounded per element, as torch.cumprod does on the CPU), and schedule_round() lets each sampler
 * round its scalar coefficients after every operation in diffusers' order; the elementwise arithmetic stays
 * in double. With that, steps match diffusers within 1e-6. SCHEDULE_PRECISION_DOUBLE keeps everything in
 * double (ᾱ differs from diffusers' by up to 1e-5 relative for the cosine schedule). The derived tables
 * (posterior coefficients, log variances) are always double, computed from the stored ᾱ. */
#ifndef DIFFUSE_SCHEDULE_H
#define DIFFUSE_SCHEDULE_H

#include <stddef.h>

#include "core/error.h"

typedef enum BetaSchedule {
    BETA_SCHEDULE_LINEAR,
    BETA_SCHEDULE_SCALED_LINEAR,
    BETA_SCHEDULE_SQUAREDCOS_CAP_V2,
} BetaSchedule;

typedef enum SchedulePrecision {
    SCHEDULE_PRECISION_DIFFUSERS, /* tables and step coefficients rounded to float where diffusers rounds */
    SCHEDULE_PRECISION_DOUBLE,    /* no rounding */
} SchedulePrecision;

/* More timesteps than any schedule in use (diffusers' largest are 4000); a bound on table sizes. */
#define SCHEDULE_MAX_TIMESTEPS 1000000

typedef struct ScheduleConfig {
    size_t num_train_timesteps; /* T, 1 .. SCHEDULE_MAX_TIMESTEPS */
    double beta_start, beta_end;
    BetaSchedule beta_schedule;
    /* diffusers' trained_betas: when not NULL, T explicit betas that replace beta_schedule (the array is
     * copied by schedule_init; num_train_timesteps must equal n_trained_betas). */
    const double *trained_betas;
    size_t n_trained_betas;
    SchedulePrecision precision;
} ScheduleConfig;

/* diffusers' defaults: T = 1000, linear 1e-4 -> 0.02, diffusers precision. */
ScheduleConfig schedule_config_default(void);

const char *beta_schedule_name(BetaSchedule s);
/* -1 with "unknown beta_schedule 'foo' (supported: linear, scaled_linear, squaredcos_cap_v2)". */
int beta_schedule_from_name(const char *name, BetaSchedule *out, Error *err);

typedef struct Schedule {
    size_t n_timesteps; /* T */
    SchedulePrecision precision;
    double *betas;                          /* β_t */
    double *alphas;                         /* α_t = 1 - β_t */
    double *alphas_cumprod;                 /* ᾱ_t */
    double *alphas_cumprod_prev;            /* ᾱ_{t-1}, 1 at t = 0 */
    double *sqrt_alphas_cumprod;            /* √ᾱ_t */
    double *sqrt_one_minus_alphas_cumprod;  /* √(1 - ᾱ_t) */
    double *posterior_variance;             /* β̃_t (0 at t = 0) */
    double *posterior_log_variance_clipped; /* log β̃_t, with β̃_1 in place of β̃_0 = 0 */
    double *posterior_mean_coef1;           /* c1_t: weight of x_0 */
    double *posterior_mean_coef2;           /* c2_t: weight of x_t */
} Schedule;

/* Builds the tables. Returns -1 with an Error for an invalid configuration (T = 0, a β outside (0, 1),
 * a trained_betas length that differs from T). */
int schedule_init(Schedule *s, const ScheduleConfig *cfg, Error *err);
void schedule_free(Schedule *s);

/* x rounded to float under SCHEDULE_PRECISION_DIFFUSERS, x itself under SCHEDULE_PRECISION_DOUBLE. A
 * float32 operation on float operands equals the double result rounded once to float (for + - * / and
 * sqrt), so wrapping each scalar operation in schedule_round reproduces diffusers' coefficients exactly. */
double schedule_round(const Schedule *s, double x);

#endif
