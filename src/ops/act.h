/* Activations, elementwise over any shape. SiLU (swish): out = x * sigmoid(x), within 3 ulp of exact.
 * out may alias inp; backward accumulates into dinp, from the forward's input. */
#ifndef DIFFUSE_ACT_H
#define DIFFUSE_ACT_H

#include "core/tensor.h"

void silu_forward(Tensor out, Tensor inp);
void silu_backward(Tensor dinp, Tensor dout, Tensor inp);

#endif
