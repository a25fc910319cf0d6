/* 2-D convolution (cross-correlation, as torch.nn.Conv2d) with bias, any kernel size, stride 1 or 2 and
 * independent padding per side: google's DDPM checkpoints pad (left 0, right 1, top 0, bottom 1) before a
 * stride-2 conv (diffusers Downsample2D with padding=0).
 *   out[n, y, x, o] = bias[o] + sum_{i, ky, kx} inp[n, y*s + ky - pad_top, x*s + kx - pad_left, i] * weight[o, i, ky, kx]
 * with out-of-range input positions reading zero.
 * Shapes: inp (N, H, W, Ci), weight (Co, Ci, kH, kW), bias (Co) or none, out (N, Ho, Wo, Co),
 *   Ho = (H + pad_top + pad_bottom - kH) / stride + 1, likewise Wo.
 *
 * conv2d_forward / conv2d_backward run on oneDNN (conv2d_dnnl.c); the _reference twins are plain loops
 * (conv2d_reference.c). Backward ACCUMULATES into dinp, dweight and dbias; any of them may be
 * tensor_none() and is then not computed (the fast path skips the matching oneDNN primitive). Every call
 * CHECKs the shapes against each other, the stride (1 or 2), the padding (>= 0) and that no output
 * overlaps an input. Results are repeatable bit for bit at a fixed thread count; the fast path's dweight
 * and dbias may change in the last bits with the thread count (oneDNN's reduction order). */
#ifndef DIFFUSE_CONV2D_H
#define DIFFUSE_CONV2D_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

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

/* bf16 precision (ops/precision.h) only: the same passes with the input already rounded to bf16, as
 * group_norm_silu_forward_bf16 writes it, which saves rounding it on every call and half its memory. */
typedef struct Bf16Image {
    const uint16_t *data; /* (N, H, W, C) */
    size_t n, h, w, c;
} Bf16Image;

void conv2d_forward_bf16_input(Tensor out, Bf16Image inp, Tensor weight, Tensor bias, Conv2dParams p);
void conv2d_backward_bf16_input(Tensor dinp, Tensor dweight, Tensor dbias, Tensor dout, Bf16Image inp, Tensor weight,
                                Conv2dParams p);

void conv2d_forward_reference(Tensor out, Tensor inp, Tensor weight, Tensor bias, Conv2dParams p);
void conv2d_backward_reference(Tensor dinp, Tensor dweight, Tensor dbias, Tensor dout, Tensor inp, Tensor weight,
                               Conv2dParams p);

/* The fast path keeps its oneDNN primitives and scratch buffers per shape after first use (so a
 * warmed-up call allocates nothing). This releases them all, e.g. after a run's last step or before a
 * leak check; the next call rebuilds what it needs. */
void conv2d_cache_free(void);

/* Sampling runs the same weights step after step. While held, the fast path's bf16 forward keeps each
 * weight tensor rounded to bf16 in its kernel's layout from its first use, by the tensor's address, and
 * rounds it no more; the caller promises that no weight it passes to conv2d_forward changes until it
 * releases them with conv2d_hold_weights(false), which frees the copies (as conv2d_cache_free does).
 * The copies take half the size of the convolution weights (the bf16 Winograd's, conv2d_winograd_bf16.c,
 * 16/9 of that: its 4x4 transformed kernels). fp32 forwards hold their moved copies too (and the fp32
 * Winograd, conv2d_winograd_fp32.c, its transformed weights, within 64 MB of their own),
 * but only while all copies fit in 64 MB: an fp32 move is cheap (1-2 % of a ddpm-cifar10 sampling step,
 * against 7 % for bf16's rounding reorder; 0.5 % of fashion-mnist's, whose weights all fit) and a copy
 * of all is as large as the weights (+0.86 GB for the default preset, past PyTorch's sampling memory). */
void conv2d_hold_weights(bool hold);

#endif
