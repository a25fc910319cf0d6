/* AdamW (Loshchilov & Hutter 2019), as torch.optim.AdamW (single-tensor path, amsgrad off):
 *   p *= 1 - lr * weight_decay                              (decoupled weight decay)
 *   m += (1 - beta1) (g - m);  v = beta2 v + (1 - beta2) g^2
 *   p -= lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
 * diffusers' train_unconditional defaults: lr 1e-4, betas (0.95, 0.999), weight decay 1e-6, eps 1e-8. */
#ifndef DIFFUSE_ADAMW_H
#define DIFFUSE_ADAMW_H

#include <stddef.h>

typedef struct AdamWConfig {
    float beta1, beta2, eps, weight_decay;
} AdamWConfig;

/* diffusers' train_unconditional defaults (the learning rate is passed to each step). */
AdamWConfig adamw_diffusers_defaults(void);

/* step counts optimizer steps from 1; m and v (n floats each) start at zero. */
void adamw_step(float *params, const float *grads, float *m, float *v, size_t n, AdamWConfig cfg, float lr, long step);

#endif
