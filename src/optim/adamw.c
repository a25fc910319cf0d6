/* AdamW (see adamw.h). Bias corrections are computed in double, as PyTorch computes them in Python floats. */
#include "optim/adamw.h"

#include <math.h>

#include "core/check.h"

AdamWConfig adamw_diffusers_defaults(void) {
    return (AdamWConfig){.beta1 = 0.95f, .beta2 = 0.999f, .eps = 1e-8f, .weight_decay = 1e-6f};
}

void adamw_step(float *params, const float *grads, float *m, float *v, size_t n, AdamWConfig cfg, float lr, long step) {
    CHECK(step >= 1, "adamw_step: step %ld, counted from 1", step);
    CHECK(cfg.beta1 >= 0 && cfg.beta1 < 1 && cfg.beta2 >= 0 && cfg.beta2 < 1, "adamw_step: betas (%g, %g) not in [0, 1)",
          (double)cfg.beta1, (double)cfg.beta2);
    const float decay = (float)(1.0 - (double)lr * cfg.weight_decay);
    const double bias_correction1 = 1.0 - pow(cfg.beta1, (double)step);
    const float step_size = (float)(lr / bias_correction1);
    const float bias_correction2_sqrt = (float)sqrt(1.0 - pow(cfg.beta2, (double)step));
    const float one_minus_beta1 = 1 - cfg.beta1, one_minus_beta2 = 1 - cfg.beta2;
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; i++) {
        float g = grads[i];
        float p = params[i] * decay;
        float mi = m[i] + one_minus_beta1 * (g - m[i]);
        float vi = v[i] * cfg.beta2 + one_minus_beta2 * g * g;
        float denom = sqrtf(vi) / bias_correction2_sqrt + cfg.eps;
        m[i] = mi;
        v[i] = vi;
        params[i] = p - step_size * (mi / denom);
    }
}
