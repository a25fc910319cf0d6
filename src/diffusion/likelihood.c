/* The variational bound in bits per dimension (see likelihood.h). */
#include "diffusion/likelihood.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/rng.h"

/* ------------------------------------------------------------------------------------------------ */
/* Elementary terms */

double likelihood_normal_kl(double mean1, double logvar1, double mean2, double logvar2) {
    double d = mean1 - mean2;
    return 0.5 * (-1.0 + logvar2 - logvar1 + exp(logvar1 - logvar2) + d * d * exp(-logvar2));
}

#define SQRT2 1.4142135623730951
#define LN2 0.6931471805599453

/* Φ(z) and 1 - Φ(z) through erfc, accurate in both tails. */
static double normal_cdf(double z) { return 0.5 * erfc(-z / SQRT2); }
static double normal_sf(double z) { return 0.5 * erfc(z / SQRT2); }

double likelihood_discretized_gaussian_log_prob(double x, double mean, double log_scale) {
    const double half_bin = 1.0 / 255.0, floor_p = 1e-12;
    double inv_std = exp(-log_scale), centered = x - mean;
    double upper = inv_std * (centered + half_bin), lower = inv_std * (centered - half_bin);
    double p;
    if (x < -0.999) {
        p = normal_cdf(upper);
    } else if (x > 0.999) {
        p = normal_sf(lower);
    } else if (lower > 0) {
        p = normal_sf(lower) - normal_sf(upper); /* both in the upper tail: subtract the small survivals */
    } else {
        p = normal_cdf(upper) - normal_cdf(lower);
    }
    return log(fmax(p, floor_p));
}

/* ------------------------------------------------------------------------------------------------ */
/* Per-sample terms */

void likelihood_prior_bpd(double *out, const Schedule *s, const float *x0, size_t n, size_t sample_numel) {
    size_t T = s->n_timesteps;
    double mean_coef = s->sqrt_alphas_cumprod[T - 1], logvar = log(1.0 - s->alphas_cumprod[T - 1]);
    for (size_t i = 0; i < n; i++) {
        double sum = 0;
        for (size_t j = 0; j < sample_numel; j++)
            sum += likelihood_normal_kl(mean_coef * x0[i * sample_numel + j], logvar, 0, 0);
        out[i] = sum / ((double)sample_numel * LN2);
    }
}

int likelihood_validate_options(const LikelihoodOptions *opt, Error *err) {
    if ((unsigned)opt->prediction_type > PREDICTION_V)
        return error_set(err, "invalid prediction_type %d (supported: epsilon, sample, v_prediction)",
                         (int)opt->prediction_type);
    if (opt->variance_type != VARIANCE_FIXED_SMALL && opt->variance_type != VARIANCE_FIXED_LARGE &&
        opt->variance_type != VARIANCE_LEARNED_RANGE)
        return error_set(err, "variance_type %d is not supported by the bound (supported: fixed_small, fixed_large, "
                         "learned_range)", (int)opt->variance_type);
    if (opt->variance_type == VARIANCE_LEARNED_RANGE && opt->n_channels == 0)
        return error_set(err, "variance_type learned_range needs the number of channels (n_channels)");
    return 0;
}

void likelihood_term_bpd(double *out, const Schedule *s, const float *x0, const float *x_t,
                         const float *model_output, const int64_t *t, size_t n, size_t sample_numel,
                         const LikelihoodOptions *opt) {
    Error err;
    CHECK(likelihood_validate_options(opt, &err) == 0, "%s", err.message);
    int learned = opt->variance_type == VARIANCE_LEARNED_RANGE;
    size_t C = opt->n_channels, D = sample_numel, T = s->n_timesteps;
    CHECK(!learned || D % C == 0, "sample_numel %zu is not a multiple of n_channels %zu", D, C);
    for (size_t i = 0; i < n; i++) {
        int64_t ti = t[i];
        CHECK(ti >= 0 && (size_t)ti < T, "timestep %lld outside [0, %zu)", (long long)ti, T);
        double ab = s->alphas_cumprod[ti];
        double sqrt_recip_ab = sqrt(1.0 / ab), sqrt_recipm1_ab = sqrt(1.0 / ab - 1.0);
        double sqrt_ab = s->sqrt_alphas_cumprod[ti], sqrt_1mab = s->sqrt_one_minus_alphas_cumprod[ti];
        double c1 = s->posterior_mean_coef1[ti], c2 = s->posterior_mean_coef2[ti];
        double true_logvar = s->posterior_log_variance_clipped[ti];
        /* fixed_large uses β_t, except β̃_1 at t = 0 (the decoder), as improved-diffusion does. */
        double fixed_logvar = opt->variance_type == VARIANCE_FIXED_LARGE && ti > 0 ? log(s->betas[ti]) : true_logvar;
        double max_log = log(s->betas[ti]);
        double sum = 0;
        for (size_t j = 0; j < D; j++) {
            size_t k = i * D + j;
            size_t m = learned ? i * 2 * D + (j / C) * 2 * C + j % C : k;
            double xt = x_t[k], out_m = model_output[m];
            double x0_hat = opt->prediction_type == PREDICTION_EPSILON ? sqrt_recip_ab * xt - sqrt_recipm1_ab * out_m
                            : opt->prediction_type == PREDICTION_SAMPLE ? out_m
                                                                        : sqrt_ab * xt - sqrt_1mab * out_m;
            if (opt->clip_denoised) x0_hat = fmin(fmax(x0_hat, -1.0), 1.0);
            double model_mean = c1 * x0_hat + c2 * xt;
            double model_logvar = fixed_logvar;
            if (learned) {
                double frac = ((double)model_output[m + C] + 1) / 2;
                model_logvar = frac * max_log + (1 - frac) * true_logvar;
            }
            if (ti == 0) {
                sum -= likelihood_discretized_gaussian_log_prob(x0[k], model_mean, 0.5 * model_logvar);
            } else {
                double true_mean = c1 * x0[k] + c2 * xt;
                sum += likelihood_normal_kl(true_mean, true_logvar, model_mean, model_logvar);
            }
        }
        out[i] = sum / ((double)D * LN2);
    }
}

