/* Diffusion library, part 3: the variational bound in bits/dim.
 *   - the elementary terms (Gaussian KL, discretised Gaussian bin probability) and every term of the bound
 *     for each prediction type x variance type x clipping, and a whole bound over a 20-step schedule,
 *     against an independent float64 PyTorch computation (tools/torchref/fixtures_diffusion_vlb.py);
 *   - for Gaussian data N(mu, s²) with its exact ε-predictor (linear in x_t), the prior and every KL term
 *     against closed forms evaluated here in double, and the decoder term against a separate computation;
 *   - the K-timestep estimate against the exact bound, within its standard error;
 *   - invalid options. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/error.h"
#include "diffusion/likelihood.h"
#include "diffusion/schedule.h"
#include "harness.h"

#define LN2 0.6931471805599453

static Schedule make_schedule(size_t T, double beta_start, double beta_end, BetaSchedule kind) {
    ScheduleConfig cfg = schedule_config_default();
    cfg.num_train_timesteps = T, cfg.beta_start = beta_start, cfg.beta_end = beta_end, cfg.beta_schedule = kind;
    cfg.precision = SCHEDULE_PRECISION_DOUBLE;
    Schedule s;
    Error err;
    CHECK(schedule_init(&s, &cfg, &err) == 0, "%s", err.message);
    return s;
}

static bool close_rel(double got, double want, double rtol, double atol) {
    return fabs(got - want) <= atol + rtol * fabs(want);
}

/* ------------------------------------------------------------------------------------------------ */
/* Against PyTorch */

static void test_elementary_terms_match_torch(void) {
    Fixture *fx = fixture_open("diffusion_vlb");
    float *kin = fixture_floats(fx, "kl.in", 4 * 64), *kout = fixture_floats(fx, "kl.out", 64);
    for (int i = 0; i < 64; i++) {
        double got = likelihood_normal_kl(kin[i], kin[64 + i], kin[128 + i], kin[192 + i]);
        EXPECT(close_rel(got, kout[i], 1e-6, 1e-9), "KL %d: %.9g vs %.9g", i, got, kout[i]);
    }
    float *din = fixture_floats(fx, "disc.in", 3 * 256), *dout = fixture_floats(fx, "disc.out", 256);
    int n_floor = 0;
    for (int i = 0; i < 256; i++) {
        double got = likelihood_discretized_gaussian_log_prob(din[i], din[256 + i], din[512 + i]);
        EXPECT(close_rel(got, dout[i], 1e-6, 1e-9), "bin log-probability %d (x %g, mean %g, log scale %g): %.9g vs %.9g",
               i, din[i], din[256 + i], din[512 + i], got, dout[i]);
        n_floor += fabs(got - log(1e-12)) < 1e-9;
    }
    EXPECT(n_floor >= 4, "the 1e-12 floor is exercised (%d)", n_floor);
    /* The 256 bins partition the line: their probabilities sum to 1. */
    for (double log_scale = -6; log_scale <= 0; log_scale += 1.5) {
        double total = 0;
        for (int k = 0; k < 256; k++) total += exp(likelihood_discretized_gaussian_log_prob(k / 127.5 - 1, 0.37, log_scale));
        EXPECT(fabs(total - 1) < 1e-9, "bins sum to %.12f at log scale %g", total, log_scale);
    }
    free(kin), free(kout), free(din), free(dout);
    fixture_close(fx);
}

