/* DPM-Solver++ multistep (Lu et al. 2022, "DPM-Solver++", Algorithm 2), as diffusers'
 * DPMSolverMultistepScheduler with algorithm_type "dpmsolver++". With σ = √((1-ᾱ)/ᾱ) at each timestep,
 * α_t = 1/√(σ² + 1), σ_t = σ α_t, λ = log α_t - log σ_t and h = λ_t - λ_s0, each step converts the model
 * output to a data prediction m = x̂_0 and
 *   1st order:  x_t = (σ_t/σ_s0) x - α_t (e^{-h} - 1) m0
 *   2nd order:  r0 = h_0 / h, D1 = (m0 - m1) / r0,
 *               midpoint  x_t = (σ_t/σ_s0) x - α_t (e^{-h} - 1) m0 - ½ α_t (e^{-h} - 1) D1
 *               heun      x_t = (σ_t/σ_s0) x - α_t (e^{-h} - 1) m0 + α_t ((e^{-h} - 1)/h + 1) D1
 *   3rd order:  the DPM-Solver++(3M) update with D1, D2 from the last three predictions.
 * The first step is first order, the second at most second order; the last step is first order when
 * final_sigmas_type is "zero" (σ = 0 there, so it returns m0), with euler_at_final, or with
 * lower_order_final and fewer than 15 steps, which also makes the step before at most second order.
 * Scalars follow diffusers' float32 operation order through schedule_round; the history keeps x̂_0 in
 * float32 as diffusers does; elements are computed in double and rounded once. */
#include <math.h>
#include <string.h>

#include "core/alloc.h"
#include "diffusion/sampler.h"
#include "diffusion/sampler_steps.h"

typedef struct AlphaSigma {
    double alpha, sigma, lambda;
    int sigma_is_zero;
} AlphaSigma;

static AlphaSigma alpha_sigma(const Schedule *s, double sigma) {
#define R(x) schedule_round(s, (x))
    AlphaSigma o;
    o.alpha = R(1 / R(sqrt(R(R(sigma * sigma) + 1))));
    o.sigma = R(sigma * o.alpha);
    o.sigma_is_zero = o.sigma == 0;
    /* λ = +inf at σ = 0; never subtracted then (the final step special-cases it). */
    o.lambda = o.sigma_is_zero ? INFINITY : R(R(log(o.alpha)) - R(log(o.sigma)));
#undef R
    return o;
}

/* x̂_0 from the model output at step i, into out (float, as diffusers keeps it). Unlike the other
 * elementwise formulas this one is rounded after each operation as diffusers' float32 tensors are: at the
 * first steps (√ᾱ = 5e-5 for the cosine schedule) the division amplifies float32's rounding of
 * x - σ ε̂ to 1e-3, and the next step multiplies x̂_0 by α_t, thousands of times √ᾱ_s, which would move
 * the step's output by 4e-4 from diffusers' otherwise. */
static void convert_model_output(const Sampler *sm, size_t i, const StepBuffers *b, float *out) {
    const Schedule *s = &sm->schedule;
    AlphaSigma cur = alpha_sigma(s, sm->sigmas[i]);
    int learned = sm->config.variance_type == VARIANCE_LEARNED_RANGE;
    CHECK(!learned || (b->n_channels > 0 && b->sample_numel % b->n_channels == 0),
          "learned_range: sample_numel %zu is not a multiple of n_channels %zu", b->sample_numel, b->n_channels);
    const PredictionType pred = sm->config.prediction_type;
    const int f32 = s->precision == SCHEDULE_PRECISION_DIFFUSERS;
    const size_t D = b->sample_numel;
    for (size_t n = 0; n < b->n; n++) {
#pragma omp parallel for schedule(static) if (D > 65536)
        for (size_t j = 0; j < D; j++) {
            size_t k = n * D + j;
            double x = b->x_t[k], m = b->model_output[step_model_index(b, learned, n, j)];
            double x0;
            if (pred == PREDICTION_EPSILON) {
                double scaled = cur.sigma * m;
                if (f32) scaled = (float)scaled;
                double diff = x - scaled;
                if (f32) diff = (float)diff;
                x0 = diff / cur.alpha;
            } else if (pred == PREDICTION_SAMPLE) {
                x0 = m;
            } else {
                double ax = cur.alpha * x, sm_ = cur.sigma * m;
                if (f32) ax = (float)ax, sm_ = (float)sm_;
                x0 = ax - sm_;
            }
            out[k] = (float)x0;
        }
    }
}

