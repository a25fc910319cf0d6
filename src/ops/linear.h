/* Fully connected layer, as torch.nn.Linear: out = inp weightᵀ + bias over the last dimension.
 * Shapes: inp (..., Fi), weight (Fo, Fi), bias (Fo) or none, out (..., Fo); the leading dimensions
 * (M rows in all, e.g. N * L tokens of a channels-last image) must agree between inp and out.
 * The forward overwrites out; the backward accumulates into dinp (..., Fi), dweight (Fo, Fi) and
 * dbias (Fo), any of which may be tensor_none().
 *
 * linear_forward / linear_backward run on oneDNN's sgemm and matmul (see linear.c for the measurements
 * behind the choice), or in bf16 precision on AMX on bf16 operands with fp32 accumulation
 * (linear_dnnl.c); the _reference pair is plain loops for the tests. */
#ifndef DIFFUSE_LINEAR_H
#define DIFFUSE_LINEAR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/tensor.h"

void linear_forward(Tensor out, Tensor inp, Tensor weight, Tensor bias);
void linear_backward(Tensor dinp, Tensor dweight, Tensor dbias, Tensor dout, Tensor inp, Tensor weight);

/* bf16 precision: whether linear_forward takes the bf16 products at these sizes (M rows, Fi -> Fo), and
 * then the same forward with out (..., Fo) rounded to bf16 as it is written, for a bf16 op to read
 * (attention_forward_bf16_qkv): the bits of linear_forward's out, rounded. */
bool linear_writes_bf16(size_t M, size_t Fi, size_t Fo);
void linear_forward_to_bf16(uint16_t *out, Tensor inp, Tensor weight, Tensor bias);

void linear_forward_reference(Tensor out, Tensor inp, Tensor weight, Tensor bias);
void linear_backward_reference(Tensor dinp, Tensor dweight, Tensor dbias, Tensor dout, Tensor inp, Tensor weight);

#endif