/* ------------------------------------------------------------------------------------------------ */
/* The bound */

void likelihood_result_init(LikelihoodResult *r, size_t n) {
    memset(r, 0, sizeof *r);
    double *block = xcalloc(5 * (n ? n : 1), sizeof(double));
    r->total = block;
    r->std_error = block + n;
    r->prior = block + 2 * n;
    r->decoder = block + 3 * n;
    r->terms = block + 4 * n;
}

void likelihood_result_free(LikelihoodResult *r) {
    free(r->total);
    memset(r, 0, sizeof *r);
}

static void fill_noise(const LikelihoodOptions *opt, size_t key, size_t n, size_t D, float *out) {
    if (opt->noise) {
        opt->noise->fill(opt->noise, key, n, D, out);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        uint64_t stream = rng_stream(RNG_PURPOSE_LIKELIHOOD_NOISE, key, opt->first_sample + i);
        rng_fill_normal(out + i * D, D, opt->seed, stream, 0);
    }
}

int likelihood_bpd(LikelihoodResult *out, DiffusionModelFn model, void *model_ctx, const Schedule *s,
                   const float *x0, size_t n, size_t sample_numel, const LikelihoodOptions *opt, Error *err) {
    if (likelihood_validate_options(opt, err)) return -1;
    CHECK(model && n > 0 && sample_numel > 0, "likelihood_bpd: model %p, n %zu, sample_numel %zu", (void *)model, n,
          sample_numel);
    size_t T = s->n_timesteps, D = sample_numel, K = opt->n_timesteps_sampled;
    int learned = opt->variance_type == VARIANCE_LEARNED_RANGE;
    float *noise = alloc_floats(n * D), *x_t = alloc_floats(n * D);
    float *model_out = alloc_floats(n * D * (learned ? 2 : 1));
    int64_t *t = xmalloc(n * sizeof(int64_t));
    double *term = xmalloc(n * sizeof(double));
    double *sum = xcalloc(n, sizeof(double)), *sum_sq = xcalloc(n, sizeof(double));
    int rc = 0;

    likelihood_prior_bpd(out->prior, s, x0, n, D);
    size_t n_evals = K ? K : T;
    for (size_t k = 0; k < n_evals && !rc; k++) {
        for (size_t i = 0; i < n; i++)
            t[i] = K ? (int64_t)rng_below(opt->seed, rng_stream(RNG_PURPOSE_LIKELIHOOD_TIMESTEP, k, 0),
                                          opt->first_sample + i, T)
                     : (int64_t)k;
        fill_noise(opt, k, n, D, noise);
        objective_q_sample(x_t, x0, noise, t, n, D, s);
        if (model(model_ctx, x_t, t, n, model_out, err)) {
            rc = error_prefix(err, "bits/dim at timestep %lld", (long long)t[0]);
            break;
        }
        likelihood_term_bpd(term, s, x0, x_t, model_out, t, n, D, opt);
        for (size_t i = 0; i < n; i++) {
            if (!K && t[i] == 0) {
                out->decoder[i] = term[i];
            } else {
                sum[i] += term[i];
                sum_sq[i] += term[i] * term[i];
            }
        }
    }
    if (!rc) {
        double mean = 0, var = 0;
        for (size_t i = 0; i < n; i++) {
            if (K) {
                double m = sum[i] / (double)K;
                /* Sample variance of the K terms; the estimate T · m has standard error T · sd / √K. */
                double v = K > 1 ? fmax(sum_sq[i] - (double)K * m * m, 0) / (double)(K - 1) : 0;
                out->terms[i] = (double)T * m;
                out->decoder[i] = 0;
                out->std_error[i] = (double)T * sqrt(v / (double)K);
            } else {
                out->terms[i] = sum[i];
                out->std_error[i] = 0;
            }
            out->total[i] = out->prior[i] + out->terms[i] + out->decoder[i];
            mean += out->total[i];
            var += out->std_error[i] * out->std_error[i];
        }
        out->mean_total = mean / (double)n;
        out->mean_std_error = sqrt(var) / (double)n;
    }
    alloc_free(noise);
    alloc_free(x_t);
    alloc_free(model_out);
    free(t);
    free(term);
    free(sum);
    free(sum_sq);
    return rc;
}
