/* diffusers' UNet2DModel: the noise-prediction network eps = UNet(x_t, t[, class]), forward and backward.
 * Parameters and gradients are flat buffers laid out by the layout's parameter table (nn/params.h), so the
 * optimizer, EMA, all-reduce and checkpoint I/O see one array each. Activations are planned once for a
 * batch size and resolution (unet_plan); a forward or backward pass allocates nothing. A model without
 * gradients plans for forward passes alone, which keep little more than the skip connections.
 * Images are channels-last: x and the output are (N, H, W, C). */
#ifndef DIFFUSE_UNET_H
#define DIFFUSE_UNET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/arena.h"
#include "core/error.h"
#include "nn/unet_layers.h"
#include "nn/unet_layout.h"

typedef struct UNet {
    UNetLayout layout; /* config, layers, parameter table */
    size_t n_params;
    float *params;
    float *grads; /* NULL for a sampling-only model */

    /* The plan: set by unet_plan. */
    size_t batch, height, width;
    bool bf16_activations; /* planned in bf16 precision: see ConvInput (unet_layers.h) */
    Arena arena;
    LayerState *states; /* one per layout layer */
    int *skip_source;   /* per layer: the layer whose output it concatenates, or -1 */
    UNetScratch scratch;
    Tensor x_in;        /* the last forward's input (centred when the config says so) */
    float *timesteps;   /* the last forward's time steps (N) */
    int *class_labels;  /* the last forward's labels (N), when the model is class-conditional */
    UNetDropoutKeys dropout;
    /* Backward only: output gradients of the layers whose output is also a skip, and two alternating
     * buffers for the rest of the chain. */
    Tensor *d_skip_out;
    float *d_chain[2];
    Tensor d_silu_emb;
} UNet;

/* Builds the layout and allocates zeroed parameters (and gradients when with_grads). */
int unet_init(UNet *net, const UNetConfig *cfg, bool with_grads, Error *err);
void unet_free(UNet *net);

/* PyTorch-default initial values from the seed (nn/params.h). */
void unet_init_weights(UNet *net, uint64_t seed);

/* Plans activations for `batch` images of height x width (each divisible by 2^(blocks - 1)). Replaces
 * any earlier plan. In bf16 precision (ops/precision.h) the convolution inputs that fused norms write are
 * kept in bf16; such a plan then needs bf16 precision for its passes. An error (and no plan) when the
 * activations need more memory than the machine gives. */
int unet_plan(UNet *net, size_t batch, size_t height, size_t width, Error *err);

/* Tests only: false makes bf16 plans keep every activation in fp32 (the convolutions round their inputs
 * themselves), to check that the bf16 copies give the same results. */
void unet_bf16_activations(bool on);
size_t unet_plan_bytes(const UNet *net);

/* out (N, H, W, out_channels) = UNet(x (N, H, W, in_channels), timesteps (N), class_labels (N) or NULL).
 * dropout NULL (or inactive) evaluates without dropout; training passes the step's keys. */
void unet_forward(UNet *net, float *out, const float *x, const float *timesteps, const int *class_labels,
                  const UNetDropoutKeys *dropout);

/* Accumulates into net->grads the gradient of sum(out * dout) for the last forward pass; dx, when not
 * NULL, accumulates the gradient with respect to x. Once per forward pass: backward reuses the memory of
 * the activations it is done with. */
void unet_backward(UNet *net, float *dx, const float *dout);

void unet_zero_grads(UNet *net);

#endif
