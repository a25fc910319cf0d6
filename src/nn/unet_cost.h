/* What a UNet2DModel costs, derived by walking its layout (the same walk the forward pass makes).
 *
 * FLOPs: multiply-adds of the forward pass of one image, counted in three groups:
 *   conv       every convolution (conv_in, resnet conv1/conv2/conv_shortcut, samplers, conv_out):
 *              H_out * W_out * C_out * C_in * kH * kW;
 *   linear     every linear layer (time embedding MLP, resnet time_emb_proj, attention q/k/v/out):
 *              tokens * in * out, where an image has one token for the time layers and H * W for attention;
 *   attention  the two attention matmuls, Q K^T and softmax(.) V: 2 * L^2 * C per attention layer.
 * Not counted: norms, activations, softmax, additions, resampling (a few percent of the total). One
 * multiply-add is 2 FLOPs; a training step costs about 3x the forward (backward = 2 matmuls per matmul).
 *
 * Memory of training at a batch size: parameters, gradients, AdamW's two moments and an EMA copy, all
 * fp32 (5 x 4 bytes per parameter), plus the activations the backward pass needs, as the U-Net keeps
 * them: the op outputs a backward reads (per-group mean/rstd, SiLU outputs, conv and resampling outputs,
 * q/k/v, attention output and its log-sum-exp, never the L x L score matrix), with dropout applied in
 * place, except two that backward recomputes: an up block's input concatenated with its skip and an
 * attention block's normalised tokens. Transient buffers (gradients of activations, kernel workspaces)
 * are not included. */
#ifndef DIFFUSE_UNET_COST_H
#define DIFFUSE_UNET_COST_H

#include <stddef.h>
#include <stdint.h>

#include "nn/unet_layout.h"

typedef struct UNetCost {
    uint64_t conv_macs, linear_macs, attention_macs; /* forward, one image */
    uint64_t saved_floats;                           /* activations kept for backward, one image */
} UNetCost;

/* At height x width (each divisible by 2^(n_blocks - 1); CHECKed). */
UNetCost unet_cost(const UNetLayout *layout, int height, int width);
uint64_t unet_cost_total_macs(const UNetCost *cost);

typedef struct UNetMemory {
    size_t params_bytes, grads_bytes, moments_bytes, ema_bytes, activations_bytes;
    size_t total_bytes;
} UNetMemory;

UNetMemory unet_memory_estimate(const UNetLayout *layout, int height, int width, size_t batch);

#endif
