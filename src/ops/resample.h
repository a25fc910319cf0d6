/* Resampling of channels-last images by 2 in each direction.
 * Nearest upsampling (F.interpolate(scale_factor=2, mode="nearest")): out[n, y, x, c] = inp[n, y/2, x/2, c];
 *   inp (N, H, W, C), out (N, 2H, 2W, C).
 * 2x2 average pooling, stride 2 (F.avg_pool2d(kernel_size=2, stride=2), used by diffusers' "resnet"
 *   downsampling): inp (N, H, W, C) with H, W even (CHECKed), out (N, H/2, W/2, C).
 * Backward functions accumulate into dinp. */
#ifndef DIFFUSE_RESAMPLE_H
#define DIFFUSE_RESAMPLE_H

#include "core/tensor.h"

void upsample_nearest2x_forward(Tensor out, Tensor inp);
void upsample_nearest2x_backward(Tensor dinp, Tensor dout);

void avg_pool2x_forward(Tensor out, Tensor inp);
void avg_pool2x_backward(Tensor dinp, Tensor dout);

#endif
