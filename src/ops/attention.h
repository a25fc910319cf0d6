/* Multi-head scaled dot-product attention, as diffusers' AttnProcessor2_0 computes it
 * (torch.nn.functional.scaled_dot_product_attention, no mask, no dropout, fp32 softmax):
 *   for every batch n and head h (channels h*D .. h*D+D-1 of C):
 *     out[n, i, h] = sum_j softmax_j(scale * q[n, i, h] . k[n, j, h]) v[n, j, h]
 * Shapes: q, out (N, Lq, C); k, v (N, Lk, C), Lk may differ from Lq; C = n_heads * D, any D (a single
 * head of all channels too); lse (N, n_heads, Lq) saves each softmax row's log-sum-exp (of the scaled
 * scores) for backward, so the fast path never stores the (Lq, Lk) score matrix. diffusers' scale is
 * 1 / sqrt(D); scale must be positive and finite. The forward overwrites out and lse; the backward
 * accumulates into dq, dk, dv (any may be tensor_none()) and reads out and lse from the forward.
 *
 * attention_forward / attention_backward are fused kernels (attention_kernels.c), working on the
 * channels-last layout directly: no transposes, no allocation once warmed up, results identical for any
 * thread count. In bf16 precision (ops/precision.h), on CPUs with AMX and for heads of 32 channels or more
 * (attention_bf16.c says exactly where it measured faster), the four products take bf16 operands with fp32
 * accumulation instead, as under torch.autocast(dtype=torch.bfloat16): q, k, v, dout, the probabilities and
 * the score gradients are rounded to bf16, softmax, lse and all else stay fp32; repeatable for a fixed
 * thread count. The _reference pair is the formula in plain loops, in double, for the tests. */
#ifndef DIFFUSE_ATTENTION_H
#define DIFFUSE_ATTENTION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/tensor.h"

void attention_forward(Tensor out, Tensor lse, Tensor q, Tensor k, Tensor v, int n_heads, float scale);
void attention_backward(Tensor dq, Tensor dk, Tensor dv, Tensor dout, Tensor q, Tensor k, Tensor v, Tensor out,
                        Tensor lse, int n_heads, float scale);

/* bf16 precision: whether attention_forward takes the bf16 kernels for a self-attention of N items of L
 * tokens and C channels in n_heads heads, and then the same passes on q, k, v (N, L, C) already rounded
 * to bf16 (linear_forward_to_bf16): the bits attention_forward / attention_backward give on their fp32
 * values, without rounding them on every call, in half their memory. */
bool attention_reads_bf16(size_t N, size_t L, size_t C, int n_heads);
void attention_forward_bf16_qkv(Tensor out, Tensor lse, const uint16_t *q, const uint16_t *k, const uint16_t *v,
                                int n_heads, float scale);
void attention_backward_bf16_qkv(Tensor dq, Tensor dk, Tensor dv, Tensor dout, const uint16_t *q, const uint16_t *k,
                                 const uint16_t *v, Tensor out, Tensor lse, int n_heads, float scale);

void attention_forward_reference(Tensor out, Tensor lse, Tensor q, Tensor k, Tensor v, int n_heads, float scale);
void attention_backward_reference(Tensor dq, Tensor dk, Tensor dv, Tensor dout, Tensor q, Tensor k, Tensor v,
                                  Tensor out, Tensor lse, int n_heads, float scale);

#endif
