/* Forward process and training objective (see objective.h). The per-timestep scalars √ᾱ_t and √(1-ᾱ_t)
 * are rounded as diffusers rounds them (schedule_round); each element is computed in double and rounded
 * once. */
#include "diffusion/objective.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/rng.h"

static const char *const PREDICTION_TYPE_NAMES[] = {
    [PREDICTION_EPSILON] = "epsilon",
    [PREDICTION_SAMPLE] = "sample",
    [PREDICTION_V] = "v_prediction",
};

const char *prediction_type_name(PredictionType p) {
    CHECK((unsigned)p <= PREDICTION_V, "invalid PredictionType %d", (int)p);
    return PREDICTION_TYPE_NAMES[p];
}

int prediction_type_from_name(const char *name, PredictionType *out, Error *err) {
    for (unsigned i = 0; i <= PREDICTION_V; i++) {
        if (strcmp(name, PREDICTION_TYPE_NAMES[i]) == 0) {
            *out = (PredictionType)i;
            return 0;
        }
    }
    return error_set(err, "unknown prediction_type '%s' (supported: epsilon, sample, v_prediction)", name);
}

/* ------------------------------------------------------------------------------------------------ */

void objective_sample_timesteps(int64_t *t, size_t n, const Schedule *s, uint64_t seed, uint64_t step,
                                size_t first_sample) {
    uint64_t stream = rng_stream(RNG_PURPOSE_DIFFUSION_TIMESTEP, step, 0);
    for (size_t i = 0; i < n; i++) t[i] = (int64_t)rng_below(seed, stream, first_sample + i, s->n_timesteps);
}

void objective_sample_noise(float *noise, size_t n, size_t sample_numel, uint64_t seed, uint64_t step,
                            size_t first_sample) {
#pragma omp parallel for schedule(static) if (rng_spread_samples(n, sample_numel))
    for (size_t i = 0; i < n; i++) {
        uint64_t stream = rng_stream(RNG_PURPOSE_DIFFUSION_NOISE, step, first_sample + i);
        rng_fill_normal(noise + i * sample_numel, sample_numel, seed, stream, 0);
    }
}

static void check_timestep(const Schedule *s, int64_t t) {
    CHECK(t >= 0 && (uint64_t)t < s->n_timesteps, "timestep %lld outside [0, %zu)", (long long)t, s->n_timesteps);
}

/* √ᾱ_t and √(1-ᾱ_t) as diffusers' add_noise and get_velocity compute them. */
static void q_coefficients(const Schedule *s, int64_t t, double *sqrt_ab, double *sqrt_one_minus_ab) {
    check_timestep(s, t);
    double ab = s->alphas_cumprod[t];
    *sqrt_ab = schedule_round(s, sqrt(ab));
    *sqrt_one_minus_ab = schedule_round(s, sqrt(schedule_round(s, 1 - ab)));
}

void objective_q_sample(float *x_t, const float *x0, const float *noise, const int64_t *t, size_t n,
                        size_t sample_numel, const Schedule *s) {
    for (size_t i = 0; i < n; i++) {
        double a, b;
        q_coefficients(s, t[i], &a, &b);
        size_t base = i * sample_numel;
#pragma omp parallel for schedule(static) if (sample_numel > 65536)
        for (size_t j = base; j < base + sample_numel; j++) x_t[j] = (float)(a * x0[j] + b * noise[j]);
    }
}

void objective_target(float *target, PredictionType p, const float *x0, const float *noise, const int64_t *t,
                      size_t n, size_t sample_numel, const Schedule *s) {
    size_t total = n * sample_numel;
    switch (p) {
    case PREDICTION_EPSILON:
        if (target != noise) memmove(target, noise, total * sizeof(float));
        return;
    case PREDICTION_SAMPLE:
        if (target != x0) memmove(target, x0, total * sizeof(float));
        return;
    case PREDICTION_V:
        for (size_t i = 0; i < n; i++) {
            double a, b;
            q_coefficients(s, t[i], &a, &b);
            size_t base = i * sample_numel;
#pragma omp parallel for schedule(static) if (sample_numel > 65536)
            for (size_t j = base; j < base + sample_numel; j++) target[j] = (float)(a * noise[j] - b * x0[j]);
        }
        return;
    }
    CHECK(0, "invalid PredictionType %d", (int)p);
}

void objective_snr_weights(float *w, const int64_t *t, size_t n, const Schedule *s) {
    for (size_t i = 0; i < n; i++) {
        check_timestep(s, t[i]);
        double ab = s->alphas_cumprod[t[i]];
        w[i] = (float)(ab / (1 - ab));
    }
}

/* ------------------------------------------------------------------------------------------------ */

double objective_loss_forward(const float *pred, const float *target, const float *weights, size_t n,
                              size_t sample_numel) {
    CHECK(n > 0 && sample_numel > 0, "empty batch (n %zu, sample_numel %zu)", n, sample_numel);
    /* One partial sum per sample, then added in sample order: the same result for any thread count. */
    double *partial = xmalloc(n * sizeof(double));
#pragma omp parallel for schedule(static) if (n * sample_numel > 65536)
    for (size_t i = 0; i < n; i++) {
        const float *p = pred + i * sample_numel, *y = target + i * sample_numel;
        double sum = 0;
        for (size_t j = 0; j < sample_numel; j++) {
            double d = (double)p[j] - (double)y[j];
            sum += d * d;
        }
        partial[i] = sum * (weights ? (double)weights[i] : 1.0);
    }
    double total = 0;
    for (size_t i = 0; i < n; i++) total += partial[i];
    free(partial);
    return total / ((double)n * (double)sample_numel);
}

void objective_loss_backward(float *dpred, const float *pred, const float *target, const float *weights, size_t n,
                             size_t sample_numel, double dloss) {
    CHECK(n > 0 && sample_numel > 0, "empty batch (n %zu, sample_numel %zu)", n, sample_numel);
    double scale = 2.0 * dloss / ((double)n * (double)sample_numel);
    for (size_t i = 0; i < n; i++) {
        double c = scale * (weights ? (double)weights[i] : 1.0);
        size_t base = i * sample_numel;
#pragma omp parallel for schedule(static) if (sample_numel > 65536)
        for (size_t j = base; j < base + sample_numel; j++)
            dpred[j] += (float)(c * ((double)pred[j] - (double)target[j])); /* loss = c/2 Σ (pred - target)² */
    }
}
