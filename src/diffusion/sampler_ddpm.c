/* DDPM ancestral sampling, as diffusers' DDPMScheduler.step (Ho et al. 2020):
 *   x̂_0 = (x_t - √(1-ᾱ_t) ε̂) / √ᾱ_t   (eq. 15; or the model's x_0, or √ᾱ_t x_t - √(1-ᾱ_t) v̂)
 *   x̂_0 <- clamp(x̂_0, -r, r)          (clip_sample)
 *   μ = √ᾱ_prev β_t / (1-ᾱ_t) x̂_0 + √α_t (1-ᾱ_prev) / (1-ᾱ_t) x_t   (posterior mean, eq. 7)
 *   x_prev = μ + σ z  for t > 0
 * with α_t = ᾱ_t / ᾱ_prev and β_t = 1 - α_t over the step t -> prev (so fewer inference steps than T work
 * as in diffusers). Without clipping this equals eq. 11, x_prev = (x_t - β_t / √(1-ᾱ_t) ε̂) / √α_t + σ z
 * (tests/test_diffusion_samplers.c checks it).
 *
 * σ by variance type: fixed_small √β̃ (β̃ = (1-ᾱ_prev) / (1-ᾱ_t) β_t, clamped at 1e-20), fixed_small_log
 * exp(½ log β̃) (the same value through a logarithm), fixed_large √β_t, learned_range
 * exp(½ (f log β_t + (1-f) log β̃)) with f = (v + 1) / 2 from the model's extra channels.
 * fixed_large_log: diffusers' step takes the square root of log β_t, which is negative, and returns NaN for
 * every t > 0; diffuse uses what the name (GLIDE's max_log) means, σ = exp(½ log β_t) = √β_t.
 *
 * Scalars follow diffusers' float32 operation order through schedule_round; elements are computed in
 * double and rounded once. */
#include <math.h>

#include "diffusion/sampler.h"
#include "diffusion/sampler_steps.h"

double ddpm_step_variance(const Schedule *s, VarianceType v, int64_t t, int64_t prev_t) {
    CHECK(t >= 0 && (size_t)t < s->n_timesteps && prev_t < t, "step %lld -> %lld", (long long)t, (long long)prev_t);
#define R(x) schedule_round(s, (x))
    double a = s->alphas_cumprod[t];
    double ap = prev_t >= 0 ? s->alphas_cumprod[prev_t] : 1.0;
    double current_beta = R(1 - R(a / ap));
    double variance = R(R(R(1 - ap) / R(1 - a)) * current_beta);
    variance = fmax(variance, R(1e-20));
#undef R
    switch (v) {
    case VARIANCE_FIXED_SMALL:
    case VARIANCE_FIXED_SMALL_LOG:
        return variance;
    case VARIANCE_FIXED_LARGE:
    case VARIANCE_FIXED_LARGE_LOG:
        return current_beta;
    case VARIANCE_LEARNED_RANGE:
        break;
    }
    CHECK(0, "ddpm_step_variance: variance type %d has no fixed value", (int)v);
    return 0;
}

void ddpm_step(const StepBuffers *b, const Schedule *s, const SchedulerConfig *cfg, int64_t t, int64_t prev_t) {
    CHECK(t >= 0 && (size_t)t < s->n_timesteps && prev_t < t, "step %lld -> %lld", (long long)t, (long long)prev_t);
    int learned = cfg->variance_type == VARIANCE_LEARNED_RANGE;
    CHECK(!learned || (b->n_channels > 0 && b->sample_numel % b->n_channels == 0),
          "learned_range: sample_numel %zu is not a multiple of n_channels %zu", b->sample_numel, b->n_channels);
    int add_noise = t > 0;
    CHECK(!add_noise || b->noise, "DDPM step at t = %lld needs noise", (long long)t);

#define R(x) schedule_round(s, (x))
    double a = s->alphas_cumprod[t];
    double ap = prev_t >= 0 ? s->alphas_cumprod[prev_t] : 1.0;
    double beta_prod = R(1 - a), beta_prod_prev = R(1 - ap);
    double current_alpha = R(a / ap), current_beta = R(1 - current_alpha);
    double sqrt_a = R(sqrt(a)), sqrt_beta_prod = R(sqrt(beta_prod));
    double coef_x0 = R(R(R(sqrt(ap)) * current_beta) / beta_prod);
    double coef_xt = R(R(R(sqrt(current_alpha)) * beta_prod_prev) / beta_prod);
    double std = 0, min_log = 0, max_log = 0;
    if (add_noise) {
        double variance = ddpm_step_variance(s, learned ? VARIANCE_FIXED_SMALL : cfg->variance_type, t, prev_t);
        switch (cfg->variance_type) {
        case VARIANCE_FIXED_SMALL:
            std = R(sqrt(variance));
            break;
        case VARIANCE_FIXED_SMALL_LOG:
            std = R(exp(R(0.5 * R(log(variance)))));
            break;
        case VARIANCE_FIXED_LARGE:
            std = R(sqrt(variance));
            break;
        case VARIANCE_FIXED_LARGE_LOG:
            std = R(exp(R(0.5 * R(log(variance)))));
            break;
        case VARIANCE_LEARNED_RANGE:
            min_log = R(log(variance));
            max_log = R(log(current_beta));
            break;
        }
    }
#undef R
    const double range = cfg->clip_sample_range;
    const int clip = cfg->clip_sample;
    const PredictionType pred = cfg->prediction_type;
    const size_t D = b->sample_numel;
    for (size_t i = 0; i < b->n; i++) {
#pragma omp parallel for schedule(static) if (D > 65536)
        for (size_t j = 0; j < D; j++) {
            size_t k = i * D + j, m = step_model_index(b, learned, i, j);
            double x = b->x_t[k], out = b->model_output[m];
            double x0 = pred == PREDICTION_EPSILON ? (x - sqrt_beta_prod * out) / sqrt_a
                        : pred == PREDICTION_SAMPLE ? out
                                                    : sqrt_a * x - sqrt_beta_prod * out;
            if (clip) x0 = step_clip(x0, range);
            double mean = coef_x0 * x0 + coef_xt * x;
            if (add_noise) {
                double sigma = std;
                if (learned) {
                    double frac = ((double)b->model_output[m + b->n_channels] + 1) / 2;
                    sigma = exp(0.5 * (frac * max_log + (1 - frac) * min_log));
                }
                mean += sigma * b->noise[k];
            }
            if (b->pred_x0) b->pred_x0[k] = (float)x0;
            b->x_prev[k] = (float)mean;
        }
    }
}
