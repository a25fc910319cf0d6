/* The end of diffusers' ResnetBlock2D (models/resnet.py) in one pass:
 *   out = (out + shortcut(concat(a, b))) * scale
 * where out holds the block's branch (conv2's output) on entry, shortcut is conv_shortcut, a 1x1
 * convolution (weight (Co, Ca + Cb, 1, 1), bias (Co) or none), or the identity when weight is none
 * (Ca + Cb == Co), and concat(a, b) is the block's input: an up block's hidden state and skip, or a alone
 * with b none. scale = 1 / output_scale_factor.
 * Shapes: a (N, H, W, Ca), b (N, H, W, Cb) or none, out (N, H, W, Co).
 *
 * It reads a and b where they lie, instead of a concatenated copy, a convolution's output and an add pass
 * over both (shortcut_add.c has the measurements). Only where shortcut_add_fused() says so: an AVX-512
 * build, fp32 precision and the shapes where it beats oneDNN; elsewhere the caller runs concat_channels,
 * conv2d and add_scaled, whose backward functions are also this pass's. */
#ifndef DIFFUSE_SHORTCUT_ADD_H
#define DIFFUSE_SHORTCUT_ADD_H

#include <stdbool.h>
#include <stddef.h>

#include "core/tensor.h"

/* Whether the pass serves (ca + cb) -> co channels with a weight (or the identity), now. */
bool shortcut_add_fused(size_t ca, size_t cb, size_t co, bool has_weight);

void shortcut_add_forward(Tensor out, Tensor a, Tensor b, Tensor weight, Tensor bias, float scale);

/* The shortcut's backward for an input in two parts, given d (N, H, W, Co), the gradient of the sum before
 * the scale (dout scale): da and db (+)= the two parts of d weight (d itself for the identity), each written
 * or added to by its overwrite flag; dweight += dᵀ concat(a, b) and dbias += d's column sums (either may be
 * none). It reads a and b where they lie and writes da and db where they lie: no concatenation of the
 * input nor split of its gradient. Same bits as conv2d_backward on the concatenation (and
 * concat_channels_backward). Only where shortcut_add_backward_fused() says so. */
bool shortcut_add_backward_fused(size_t ca, size_t cb, size_t co, bool has_weight);
void shortcut_add_backward(Tensor da, Tensor db, Tensor dweight, Tensor dbias, Tensor d, Tensor a, Tensor b,
                           Tensor weight);

/* Tests and benchmarks: 0 turns the pass off, 1 on wherever the build has it, -1 restores the rule. */
void shortcut_add_force(int mode);

#endif
