/* Activations, elementwise over any shape. SiLU (swish): out = x * sigmoid(x). */
#ifndef DIFFUSE_ACT_H
#define DIFFUSE_ACT_H

#include "core/tensor.h"

void silu_forward(Tensor out, Tensor inp);
void silu_backward(Tensor dinp, Tensor dout, Tensor inp);

#endif
