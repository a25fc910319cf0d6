/* Exponential moving average of the weights, as diffusers' EMAModel:
 *   decay(k) for the k-th optimization step (k counted from 1):
 *     s = max(0, k - update_after_step - 1); 0 when s == 0, else
 *     warmup ? 1 - (1 + s / inv_gamma)^-power : (1 + s) / (10 + s), clamped to [min_decay, max_decay]
 *   ema -= (1 - decay) * (ema - params)
 * train_unconditional uses warmup with inv_gamma 1, power 3/4, max_decay 0.9999. */
#ifndef DIFFUSE_EMA_H
#define DIFFUSE_EMA_H

#include <stdbool.h>
#include <stddef.h>

typedef struct EmaConfig {
    double max_decay, min_decay;
    long update_after_step;
    bool use_warmup;
    double inv_gamma, power;
} EmaConfig;

/* train_unconditional's settings: max 0.9999, min 0, warmup with inv_gamma 1 and power 0.75. */
EmaConfig ema_diffusers_defaults(void);

double ema_decay(EmaConfig cfg, long optimization_step);
void ema_update(float *ema, const float *params, size_t n, double decay);

#endif
