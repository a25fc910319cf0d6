/* The training objective of a diffusion model (Ho et al. 2020, Algorithm 1; Salimans & Ho 2022 for v):
 *   t ~ U{0 .. T-1},  ε ~ N(0, I),  x_t = √ᾱ_t x_0 + √(1-ᾱ_t) ε                  (q_sample, closed form)
 *   target = ε (epsilon) | x_0 (sample) | v = √ᾱ_t ε - √(1-ᾱ_t) x_0 (v_prediction)
 *   loss = mean over the batch of w_i · |model(x_t, t)_i - target_i|² / D    (L_simple when w = 1)
 * as diffusers' DDPMScheduler.add_noise / get_velocity and train_unconditional.py compute them (with
 * prediction_type "sample" that script weights each sample by the SNR ᾱ_t / (1 - ᾱ_t)).
 *
 * Buffers hold n samples of sample_numel floats each, in any layout (every formula is elementwise per
 * sample); timesteps are one per sample. Random draws come from the counter-based generator keyed by
 * (seed, training step, global sample index), so a sample's t and ε do not depend on how the global batch
 * is split over ranks or threads: pass first_sample = the global index of this process's first sample. */
#ifndef DIFFUSE_OBJECTIVE_H
#define DIFFUSE_OBJECTIVE_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "core/rng.h"
#include "diffusion/schedule.h"

typedef enum PredictionType {
    PREDICTION_EPSILON,
    PREDICTION_SAMPLE,
    PREDICTION_V,
} PredictionType;

/* "epsilon", "sample", "v_prediction" (diffusers' names). */
const char *prediction_type_name(PredictionType p);
int prediction_type_from_name(const char *name, PredictionType *out, Error *err);

/* t[i] ~ U{0 .. T-1} for global sample first_sample + i of training step `step`. */
void objective_sample_timesteps(int64_t *t, size_t n, const Schedule *s, uint64_t seed, uint64_t step,
                                size_t first_sample);
/* noise[i] ~ N(0, I) (sample_numel values per sample) for global sample first_sample + i of `step`. */
void objective_sample_noise(float *noise, size_t n, size_t sample_numel, uint64_t seed, uint64_t step,
                            size_t first_sample);

/* x_t = √ᾱ_t x0 + √(1-ᾱ_t) noise, per sample t[i] (diffusers' add_noise). x_t may alias x0 or noise. */
void objective_q_sample(float *x_t, const float *x0, const float *noise, const int64_t *t, size_t n,
                        size_t sample_numel, const Schedule *s);

/* The regression target for the prediction type: noise, x0, or v = √ᾱ_t noise - √(1-ᾱ_t) x0 (diffusers'
 * get_velocity). target may alias x0 or noise. */
void objective_target(float *target, PredictionType p, const float *x0, const float *noise, const int64_t *t,
                      size_t n, size_t sample_numel, const Schedule *s);

/* SNR weights w[i] = ᾱ_t / (1 - ᾱ_t), as train_unconditional.py applies with prediction_type "sample". */
void objective_snr_weights(float *w, const int64_t *t, size_t n, const Schedule *s);

/* loss = Σ_i w_i Σ_j (pred - target)² / (n · sample_numel), accumulated in double in a fixed order;
 * weights NULL means w = 1 (torch.nn.functional.mse_loss with reduction "mean"). */
double objective_loss_forward(const float *pred, const float *target, const float *weights, size_t n,
                              size_t sample_numel);
/* dpred += dloss · 2 w_i (pred - target) / (n · sample_numel). Accumulates, like every backward. */
void objective_loss_backward(float *dpred, const float *pred, const float *target, const float *weights, size_t n,
                             size_t sample_numel, double dloss);

#endif
