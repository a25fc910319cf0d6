/* Mean squared error, as torch.nn.functional.mse_loss(reduction="mean"): the DDPM L_simple objective.
 * loss = mean((pred - target)^2) over all elements, accumulated in double (the same bits for any thread
 * count).
 * Backward: dpred += dloss * 2 (pred - target) / numel. pred and target have the same shape. */
#ifndef DIFFUSE_LOSS_H
#define DIFFUSE_LOSS_H

#include "core/tensor.h"

double mse_loss_forward(Tensor pred, Tensor target);
void mse_loss_backward(Tensor dpred, Tensor pred, Tensor target, float dloss);

#endif