static void test_terms_match_torch(void) {
    enum { N = 2, D = 48, C = 3, K = 8 };
    static const char *const PREDS[] = {"epsilon", "sample", "v_prediction"};
    static const char *const VARS[] = {"fixed_small", "fixed_large", "learned_range"};
    static const VarianceType VAR_TYPES[] = {VARIANCE_FIXED_SMALL, VARIANCE_FIXED_LARGE, VARIANCE_LEARNED_RANGE};
    Fixture *fx = fixture_open("diffusion_vlb");
    Schedule s = make_schedule(1000, 1e-4, 0.02, BETA_SCHEDULE_LINEAR);
    float *x0 = fixture_floats(fx, "term.x0", N * D), *prior = fixture_floats(fx, "term.prior", N);
    double got[N];
    likelihood_prior_bpd(got, &s, x0, N, D);
    for (int i = 0; i < N; i++) EXPECT(close_rel(got[i], prior[i], 1e-6, 0), "prior %d: %.9g vs %.9g", i, got[i], prior[i]);
    double worst = 0;
    char name[160];
    for (int k = 0; k < K; k++) {
        snprintf(name, sizeof name, "term.%d.t", k);
        float *tf = fixture_floats(fx, name, N);
        int64_t t[N] = {(int64_t)tf[0], (int64_t)tf[1]};
        snprintf(name, sizeof name, "term.%d.x_t", k);
        float *x_t = fixture_floats(fx, name, N * D);
        for (int p = 0; p < 3; p++) {
            snprintf(name, sizeof name, "term.%d.%s.model_output", k, PREDS[p]);
            float *out = fixture_floats(fx, name, N * D);
            snprintf(name, sizeof name, "term.%d.%s.model_output_learned", k, PREDS[p]);
            float *out_learned = fixture_floats(fx, name, 2 * N * D);
            for (int v = 0; v < 3; v++)
                for (int clip = 0; clip < 2; clip++) {
                    LikelihoodOptions opt = {.prediction_type = (PredictionType)p, .variance_type = VAR_TYPES[v],
                                             .n_channels = C, .clip_denoised = clip};
                    likelihood_term_bpd(got, &s, x0, x_t, v == 2 ? out_learned : out, t, N, D, &opt);
                    snprintf(name, sizeof name, "term.%d.%s.%s.clip%d", k, PREDS[p], VARS[v], clip);
                    float *want = fixture_floats(fx, name, N);
                    for (int i = 0; i < N; i++) {
                        double rel = fabs(got[i] - want[i]) / fabs(want[i]);
                        worst = fmax(worst, rel);
                        EXPECT(rel < 2e-6, "%s sample %d (t %lld): %.9g vs %.9g", name, i, (long long)t[i], got[i], want[i]);
                    }
                    free(want);
                }
            free(out), free(out_learned);
        }
        free(tf), free(x_t);
    }
    schedule_free(&s);
    /* The cosine schedule. */
    s = make_schedule(1000, 0, 0, BETA_SCHEDULE_SQUAREDCOS_CAP_V2);
    for (int k = 0; k < K; k++) {
        snprintf(name, sizeof name, "term.%d.t", k);
        float *tf = fixture_floats(fx, name, N);
        int64_t t[N] = {(int64_t)tf[0], (int64_t)tf[0]};
        snprintf(name, sizeof name, "cosine.%d.x_t", k);
        float *x_t = fixture_floats(fx, name, N * D);
        /* The fixture's ε outputs do not depend on t: the same ones serve the cosine schedule. */
        snprintf(name, sizeof name, "term.%d.epsilon.model_output", k);
        float *out = fixture_floats(fx, name, N * D);
        snprintf(name, sizeof name, "cosine.%d.bpd", k);
        float *want = fixture_floats(fx, name, N);
        LikelihoodOptions opt = {.prediction_type = PREDICTION_EPSILON, .variance_type = VARIANCE_FIXED_SMALL,
                                 .clip_denoised = true};
        likelihood_term_bpd(got, &s, x0, x_t, out, t, N, D, &opt);
        for (int i = 0; i < N; i++)
            EXPECT(fabs(got[i] - want[i]) < 2e-6 * fabs(want[i]), "%s sample %d: %.9g vs %.9g", name, i, got[i], want[i]);
        free(out), free(want), free(tf), free(x_t);
    }
    schedule_free(&s);
    printf("  %d terms: max relative difference %.3g\n", K * 3 * 3 * 2 * N, worst);
    free(x0), free(prior);
    fixture_close(fx);
}

typedef struct LinearModel {
    const Schedule *s;
    size_t D;
} LinearModel;

/* ε̂ = √(1-ᾱ_t) x_t, the model of the fixture's whole bound. */
static int linear_model(void *ctx, const float *x_t, const int64_t *t, size_t n, float *out, Error *err) {
    (void)err;
    LinearModel *m = ctx;
    for (size_t i = 0; i < n; i++) {
        double c = sqrt(1 - m->s->alphas_cumprod[t[i]]);
        for (size_t j = 0; j < m->D; j++) out[i * m->D + j] = (float)(c * x_t[i * m->D + j]);
    }
    return 0;
}

