/* DDIM, as diffusers' DDIMScheduler.step (Song et al. 2021, eq. 12 and 16):
 *   x̂_0 and ε̂ from the model output by prediction type:
 *     epsilon  x̂_0 = (x_t - √(1-ᾱ_t) ε̂) / √ᾱ_t
 *     sample   ε̂ = (x_t - √ᾱ_t x̂_0) / √(1-ᾱ_t)
 *     v        x̂_0 = √ᾱ_t x_t - √(1-ᾱ_t) v̂,  ε̂ = √ᾱ_t v̂ + √(1-ᾱ_t) x_t
 *   x̂_0 <- clamp(x̂_0, -r, r); with use_clipped_model_output ε̂ is re-derived from the clipped x̂_0
 *   σ = eta √((1-ᾱ_prev) / (1-ᾱ_t) · (1 - ᾱ_t / ᾱ_prev))
 *   x_prev = √ᾱ_prev x̂_0 + √(1 - ᾱ_prev - σ²) ε̂ + σ z
 * ᾱ_prev for a negative prev timestep is 1 (set_alpha_to_one) or ᾱ_0. The sampler passes
 * prev = t - T / n, diffusers' choice for every spacing.
 * Scalars follow diffusers' float32 operation order through schedule_round; elements are computed in
 * double and rounded once. */
#include <math.h>

#include "diffusion/sampler.h"
#include "diffusion/sampler_steps.h"

void ddim_step(const StepBuffers *b, const Schedule *s, const SchedulerConfig *cfg, int64_t t, int64_t prev_t,
               double eta, bool use_clipped_model_output) {
    CHECK(t >= 0 && (size_t)t < s->n_timesteps && prev_t < t, "step %lld -> %lld", (long long)t, (long long)prev_t);
    CHECK(eta >= 0, "eta %g", eta);
    int add_noise = eta > 0;
    CHECK(!add_noise || b->noise, "DDIM step with eta %g needs noise", eta);

#define R(x) schedule_round(s, (x))
    double a = s->alphas_cumprod[t];
    double ap = prev_t >= 0 ? s->alphas_cumprod[prev_t] : (cfg->set_alpha_to_one ? 1.0 : s->alphas_cumprod[0]);
    double beta_prod = R(1 - a);
    double sqrt_a = R(sqrt(a)), sqrt_beta_prod = R(sqrt(beta_prod));
    double variance = R(R(R(1 - ap) / beta_prod) * R(1 - R(a / ap)));
    double std = R(R(eta) * R(sqrt(variance)));
    double coef_eps = R(sqrt(R(R(1 - ap) - R(std * std))));
    double sqrt_ap = R(sqrt(ap));
#undef R
    const double range = cfg->clip_sample_range;
    const int clip = cfg->clip_sample;
    const PredictionType pred = cfg->prediction_type;
    const size_t D = b->sample_numel;
    for (size_t i = 0; i < b->n; i++) {
#pragma omp parallel for schedule(static) if (D > 65536)
        for (size_t j = 0; j < D; j++) {
            size_t k = i * D + j;
            double x = b->x_t[k], out = b->model_output[k];
            double x0, eps;
            switch (pred) {
            case PREDICTION_EPSILON:
                x0 = (x - sqrt_beta_prod * out) / sqrt_a;
                eps = out;
                break;
            case PREDICTION_SAMPLE:
                x0 = out;
                eps = (x - sqrt_a * x0) / sqrt_beta_prod;
                break;
            default:
                x0 = sqrt_a * x - sqrt_beta_prod * out;
                eps = sqrt_a * out + sqrt_beta_prod * x;
                break;
            }
            if (clip) x0 = step_clip(x0, range);
            if (use_clipped_model_output) eps = (x - sqrt_a * x0) / sqrt_beta_prod;
            double prev = sqrt_ap * x0 + coef_eps * eps;
            if (add_noise) prev += std * b->noise[k];
            if (b->pred_x0) b->pred_x0[k] = (float)x0;
            b->x_prev[k] = (float)prev;
        }
    }
}
