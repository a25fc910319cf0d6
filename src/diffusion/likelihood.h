/* The variational bound on the negative log-likelihood, in bits per dimension (Ho et al. 2020, eq. 5;
 * the terms as Nichol & Dhariwal's improved-diffusion computes them):
 *   L = L_T + Σ_{t=1}^{T-1} L_t + L_0                                     (0-based t: 0 .. T-1)
 *   L_T (prior)   = KL(q(x_T | x_0) ‖ N(0, I))
 *   L_t (t >= 1)  = KL(q(x_{t-1} | x_t, x_0) ‖ p(x_{t-1} | x_t)),  x_t = q_sample(x_0, t, ε)
 *   L_0 (decoder) = -log p(x_0 | x_1): the Gaussian p(x_{-1} | x_0) integrated over x_0's 8-bit bin of
 *                   width 2/255 on [-1, 1], the outer bins extended to ±∞
 * p's mean is the posterior mean at the model's x̂_0 (clipped to [-1, 1] with clip_denoised); its variance
 * is fixed (fixed_small: β̃_t, with β̃_1 at t = 0; fixed_large: β_t, with β̃_1 at t = 0) or learned
 * (learned_range: exp(f log β_t + (1-f) log β̃_t) with f = (v+1)/2 from the model's extra channels).
 * bits/dim = nats / (D ln 2), D = sample_numel. Terms are computed per element in double; the normal CDF is
 * the exact one (erfc), where the DDPM and improved-diffusion code use a tanh approximation (a difference of
 * about 1e-3 bits/dim); bin probabilities are floored at 1e-12 as in that code.
 *
 * likelihood_bpd evaluates L exactly over all T timesteps (T model calls per batch), or estimates it from
 * K uniformly drawn timesteps per sample as L_T + T · mean_k L_{t_k}, with the standard error of that
 * Monte-Carlo estimate. The noise ε of each term is drawn from the counter-based generator keyed by
 * (seed, t or k, global sample index), or supplied by the caller. */
#ifndef DIFFUSE_LIKELIHOOD_H
#define DIFFUSE_LIKELIHOOD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "diffusion/objective.h"
#include "diffusion/sampler.h"
#include "diffusion/schedule.h"

typedef struct LikelihoodOptions {
    PredictionType prediction_type;
    VarianceType variance_type; /* VARIANCE_FIXED_SMALL, VARIANCE_FIXED_LARGE or VARIANCE_LEARNED_RANGE */
    size_t n_channels;          /* C, for VARIANCE_LEARNED_RANGE (model output has 2C channels, channels-last) */
    bool clip_denoised;         /* clip x̂_0 to [-1, 1] (improved-diffusion's default for bits/dim) */
    size_t n_timesteps_sampled; /* K; 0 evaluates all T terms exactly */
    uint64_t seed;              /* noise (and the timesteps of an estimate) */
    size_t first_sample;        /* global index of the batch's first sample */
    /* Optional: the ε of the term at timestep t (exact) or draw k (estimate); NULL draws from the RNG. */
    const NoiseSource *noise;
} LikelihoodOptions;

/* Per sample, in bits/dim. */
typedef struct LikelihoodResult {
    double *total;     /* n: the bound (exact) or its estimate */
    double *std_error; /* n: standard error of the estimate (0 when exact) */
    double *prior;     /* n: L_T */
    double *decoder;   /* n: L_0 (exact evaluation; for an estimate, 0) */
    double *terms;     /* n: Σ_{t>=1} L_t (exact) or T · mean_k L_{t_k} including any t = 0 draws (estimate) */
    /* Over the batch: the mean of `total` and the standard error of that mean's Monte-Carlo estimate
     * (√(Σ std_error²) / n). */
    double mean_total, mean_std_error;
} LikelihoodResult;

void likelihood_result_init(LikelihoodResult *r, size_t n);
void likelihood_result_free(LikelihoodResult *r);

int likelihood_validate_options(const LikelihoodOptions *opt, Error *err);

/* The bound for n samples x0 (values in [-1, 1], sample_numel each). Returns -1 with an Error for invalid
 * options or when the model fails. */
int likelihood_bpd(LikelihoodResult *out, DiffusionModelFn model, void *model_ctx, const Schedule *s,
                   const float *x0, size_t n, size_t sample_numel, const LikelihoodOptions *opt, Error *err);

/* ---- the terms, pure functions ---- */
/* L_T per sample, bits/dim. */
void likelihood_prior_bpd(double *out, const Schedule *s, const float *x0, size_t n, size_t sample_numel);
/* L_t per sample (bits/dim) at timestep t[i] for the given x_t and model output at (x_t, t): the KL term for
 * t >= 1, the decoder term for t = 0. */
void likelihood_term_bpd(double *out, const Schedule *s, const float *x0, const float *x_t,
                         const float *model_output, const int64_t *t, size_t n, size_t sample_numel,
                         const LikelihoodOptions *opt);

/* KL(N(m1, e^lv1) ‖ N(m2, e^lv2)) in nats. */
double likelihood_normal_kl(double mean1, double logvar1, double mean2, double logvar2);
/* log P(x's 8-bit bin) under N(mean, e^{2 log_scale}), x in [-1, 1]; bins below -0.999 and above 0.999 open. */
double likelihood_discretized_gaussian_log_prob(double x, double mean, double log_scale);

#endif