static void test_whole_bound_matches_torch(void) {
    enum { N = 2, D = 48, T = 20 };
    Fixture *fx = fixture_open("diffusion_vlb");
    Schedule s = make_schedule(T, 1e-3, 0.2, BETA_SCHEDULE_LINEAR);
    float *x0 = fixture_floats(fx, "loop.x0", N * D), *noise = fixture_floats(fx, "loop.noise", T * N * D);
    float *total = fixture_floats(fx, "loop.total", N), *prior = fixture_floats(fx, "loop.prior", N);
    float *decoder = fixture_floats(fx, "loop.decoder", N), *terms = fixture_floats(fx, "loop.terms", N);
    NoiseSource ns = noise_source_buffers(noise, T, N * D);
    LikelihoodOptions opt = {.prediction_type = PREDICTION_EPSILON, .variance_type = VARIANCE_FIXED_SMALL, .noise = &ns};
    LinearModel m = {&s, D};
    LikelihoodResult r;
    likelihood_result_init(&r, N);
    Error err;
    EXPECT(likelihood_bpd(&r, linear_model, &m, &s, x0, N, D, &opt, &err) == 0, "%s", err.message);
    for (int i = 0; i < N; i++) {
        EXPECT(close_rel(r.total[i], total[i], 2e-6, 0) && close_rel(r.prior[i], prior[i], 2e-6, 0) &&
                   close_rel(r.decoder[i], decoder[i], 2e-6, 0) && close_rel(r.terms[i], terms[i], 2e-6, 0),
               "sample %d: total %.9g vs %.9g, prior %.9g vs %.9g, decoder %.9g vs %.9g, terms %.9g vs %.9g", i,
               r.total[i], total[i], r.prior[i], prior[i], r.decoder[i], decoder[i], r.terms[i], terms[i]);
        EXPECT(r.std_error[i] == 0, "exact bound has no standard error");
    }
    EXPECT(fabs(r.mean_total - 0.5 * (r.total[0] + r.total[1])) < 1e-12, "mean_total");
    likelihood_result_free(&r);
    schedule_free(&s);
    free(x0), free(noise), free(total), free(prior), free(decoder), free(terms);
    fixture_close(fx);
}

/* ------------------------------------------------------------------------------------------------ */
/* Gaussian data: closed forms */

typedef struct GaussianCase {
    const Schedule *s;
    double mu, sd;
    size_t D;
    const float *eps; /* the noise of every term */
} GaussianCase;

/* E[ε | x_t] for x_0 ~ N(mu, sd²): b (x_t - a mu) / (a² sd² + b²). */
static int gaussian_eps_model(void *ctx, const float *x_t, const int64_t *t, size_t n, float *out, Error *err) {
    (void)err;
    GaussianCase *g = ctx;
    for (size_t i = 0; i < n; i++) {
        double ab = g->s->alphas_cumprod[t[i]], a = sqrt(ab), b = sqrt(1 - ab);
        double k = b / (ab * g->sd * g->sd + b * b);
        for (size_t j = 0; j < g->D; j++) out[i * g->D + j] = (float)(k * (x_t[i * g->D + j] - a * g->mu));
    }
    return 0;
}

static void same_noise_every_step(const NoiseSource *src, size_t step, size_t n, size_t sample_numel, float *out) {
    (void)step;
    memcpy(out, src->ctx, n * sample_numel * sizeof(float));
}

/* Φ(z) from libm's erf, for the decoder's separate computation. */
static double phi(double z) { return 0.5 * (1 + erf(z / 1.4142135623730951)); }

