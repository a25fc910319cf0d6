/* Stochastic gradient descent with momentum, as torch.optim.SGD (the reference set-up: lr 1e-2, no momentum):
 *   g = grad + weight_decay * p
 *   buf = g on the first step, else momentum * buf + (1 - dampening) * g      (when momentum != 0)
 *   g = nesterov ? g + momentum * buf : buf
 *   p -= lr * g
 * One flat loop over the parameter buffer. */
#ifndef DIFFUSE_SGD_H
#define DIFFUSE_SGD_H

#include <stdbool.h>
#include <stddef.h>

typedef struct SgdConfig {
    float momentum, dampening, weight_decay;
    bool nesterov;
} SgdConfig;

/* step counts optimizer steps from 1; momentum_buf (n floats) is unused when momentum is 0. */
void sgd_step(float *params, const float *grads, float *momentum_buf, size_t n, SgdConfig cfg, float lr, long step);

#endif