void dpm_solver_step(Sampler *sm, size_t i, const StepBuffers *b) {
    const Schedule *s = &sm->schedule;
    const SchedulerConfig *cfg = &sm->config;
    size_t total = b->n * b->sample_numel, n_steps = sm->n_steps;
    if (i == 0 && sm->history_numel != total) {
        /* A new chain with another batch size. */
        for (int k = 0; k < 3; k++) {
            alloc_free(sm->history[k]);
            sm->history[k] = alloc_floats(total);
        }
        sm->history_numel = total;
    }
    CHECK(sm->history_numel == total, "DPM-Solver batch changed from %zu to %zu values in the middle of a chain",
          sm->history_numel, total);

    /* Rotate: history[2] is the newest prediction, history[1] the one before, history[0] the oldest. */
    float *oldest = sm->history[0];
    sm->history[0] = sm->history[1];
    sm->history[1] = sm->history[2];
    sm->history[2] = oldest;
    convert_model_output(sm, i, b, sm->history[2]);
    const float *m0 = sm->history[2], *m1 = sm->history[1], *m2 = sm->history[0];

    int lower_order_final = i == n_steps - 1 && (cfg->euler_at_final || (cfg->lower_order_final && n_steps < 15) ||
                                                 cfg->final_sigmas_type == FINAL_SIGMAS_ZERO);
    int lower_order_second = i + 2 == n_steps && cfg->lower_order_final && n_steps < 15;
    int order;
    if (cfg->solver_order == 1 || sm->lower_order_nums < 1 || lower_order_final)
        order = 1;
    else if (cfg->solver_order == 2 || sm->lower_order_nums < 2 || lower_order_second)
        order = 2;
    else
        order = 3;

#define R(x) schedule_round(s, (x))
    AlphaSigma t = alpha_sigma(s, sm->sigmas[i + 1]);
    AlphaSigma s0 = alpha_sigma(s, sm->sigmas[i]);
    double c_x, c_d0, c_d1 = 0, c_d2 = 0, inv_r0 = 0, r0 = 0, r1 = 0, inv_r1 = 0;
    if (t.sigma_is_zero) {
        /* σ_t = 0: λ_t = ∞, e^{-h} = 0, so x_t = m0 (first order is forced there). */
        CHECK(order == 1, "DPM-Solver: a step of order %d onto sigma 0", order);
        c_x = 0;
        c_d0 = 1;
    } else {
        double h = R(t.lambda - s0.lambda);
        double em1 = R(R(exp(R(-h))) - 1); /* e^{-h} - 1 */
        c_x = R(t.sigma / s0.sigma);
        c_d0 = -R(t.alpha * em1);
        if (order >= 2) {
            AlphaSigma s1 = alpha_sigma(s, sm->sigmas[i - 1]);
            double h0 = R(s0.lambda - s1.lambda);
            r0 = R(h0 / h);
            inv_r0 = R(1 / r0);
            if (order == 2) {
                c_d1 = cfg->solver_type == SOLVER_MIDPOINT ? -R(0.5 * R(t.alpha * em1))
                                                           : R(t.alpha * R(R(em1 / h) + 1));
            } else {
                AlphaSigma s2 = alpha_sigma(s, sm->sigmas[i - 2]);
                double h1 = R(s1.lambda - s2.lambda);
                r1 = R(h1 / h);
                inv_r1 = R(1 / r1);
                c_d1 = R(t.alpha * R(R(em1 / h) + 1));
                c_d2 = -R(t.alpha * R(R(R(em1 + h) / R(h * h)) - 0.5));
            }
        }
    }
    double w1 = order == 3 ? R(r0 / R(r0 + r1)) : 0, w2 = order == 3 ? R(1 / R(r0 + r1)) : 0;
#undef R
    const size_t N = total;
#pragma omp parallel for schedule(static) if (N > 65536)
    for (size_t k = 0; k < N; k++) {
        double x = b->x_t[k];
        double out = c_x * x + c_d0 * m0[k];
        if (order == 2) {
            out += c_d1 * (inv_r0 * ((double)m0[k] - m1[k]));
        } else if (order == 3) {
            double d1_0 = inv_r0 * ((double)m0[k] - m1[k]), d1_1 = inv_r1 * ((double)m1[k] - m2[k]);
            double d1 = d1_0 + w1 * (d1_0 - d1_1), d2 = w2 * (d1_0 - d1_1);
            out += c_d1 * d1 + c_d2 * d2;
        }
        if (b->pred_x0) b->pred_x0[k] = m0[k];
        b->x_prev[k] = (float)out;
    }
    if (sm->lower_order_nums < cfg->solver_order) sm->lower_order_nums++;
}