static void test_gaussian_bound_closed_form(void) {
    /* x_0 and ε on a product grid of M equally weighted normal quantiles each, D = M² dimensions of one
     * sample: the bound's per-dimension mean is then the expectation over the grid, which for the prior and
     * the KL terms (quadratic in x_0 and ε) follows from the grid's empirical moments in closed form. */
    enum { M = 64, D = M * M };
    const double mu = 0.1, sd = 0.4;
    float *x0 = alloc_floats(D), *eps = alloc_floats(D);
    for (int i = 0; i < M; i++)
        for (int j = 0; j < M; j++) {
            /* Quantiles by bisection on Φ (no inverse in libm). */
            double q[2] = {(i + 0.5) / M, (j + 0.5) / M}, z[2];
            for (int c = 0; c < 2; c++) {
                double lo = -10, hi = 10;
                for (int it = 0; it < 200; it++) {
                    double mid = 0.5 * (lo + hi);
                    if (phi(mid) < q[c]) lo = mid; else hi = mid;
                }
                z[c] = 0.5 * (lo + hi);
            }
            x0[i * M + j] = (float)(mu + sd * z[0]);
            eps[i * M + j] = (float)z[1];
        }
    /* Empirical moments of the grid as stored (floats). */
    double m_x = 0, m_xx = 0, m_e = 0, m_ee = 0, m_xe = 0;
    for (int k = 0; k < D; k++) {
        double x = x0[k], e = eps[k];
        m_x += x, m_xx += x * x, m_e += e, m_ee += e * e, m_xe += x * e;
    }
    m_x /= D, m_xx /= D, m_e /= D, m_ee /= D, m_xe /= D;

    Schedule s = make_schedule(1000, 1e-4, 0.02, BETA_SCHEDULE_LINEAR);
    GaussianCase g = {.s = &s, .mu = mu, .sd = sd, .D = D, .eps = eps};
    NoiseSource ns = {.fill = same_noise_every_step, .ctx = eps};
    LikelihoodOptions opt = {.prediction_type = PREDICTION_EPSILON, .variance_type = VARIANCE_FIXED_SMALL, .noise = &ns};
    LikelihoodResult r;
    likelihood_result_init(&r, 1);
    Error err;
    EXPECT(likelihood_bpd(&r, gaussian_eps_model, &g, &s, x0, 1, D, &opt, &err) == 0, "%s", err.message);

    /* Prior: KL(N(a x0, b²) ‖ N(0, 1)) = ½ (-1 - log b² + b² + a² x0²). */
    double abT = s.alphas_cumprod[999];
    double prior = 0.5 * (-1 - log(1 - abT) + (1 - abT) + abT * m_xx) / LN2;
    /* KL terms, fixed_small: the variances agree, so KL = (μ̃ - μ_θ)² / (2 β̃_t) with μ̃ - μ_θ = c1 (x0 - x̂0)
     * and x̂0 - x0 = -b k (x0 - mu) + b (1 - b k) / a · ε. */
    double terms = 0;
    for (int t = 1; t < 1000; t++) {
        double ab = s.alphas_cumprod[t], a = sqrt(ab), b = sqrt(1 - ab);
        double k = b / (ab * sd * sd + b * b);
        double c_x = -b * k, c_e = b * (1 - b * k) / a;
        double m_dd = m_xx - 2 * mu * m_x + mu * mu; /* E[(x0 - mu)²] */
        double m_de = m_xe - mu * m_e;               /* E[(x0 - mu) ε] */
        double sq = c_x * c_x * m_dd + 2 * c_x * c_e * m_de + c_e * c_e * m_ee;
        double c1 = s.betas[t] * sqrt(s.alphas_cumprod[t - 1]) / (1 - ab);
        double post_var = s.betas[t] * (1 - s.alphas_cumprod[t - 1]) / (1 - ab);
        terms += c1 * c1 * sq / (2 * post_var) / LN2;
    }
    /* Decoder at t = 0: -log of the Gaussian mass of x0's bin, mean x̂0 (c1 = 1, c2 = 0 at t = 0), variance
     * β̃_1; the outer bins are open. */
    double ab0 = s.alphas_cumprod[0], a0 = sqrt(ab0), b0 = sqrt(1 - ab0);
    double k0 = b0 / (ab0 * sd * sd + b0 * b0);
    double var1 = s.betas[1] * (1 - ab0) / (1 - s.alphas_cumprod[1]), sigma = sqrt(var1);
    double decoder = 0;
    for (int j = 0; j < D; j++) {
        double xt = (float)(a0 * x0[j] + b0 * eps[j]);
        double e_hat = (float)(k0 * (xt - a0 * mu));
        double mean = (xt - b0 * e_hat) / a0;
        double hi = x0[j] > 0.999 ? 1.0 : phi((x0[j] + 1 / 255.0 - mean) / sigma);
        double lo = x0[j] < -0.999 ? 0.0 : phi((x0[j] - 1 / 255.0 - mean) / sigma);
        decoder -= log(fmax(hi - lo, 1e-12));
    }
    decoder /= D * LN2;
    printf("  Gaussian data: prior %.8f (closed form %.8f), KL terms %.8f (%.8f), decoder %.8f (%.8f) bits/dim\n",
           r.prior[0], prior, r.terms[0], terms, r.decoder[0], decoder);
    EXPECT(close_rel(r.prior[0], prior, 1e-9, 1e-12), "prior %.10g vs closed form %.10g", r.prior[0], prior);
    EXPECT(close_rel(r.terms[0], terms, 1e-5, 0), "KL terms %.10g vs closed form %.10g", r.terms[0], terms);
    EXPECT(close_rel(r.decoder[0], decoder, 1e-5, 0), "decoder %.10g vs %.10g", r.decoder[0], decoder);
    likelihood_result_free(&r);

    /* A worse model has a larger bound: the exact ε-predictor minimises every KL term. */
    GaussianCase wrong = g;
    wrong.sd = 0.6;
    likelihood_result_init(&r, 1);
    EXPECT(likelihood_bpd(&r, gaussian_eps_model, &wrong, &s, x0, 1, D, &opt, &err) == 0, "%s", err.message);
    EXPECT(r.terms[0] > terms, "mis-specified model's KL terms %.6f not above the optimum %.6f", r.terms[0], terms);
    likelihood_result_free(&r);
    schedule_free(&s);
    alloc_free(x0);
    alloc_free(eps);
}

