/* The elementwise glue between a U-Net's layers, on channels-last activations. (N, ..., C) below is
 * (N, H, W, C), (N, L, C) or (N, C): any positions between the batch and the channels.
 * concat_channels:  out (N, ..., Ca + Cb) = [a (N, ..., Ca), b (N, ..., Cb)] along channels (skips).
 * add_scaled:       out = (a + b) * scale, all the same shape (residual add divided by the block's
 *                   output_scale_factor: scale = 1 / output_scale_factor). out may alias a or b; in
 *                   backward da and db may be the same buffer.
 * add_channel:      out (N, ..., C) = inp + v[n, c], v (N, C) (time embedding added to every position).
 *                   out may alias inp.
 * scale_shift:      out (N, ..., C) = inp * (1 + scale[n, c]) + shift[n, c], scale, shift (N, C)
 *                   (resnet_time_scale_shift = "scale_shift"). out may alias inp.
 * Backward functions accumulate; any gradient may be tensor_none(). The per-channel sums (dv, dscale,
 * dshift) are accumulated in double and do not depend on the thread count. */
#ifndef DIFFUSE_ELEMENTWISE_H
#define DIFFUSE_ELEMENTWISE_H

#include "core/tensor.h"

void concat_channels_forward(Tensor out, Tensor a, Tensor b);
void concat_channels_backward(Tensor da, Tensor db, Tensor dout);

void add_scaled_forward(Tensor out, Tensor a, Tensor b, float scale);
void add_scaled_backward(Tensor da, Tensor db, Tensor dout, float scale);

void add_channel_forward(Tensor out, Tensor inp, Tensor v);
void add_channel_backward(Tensor dinp, Tensor dv, Tensor dout);

void scale_shift_forward(Tensor out, Tensor inp, Tensor scale, Tensor shift);
/* inp is the forward's input (saved, not overwritten: forward must not run in place when backward follows). */
void scale_shift_backward(Tensor dinp, Tensor dscale, Tensor dshift, Tensor dout, Tensor inp, Tensor scale);

#endif
