/* Group normalisation with affine parameters, as torch.nn.GroupNorm, on channels-last activations:
 * the C channels form G groups of C/G consecutive channels; each (sample, group) is normalised over all
 * its positions and channels: out = (inp - mean) * rstd * weight[c] + bias[c], rstd = 1 / sqrt(var + eps),
 * var the biased variance (statistics accumulated in double, numerically robust to an offset mean).
 * Shapes: inp, out, dout, dinp (N, ..., C) (e.g. (N, H, W, C) or (N, L, C)); weight, bias, dweight,
 * dbias (C); mean, rstd (N, G), written by forward for backward.
 * weight and bias may be tensor_none() (GroupNorm(affine=False): weight 1, bias 0). Backward accumulates
 * into dinp, dweight, dbias, any of which may be tensor_none(); dweight needs the weight. Results are
 * bitwise identical for any thread count.
 *
 * group_norm_silu_*: out = silu(group_norm(inp)) in one pass, without storing the normalised values;
 * backward takes the gradient of that output and recomputes what it needs from inp, mean, rstd, weight
 * and bias. The forward output has the same bits as group_norm_forward then silu_forward.
 * group_norm_silu_forward_bf16 writes that output rounded to bf16 (core/half.h), inp's shape, for a bf16
 * convolution to read (conv2d_*_bf16_input); its backward is group_norm_silu_backward.
 * group_norm_forward_bf16 likewise writes group_norm_forward's output rounded to bf16, for bf16 linear
 * products to read (linear_forward_bf16_input); its backward is group_norm_backward.
 * shift, (N, C) or tensor_none(): the fused ops normalise inp + shift[n, c] (added at every position), as
 * if that sum were their input, without forming it; backward reads the same inp and shift, and dinp is
 * the gradient with respect to that sum (so also to shift, summed over positions). This is diffusers'
 * ResnetBlock2D adding the time embedding before norm2, with one pass over the activation fewer.
 * inp2, (N, ..., C2) or tensor_none(): the fused ops normalise concat(inp, inp2) along channels (C + C2 of
 * them, shift (N, C + C2)) without forming it, as an up block's resnet does with its hidden state and skip;
 * backward reads the same two parts and writes (or adds to) the input gradient in two parts too, dinp
 * (N, ..., C) and dinp2 (N, ..., C2), each by its own overwrite flag; same bits as on the concatenation. */
#ifndef DIFFUSE_GROUP_NORM_H
#define DIFFUSE_GROUP_NORM_H

#include <stdint.h>

#include "core/tensor.h"

void group_norm_forward(Tensor out, Tensor mean, Tensor rstd, Tensor inp, Tensor weight, Tensor bias, int n_groups,
                        float eps);
void group_norm_backward(Tensor dinp, Tensor dweight, Tensor dbias, Tensor dout, Tensor inp, Tensor mean, Tensor rstd,
                         Tensor weight, int n_groups);
void group_norm_silu_forward(Tensor out, Tensor mean, Tensor rstd, Tensor inp, Tensor inp2, Tensor shift,
                             Tensor weight, Tensor bias, int n_groups, float eps);
void group_norm_forward_bf16(uint16_t *out, Tensor mean, Tensor rstd, Tensor inp, Tensor weight, Tensor bias,
                             int n_groups, float eps);
void group_norm_silu_forward_bf16(uint16_t *out, Tensor mean, Tensor rstd, Tensor inp, Tensor inp2, Tensor shift,
                                  Tensor weight, Tensor bias, int n_groups, float eps);
void group_norm_silu_backward(Tensor dinp, Tensor dinp2, Tensor dweight, Tensor dbias, Tensor dout, Tensor inp,
                              Tensor inp2, Tensor shift, Tensor mean, Tensor rstd, Tensor weight, Tensor bias,
                              int n_groups);

#endif