/* ------------------------------------------------------------------------------------------------ */
/* The estimate */

static void test_estimate_agrees_with_exact(void) {
    enum { N = 4, D = 64, K = 400 };
    Schedule s = make_schedule(1000, 1e-4, 0.02, BETA_SCHEDULE_LINEAR);
    float x0[N * D];
    for (int i = 0; i < N * D; i++) x0[i] = (float)(((i * 37) % 256) / 127.5 - 1); /* 8-bit values */
    GaussianCase g = {.s = &s, .mu = 0.0, .sd = 0.58, .D = D};
    LikelihoodOptions opt = {.prediction_type = PREDICTION_EPSILON, .variance_type = VARIANCE_FIXED_LARGE,
                             .clip_denoised = true, .seed = 3};
    LikelihoodResult exact, est, part;
    likelihood_result_init(&exact, N);
    likelihood_result_init(&est, N);
    Error err;
    EXPECT(likelihood_bpd(&exact, gaussian_eps_model, &g, &s, x0, N, D, &opt, &err) == 0, "%s", err.message);
    opt.n_timesteps_sampled = K;
    EXPECT(likelihood_bpd(&est, gaussian_eps_model, &g, &s, x0, N, D, &opt, &err) == 0, "%s", err.message);
    for (int i = 0; i < N; i++) {
        double z = (est.total[i] - exact.total[i]) / est.std_error[i];
        printf("  sample %d: exact %.4f bits/dim, estimate %.4f ± %.4f (z %.2f)\n", i, exact.total[i], est.total[i],
               est.std_error[i], z);
        EXPECT(est.std_error[i] > 0 && fabs(z) < 4, "sample %d: estimate %.5f ± %.5f vs exact %.5f", i, est.total[i],
               est.std_error[i], exact.total[i]);
        EXPECT(est.prior[i] == exact.prior[i], "the prior is exact in both");
    }
    EXPECT(est.mean_std_error > 0 && fabs(est.mean_total - exact.mean_total) < 4 * est.mean_std_error,
           "batch mean: estimate %.5f ± %.5f vs exact %.5f", est.mean_total, est.mean_std_error, exact.mean_total);
    /* The draws belong to the samples, not the batch. */
    likelihood_result_init(&part, 2);
    opt.first_sample = 2;
    EXPECT(likelihood_bpd(&part, gaussian_eps_model, &g, &s, x0 + 2 * D, 2, D, &opt, &err) == 0, "%s", err.message);
    EXPECT(part.total[0] == est.total[2] && part.total[1] == est.total[3], "estimate depends on the batch split");
    likelihood_result_free(&part);
    likelihood_result_free(&exact);
    likelihood_result_free(&est);
    schedule_free(&s);
}

static int failing_model(void *ctx, const float *x_t, const int64_t *t, size_t n, float *out, Error *err) {
    (void)ctx, (void)x_t, (void)t, (void)n, (void)out;
    return error_set(err, "unet: broken");
}

static void test_invalid_options(void) {
    Schedule s = make_schedule(10, 1e-3, 0.2, BETA_SCHEDULE_LINEAR);
    float x0[8] = {0};
    LikelihoodResult r;
    likelihood_result_init(&r, 1);
    Error err;
    LikelihoodOptions opt = {.variance_type = VARIANCE_FIXED_SMALL_LOG};
    EXPECT(likelihood_bpd(&r, failing_model, NULL, &s, x0, 1, 8, &opt, &err) == -1 &&
               strstr(err.message, "supported: fixed_small, fixed_large, learned_range"),
           "%s", err.message);
    opt.variance_type = VARIANCE_LEARNED_RANGE;
    EXPECT(likelihood_bpd(&r, failing_model, NULL, &s, x0, 1, 8, &opt, &err) == -1 && strstr(err.message, "n_channels"),
           "%s", err.message);
    opt.variance_type = VARIANCE_FIXED_LARGE;
    EXPECT(likelihood_bpd(&r, failing_model, NULL, &s, x0, 1, 8, &opt, &err) == -1 && strstr(err.message, "unet: broken") &&
               strstr(err.message, "bits/dim at timestep 0"),
           "%s", err.message);
    likelihood_result_free(&r);
    schedule_free(&s);
}

int main(void) {
    RUN(test_elementary_terms_match_torch);
    RUN(test_terms_match_torch);
    RUN(test_whole_bound_matches_torch);
    RUN(test_gaussian_bound_closed_form);
    RUN(test_estimate_agrees_with_exact);
    RUN(test_invalid_options);
    return harness_finish();
}
