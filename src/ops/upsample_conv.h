/* Nearest 2x upsampling followed by a 3x3 convolution with padding 1, as diffusers' Upsample2D runs it
 * (F.interpolate(scale_factor=2, mode="nearest"), then conv):
 *   out = conv2d(upsample_nearest2x(inp), weight, bias, stride 1, padding 1)
 * Shapes: inp (N, H, W, Ci), weight (Co, Ci, 3, 3), bias (Co) or none, out (N, 2H, 2W, Co).
 *
 * Narrow layers (fewer than UPSAMPLE_CONV_PHASES_MAX_CHANNELS input channels) compute it without the
 * upsampled image: each of the four output phases (even or odd row, even or odd column) sees only a 2x2
 * block of inp, through a 2x2 kernel whose taps are sums of the 3x3 kernel's. So four 2x2 convolutions of
 * inp, 4/9 of the multiply-adds, written in place in out where they run on our fp32 Winograd (else one pass
 * interleaves their outputs). Wider layers upsample and convolve, where the 3x3 convolution runs as
 * Winograd, as fast or faster, unless the phases' 2x2 convolutions run as our fp32 Winograd too
 * (conv2d_winograd_fp32_serves); measured in upsample_conv.c.
 *
 * Work buffers, sized by the caller from upsample_conv_work_floats:
 *   work           the upsampled image (and its gradient), or the phases' outputs (or gradients, and
 *                  the 2x2 kernels' gradients);
 *   phase_weights  16 Co Ci floats when the shape takes the phases (NULL otherwise): the 2x2 kernels,
 *                  written by every call. Each layer needs its own: conv2d_hold_weights keeps weights
 *                  by address.
 * Backward accumulates into dinp, dweight and dbias (ops.h); any may be tensor_none(). */
#ifndef DIFFUSE_UPSAMPLE_CONV_H
#define DIFFUSE_UPSAMPLE_CONV_H

#include <stdbool.h>
#include <stddef.h>

#include "core/tensor.h"

#define UPSAMPLE_CONV_PHASES_MAX_CHANNELS 128

/* Whether a layer from inp (n, h, w, ci) to co channels takes the four phases (the rule above, or the
 * tuning below). */
bool upsample_conv_uses_phases(size_t n, size_t h, size_t w, size_t ci, size_t co);
/* Floats of `work` for a forward (and, with `backward`, a backward) of that layer. */
size_t upsample_conv_work_floats(size_t n, size_t h, size_t w, size_t ci, size_t co, bool backward);
/* Floats of `phase_weights`: 16 co ci when the layer takes the phases, else 0. */
size_t upsample_conv_phase_weight_floats(size_t n, size_t h, size_t w, size_t ci, size_t co);

void upsample_conv_forward(Tensor out, Tensor inp, Tensor weight, Tensor bias, float *work, float *phase_weights);
void upsample_conv_backward(Tensor dinp, Tensor dweight, Tensor dbias, Tensor dout, Tensor inp, Tensor weight,
                            float *work, float *phase_weights);

/* Tests and benchmarks: force the phases (1) or the upsampled image (0) at any width; -1 restores the rule. */
void upsample_conv_force_phases(int mode);

#endif
