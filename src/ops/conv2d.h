/* 2-D convolution (cross-correlation, as torch.nn.Conv2d) with bias, any kernel size, stride 1 or 2 and
 * independent padding per side: google's DDPM checkpoints pad (left 0, right 1, top 0, bottom 1) before a
 * stride-2 conv (diffusers Downsample2D with padding=0).
 *   out[n, y, x, o] = bias[o] + sum_{i, ky, kx} inp[n, y*s + ky - pad_top, x*s + kx - pad_left, i] * weight[o, i, ky, kx]
 * with out-of-range input positions reading zero.
 * Shapes: inp (N, H, W, Ci), weight (Co, Ci, kH, kW), bias (Co) or none, out (N, Ho, Wo, Co),
 *   Ho = (H + pad_top + pad_bottom - kH) / stride + 1, likewise Wo. */
#ifndef DIFFUSE_CONV2D_H
#define DIFFUSE_CONV2D_H

#include <stddef.h>

#include "core/tensor.h"

typedef struct Conv2dParams {
    int stride; /* 1 or 2 */
    int pad_top, pad_bottom, pad_left, pad_right;
} Conv2dParams;

/* Stride s and the same padding p on every side. */
Conv2dParams conv2d_params(int stride, int pad);
/* Output size along one axis (0 when the kernel does not fit). */
size_t conv2d_out_size(size_t in, size_t kernel, int stride, int pad_lo, int pad_hi);

void conv2d_forward(Tensor out, Tensor inp, Tensor weight, Tensor bias, Conv2dParams p);
void conv2d_backward(Tensor dinp, Tensor dweight, Tensor dbias, Tensor dout, Tensor inp, Tensor weight, Conv2dParams p);

void conv2d_forward_reference(Tensor out, Tensor inp, Tensor weight, Tensor bias, Conv2dParams p);
void conv2d_backward_reference(Tensor dinp, Tensor dweight, Tensor dbias, Tensor dout, Tensor inp, Tensor weight,
                               Conv2dParams p);

#endif
