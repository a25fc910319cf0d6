/* The U-Net's layers as the forward and backward passes see them (internal to src/nn): each layer's
 * parameter and gradient views, the activations it saves for backward, and the forward / backward
 * functions per layer kind. unet.c walks the layers; resnet_block.c and attention_block.c hold the two
 * big kinds, unet.c the small ones.
 *
 * Memory: every layer's output and saved activations are planned once (core/arena.h) for a batch size
 * and resolution, each for the steps it is in use (unet.c), so buffers share memory where their
 * lifetimes allow. Passes use a few numbered scratch buffers shared by all layers, since layers run one at
 * a time; each is as large as the most any layer asks of it (the *_scratch_needs functions, next to the
 * code that uses the buffers); gradient buffers are zeroed right before ops accumulate into them. */
#ifndef DIFFUSE_UNET_LAYERS_H
#define DIFFUSE_UNET_LAYERS_H

#include <stdbool.h>
#include <stdint.h>

#include "core/arena.h"
#include "core/tensor.h"
#include "nn/unet_layout.h"
#include "ops/conv2d.h"

/* Scratch buffers: enough for the resnet block, the layer that needs the most at once. */
enum { UNET_N_SCRATCH = 7 };

typedef struct UNetScratch {
    float *buf[UNET_N_SCRATCH];
    size_t n_floats[UNET_N_SCRATCH];
} UNetScratch;

/* need[i] = max(need[i], n_floats): how the *_scratch_needs functions declare what they use. */
void unet_scratch_need(size_t need[UNET_N_SCRATCH], int i, size_t n_floats);

/* A view of scratch buffer i with the given shape: as it is; zero-filled (about to be accumulated into);
 * or marked for overwriting (tensor_overwrite), for a gradient whose first writer is one of the ops that
 * take such a gradient (ops.h): pass it to that op, then tensor_accumulate(it) to any other. */
Tensor unet_scratch_view(const UNetScratch *s, int i, int ndim, const size_t *shape);
Tensor unet_scratch_zeroed(const UNetScratch *s, int i, int ndim, const size_t *shape);
Tensor unet_scratch_to_write(const UNetScratch *s, int i, int ndim, const size_t *shape);
#define SCRATCH4(s, i, a, b, c, d) unet_scratch_zeroed((s), (i), 4, (size_t[]){(a), (b), (c), (d)})
#define SCRATCH2(s, i, a, b) unet_scratch_zeroed((s), (i), 2, (size_t[]){(a), (b)})
#define SCRATCH4_TO_WRITE(s, i, a, b, c, d) unet_scratch_to_write((s), (i), 4, (size_t[]){(a), (b), (c), (d)})

/* What a training forward pass needs beyond its inputs: dropout decisions keyed by the step and each
 * sample's global index, so they do not depend on how a batch is split over ranks. */
typedef struct UNetDropoutKeys {
    bool active;
    uint64_t seed, step;
    const uint64_t *sample_ids; /* N */
} UNetDropoutKeys;

/* A convolution's input written by a fused GroupNorm + SiLU and read by nothing else: fp32, or in a bf16
 * plan (the precision at unet_plan is bf16) rounded to bf16 as it is written (nn/conv_input.c). */
typedef struct ConvInput {
    Tensor f32;     /* none in a bf16 plan */
    Bf16Image bf16; /* data NULL in an fp32 plan */
} ConvInput;

void conv_input_plan(ConvInput *in, Arena *arena, bool bf16, size_t n, size_t h, size_t w, size_t c);
/* in = silu(group_norm(concat(x, x2) + shift)): x2 more channels or none, shift (N, C) per sample and channel
 * or none (group_norm.h) */
void conv_input_norm_silu(ConvInput *in, Tensor mean, Tensor rstd, Tensor x, Tensor x2, Tensor shift, Tensor weight,
                          Tensor bias, int groups, float eps);
void conv_input_forward(Tensor out, const ConvInput *in, Tensor weight, Tensor bias, Conv2dParams p);
void conv_input_backward(Tensor dinp, Tensor dweight, Tensor dbias, Tensor dout, const ConvInput *in, Tensor weight,
                         Conv2dParams p);

/* Group norms followed by SiLU run fused (ops/group_norm.h): their normalised values are not stored but
 * recomputed by backward from the norm's input and statistics. x_cat, the input concatenated with the
 * skip, is not saved either, nor in most blocks formed by forward (see resnet_block.c). */
