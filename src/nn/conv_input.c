/* A convolution's input as a U-Net layer keeps it (see unet_layers.h): fp32, or in bf16 plans rounded to
 * bf16 by the fused GroupNorm + SiLU that writes it. A bf16 convolution rounds its fp32 input anyway, so
 * the bf16 copy gives the same results while it skips the rounding pass in forward and backward and
 * halves the activation's memory. */
#include "core/check.h"
#include "nn/unet_layers.h"
#include "ops/ops.h"

void conv_input_plan(ConvInput *in, Arena *arena, bool bf16, size_t n, size_t h, size_t w, size_t c) {
    *in = (ConvInput){.f32 = tensor_none()};
    if (bf16) {
        /* the arena counts floats: two bf16 values each */
        in->bf16 = (Bf16Image){(const uint16_t *)arena_floats(arena, (n * h * w * c + 1) / 2), n, h, w, c};
    } else {
        in->f32 = tensor_4d(arena_floats(arena, n * h * w * c), n, h, w, c);
    }
}

void conv_input_norm_silu(ConvInput *in, Tensor mean, Tensor rstd, Tensor x, Tensor x2, Tensor shift, Tensor weight,
                          Tensor bias, int groups, float eps) {
    if (in->bf16.data)
        group_norm_silu_forward_bf16((uint16_t *)in->bf16.data, mean, rstd, x, x2, shift, weight, bias, groups, eps);
    else
        group_norm_silu_forward(in->f32, mean, rstd, x, x2, shift, weight, bias, groups, eps);
}

void conv_input_forward(Tensor out, const ConvInput *in, Tensor weight, Tensor bias, Conv2dParams p) {
    if (in->bf16.data) conv2d_forward_bf16_input(out, in->bf16, weight, bias, p);
    else conv2d_forward(out, in->f32, weight, bias, p);
}

void conv_input_backward(Tensor dinp, Tensor dweight, Tensor dbias, Tensor dout, const ConvInput *in, Tensor weight,
                         Conv2dParams p) {
    if (in->bf16.data) conv2d_backward_bf16_input(dinp, dweight, dbias, dout, in->bf16, weight, p);
    else conv2d_backward(dinp, dweight, dbias, dout, in->f32, weight, p);
}
