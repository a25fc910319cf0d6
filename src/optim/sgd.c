/* SGD (see sgd.h), in torch.optim.SGD's order of operations. */
#include "optim/sgd.h"

#include "core/check.h"

void sgd_step(float *params, const float *grads, float *momentum_buf, size_t n, SgdConfig cfg, float lr, long step) {
    CHECK(step >= 1, "sgd_step: step %ld, counted from 1", step);
    CHECK(cfg.momentum == 0 || momentum_buf, "sgd_step: momentum %g needs a momentum buffer", (double)cfg.momentum);
    CHECK(!cfg.nesterov || (cfg.momentum > 0 && cfg.dampening == 0),
          "sgd_step: Nesterov momentum requires momentum > 0 and dampening 0 (as PyTorch)");
    const bool first = step == 1;
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) {
        float g = grads[i];
        if (cfg.weight_decay != 0) g += cfg.weight_decay * params[i];
        if (cfg.momentum != 0) {
            float buf = first ? g : cfg.momentum * momentum_buf[i] + (1 - cfg.dampening) * g;
            momentum_buf[i] = buf;
            g = cfg.nesterov ? g + cfg.momentum * buf : buf;
        }
        params[i] -= lr * g;
    }
}
