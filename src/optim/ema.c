/* EMA of the weights (see ema.h). */
#include "optim/ema.h"

#include <math.h>

EmaConfig ema_diffusers_defaults(void) {
    return (EmaConfig){.max_decay = 0.9999, .min_decay = 0, .update_after_step = 0, .use_warmup = true,
                       .inv_gamma = 1.0, .power = 0.75};
}

double ema_decay(EmaConfig cfg, long optimization_step) {
    long s = optimization_step - cfg.update_after_step - 1;
    if (s <= 0) return 0.0;
    double decay = cfg.use_warmup ? 1.0 - pow(1.0 + (double)s / cfg.inv_gamma, -cfg.power)
                                  : (1.0 + (double)s) / (10.0 + (double)s);
    decay = fmin(decay, cfg.max_decay);
    return fmax(decay, cfg.min_decay);
}

void ema_update(float *ema, const float *params, size_t n, double decay) {
    const float one_minus_decay = (float)(1.0 - decay);
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; i++) ema[i] -= one_minus_decay * (ema[i] - params[i]);
}
