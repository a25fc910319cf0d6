/* Multi-head scaled dot-product attention, as diffusers' AttnProcessor2_0 computes it
 * (torch.nn.functional.scaled_dot_product_attention, no mask, no dropout, fp32 softmax):
 *   for every batch n and head h (channels h*D .. h*D+D-1 of C):
 *     out[n, i, h] = sum_j softmax_j(scale * q[n, i, h] . k[n, j, h]) v[n, j, h]
 * Shapes: q, out (N, Lq, C); k, v (N, Lk, C); C = n_heads * D, any D (a single head of all channels
 * too); lse (N, n_heads, Lq) saves each softmax row's log-sum-exp (of the scaled scores) for backward,
 * so the fast path never stores the (Lq, Lk) score matrix. diffusers' scale is 1 / sqrt(D). */
#ifndef DIFFUSE_ATTENTION_H
#define DIFFUSE_ATTENTION_H

#include "core/tensor.h"

void attention_forward(Tensor out, Tensor lse, Tensor q, Tensor k, Tensor v, int n_heads, float scale);
void attention_backward(Tensor dq, Tensor dk, Tensor dv, Tensor dout, Tensor q, Tensor k, Tensor v, Tensor out,
                        Tensor lse, int n_heads, float scale);

void attention_forward_reference(Tensor out, Tensor lse, Tensor q, Tensor k, Tensor v, int n_heads, float scale);
void attention_backward_reference(Tensor dq, Tensor dk, Tensor dv, Tensor dout, Tensor q, Tensor k, Tensor v,
                                  Tensor out, Tensor lse, int n_heads, float scale);

#endif