typedef struct ResnetActs {
    Tensor mean1, rstd1; /* norm1 statistics */
    ConvInput a1, a1r;   /* silu(norm1(x_cat)) (fp32 when the block resamples), and conv1's input: a1
                            resampled (fp32), or a1 itself */
    Tensor xr;           /* x_cat resampled, when the block resamples */
    Tensor c1;           /* conv1 output (+ time projection in "default" mode): norm2's input */
    Tensor temb;         /* time_emb_proj(silu(emb)): (N, C) or (N, 2C) */
    Tensor mean2, rstd2; /* norm2 statistics */
    Tensor n2, n2s;      /* "scale_shift" mode only: norm2 output and n2 * (1 + scale) + shift */
    ConvInput a2;        /* dropout(silu(...)): conv2's input, fp32 with dropout or scale_shift */
} ResnetActs;

/* The group norm's output is not saved (see attention_block.c). In a bf16 plan, where the attention takes
 * bf16 operands anyway (attention_reads_bf16), q, k and v are kept in bf16 as the projections write them,
 * and the projections read the normed tokens in bf16. */
typedef struct AttentionActs {
    Tensor mean, rstd;   /* group norm statistics */
    Tensor qkv[3];       /* q, k, v in fp32, or none when kept in bf16 */
    uint16_t *qkv16[3];  /* q, k, v in bf16, or NULL */
    Tensor o, lse;
} AttentionActs;

typedef struct TimeActs {
    Tensor sinusoid, h1, a1, emb, class_emb;
    Tensor silu_emb; /* what every resnet's time_emb_proj reads */
} TimeActs;

typedef struct LayerState {
    const UNetLayer *layer;
    bool bf16; /* planned for bf16 precision: conv inputs written by fused norms are kept in bf16 */
    Tensor p[UNET_N_PARAM_SLOTS], g[UNET_N_PARAM_SLOTS]; /* parameters and gradients (none when absent) */
    size_t n, in_h, in_w, out_h, out_w;
    Tensor out; /* (N, out_h, out_w, out_channels); the time embedding's is silu_emb */
    union {
        ResnetActs resnet;
        AttentionActs attn;
        TimeActs time;
        struct {
            Tensor x_in; /* conv_in: the centred input (center_input_sample) */
        } conv_in;
        struct {
            float *phase_weights; /* upsample: its 2x2 phase kernels (ops/upsample_conv.h), or NULL */
        } upsample;
        struct {
            Tensor mean, rstd; /* out: conv_norm_out statistics */
            ConvInput act;     /* silu(conv_norm_out(h)): the conv's input */
        } head;
    };
} LayerState;

/* The *_plan functions request a layer's saved activations; unet.c requests its output. */
void resnet_plan(LayerState *s, Arena *arena);
/* The scratch floats per buffer that resnet_forward (and resnet_backward when `backward`) use. */
void resnet_scratch_needs(const LayerState *s, bool backward, size_t need[UNET_N_SCRATCH]);
/* Forward uses scratch too (the shortcut conv's output, the scale/shift halves). */
void resnet_forward(LayerState *s, Tensor in, Tensor skip, Tensor silu_emb, const UNetScratch *scratch,
                    const UNetDropoutKeys *keys, uint64_t layer_index);
/* in and skip are the forward pass's inputs; d_in and d_skip accumulate, or are written when marked for
 * overwriting (d_skip always may be, d_in where resnet_writes_d_in); d_silu_emb accumulates the
 * time-projection gradient. */
bool resnet_writes_d_in(const LayerState *s);
void resnet_backward(LayerState *s, Tensor d_in, Tensor d_skip, Tensor d_silu_emb, Tensor dout, Tensor in, Tensor skip,
                     Tensor silu_emb, const UNetScratch *scratch, const UNetDropoutKeys *keys, uint64_t layer_index);

void attention_plan(LayerState *s, Arena *arena);
void attention_scratch_needs(const LayerState *s, bool backward, size_t need[UNET_N_SCRATCH]);
void attention_block_forward(LayerState *s, Tensor in, const UNetScratch *scratch);
/* d_in accumulates, or is written when marked for overwriting. */
void attention_block_backward(LayerState *s, Tensor d_in, Tensor dout, Tensor in, const UNetScratch *scratch);

#endif
