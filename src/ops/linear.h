/* Fully connected layer, as torch.nn.Linear: out = inp weightᵀ + bias over the last dimension.
 * Shapes: inp (..., Fi), weight (Fo, Fi), bias (Fo) or none, out (..., Fo); the leading dimensions
 * (M rows in all, e.g. N * L tokens of a channels-last image) must agree between inp and out.
 * The forward overwrites out; the backward accumulates into dinp (..., Fi), dweight (Fo, Fi) and
 * dbias (Fo), any of which may be tensor_none().
 *
 * linear_forward / linear_backward run on oneDNN's sgemm and matmul, narrow layers on our own kernels
 * (ops/narrow_gemm.c; see linear.c for the measurements behind the choices), or in bf16 precision on AMX
 * (or AVX-512 BF16, wide layers) on bf16 operands with fp32 accumulation (linear_dnnl.c); the _reference
 * pair is plain loops for the tests. */
#ifndef DIFFUSE_LINEAR_H
#define DIFFUSE_LINEAR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/tensor.h"

void linear_forward(Tensor out, Tensor inp, Tensor weight, Tensor bias);
/* out = (inp weightᵀ + bias + residual) scale, residual shaped as out and apart from it: a linear layer that
 * ends a residual block (diffusers' attention: to_out, + the block's input, / rescale_output_factor), in
 * one pass where narrow_gemm serves. Its backward is linear_backward's with dout scale, and dout scale for
 * the residual. */
void linear_residual_forward(Tensor out, Tensor inp, Tensor weight, Tensor bias, Tensor residual, float scale);
void linear_backward(Tensor dinp, Tensor dweight, Tensor dbias, Tensor dout, Tensor inp, Tensor weight);
/* dbias (Fo) += dout (..., Fo) summed over its rows: linear_backward's bias gradient alone, for any bias added
 * along the last dimension (a resnet's conv1 bias from the time embedding's gradient, which already holds
 * c1's gradient summed over positions). */
void linear_bias_backward(Tensor dbias, Tensor dout);

/* bf16 precision: whether linear_forward takes the bf16 products at these sizes (M rows, Fi -> Fo); then
 * the same passes on inp given in bf16, M rows of Fi (as group_norm_forward_bf16 writes it), the forward
 * writing out (M rows of Fo) rounded to bf16 for a bf16 op to read (attention_forward_bf16_qkv). They
 * give the bits linear_forward (out rounded) and linear_backward give on inp's values, without rounding
 * inp on every call. */
bool linear_takes_bf16(size_t M, size_t Fi, size_t Fo);
void linear_forward_bf16(uint16_t *out, const uint16_t *inp, size_t M, Tensor weight, Tensor bias);
void linear_backward_bf16_input(Tensor dinp, Tensor dweight, Tensor dbias, Tensor dout, const uint16_t *inp,
                                Tensor weight);

void linear_forward_reference(Tensor out, Tensor inp, Tensor weight, Tensor bias);
void linear_backward_reference(Tensor dinp, Tensor dweight, Tensor dbias, Tensor dout, Tensor inp, Tensor weight);

#endif
