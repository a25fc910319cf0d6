/* The structure of a UNet2DModel built from its config: the layers in forward order, with their channels,
 * resolution levels, skip connections and parameters, plus the parameter table in diffusers' state_dict
 * order. One walk of the config builds both, so the forward pass, the parameter counts, the FLOP and
 * memory estimates and the weight files cannot disagree about what the model is.
 *
 * The forward pass is a loop over `layers`; backward is the same loop reversed:
 *   TIME_EMBEDDING  emb = linear_2(silu(linear_1(sinusoid(t)))) [+ class_embedding[label]]   (N, temb)
 *   CONV_IN         h = conv_in(x)  (x = 2x - 1 first when center_input_sample)
 *   RESNET          h = ResnetBlock2D(concat(h, skip) when skip_channels > 0, emb)
 *   ATTENTION       h = Attention(h)  (group norm when it has one, q/k/v, sdpa, out proj, + h, / scale)
 *   DOWNSAMPLE      h = conv 3x3 stride 2 (padding 1, or 0 after padding right/bottom by one)
 *   UPSAMPLE        h = conv 3x3 (nearest x2 (h))
 *   OUT             out = conv_out(silu(conv_norm_out(h)))
 * A layer with push_skip puts its output on the skip stack (conv_in, every down-block layer pair, every
 * downsampler); a layer with skip_channels > 0 pops the top of the stack and concatenates it after h on
 * the channel axis first. Resolution: level L means (sample_height >> L, sample_width >> L). */
#ifndef DIFFUSE_UNET_LAYOUT_H
#define DIFFUSE_UNET_LAYOUT_H

#include <stdbool.h>
#include <stddef.h>

#include "core/error.h"
#include "core/tensor.h"
#include "nn/params.h"
#include "nn/unet_config.h"

typedef enum UNetLayerKind {
    UNET_LAYER_TIME_EMBEDDING,
    UNET_LAYER_CONV_IN,
    UNET_LAYER_RESNET,
    UNET_LAYER_ATTENTION,
    UNET_LAYER_DOWNSAMPLE,
    UNET_LAYER_UPSAMPLE,
    UNET_LAYER_OUT,
} UNetLayerKind;

const char *unet_layer_kind_name(UNetLayerKind kind);

/* Resampling inside a resnet ("resnet" down/upsample_type): applied after norm1 + SiLU to the main path
 * and to the shortcut input. */
typedef enum UNetResnetResample {
    UNET_RESNET_RESAMPLE_NONE,
    UNET_RESNET_RESAMPLE_DOWN, /* 2x2 average pooling */
    UNET_RESNET_RESAMPLE_UP,   /* nearest x2 */
} UNetResnetResample;

/* Where each parameter of a layer sits in the table: layer->param[slot] is an entry index, or -1 when the
 * layer has no such parameter (a resnet without conv_shortcut, an attention without group_norm, ...). */
typedef enum UNetParamSlot {
    /* TIME_EMBEDDING: time_embedding.linear_1 / linear_2, class_embedding */
    UNET_TIME_LINEAR_1_WEIGHT, UNET_TIME_LINEAR_1_BIAS, UNET_TIME_LINEAR_2_WEIGHT, UNET_TIME_LINEAR_2_BIAS,
    UNET_CLASS_EMBEDDING,
    /* CONV_IN, DOWNSAMPLE, UPSAMPLE: conv_in, downsamplers.0.conv, upsamplers.0.conv */
    UNET_CONV_WEIGHT, UNET_CONV_BIAS,
    /* RESNET */
    UNET_RESNET_NORM1_WEIGHT, UNET_RESNET_NORM1_BIAS, UNET_RESNET_CONV1_WEIGHT, UNET_RESNET_CONV1_BIAS,
    UNET_RESNET_TIME_EMB_PROJ_WEIGHT, UNET_RESNET_TIME_EMB_PROJ_BIAS, UNET_RESNET_NORM2_WEIGHT,
    UNET_RESNET_NORM2_BIAS, UNET_RESNET_CONV2_WEIGHT, UNET_RESNET_CONV2_BIAS, UNET_RESNET_SHORTCUT_WEIGHT,
    UNET_RESNET_SHORTCUT_BIAS,
    /* ATTENTION */
    UNET_ATTN_GROUP_NORM_WEIGHT, UNET_ATTN_GROUP_NORM_BIAS, UNET_ATTN_TO_Q_WEIGHT, UNET_ATTN_TO_Q_BIAS,
    UNET_ATTN_TO_K_WEIGHT, UNET_ATTN_TO_K_BIAS, UNET_ATTN_TO_V_WEIGHT, UNET_ATTN_TO_V_BIAS,
    UNET_ATTN_TO_OUT_WEIGHT, UNET_ATTN_TO_OUT_BIAS,
    /* OUT: conv_norm_out, conv_out */
    UNET_OUT_NORM_WEIGHT, UNET_OUT_NORM_BIAS, UNET_OUT_CONV_WEIGHT, UNET_OUT_CONV_BIAS,
    UNET_N_PARAM_SLOTS
} UNetParamSlot;

#define UNET_MODULE_BYTES 64

/* Which part of the network a layer belongs to. */
typedef enum UNetStage {
    UNET_STAGE_INPUT,  /* TIME_EMBEDDING, CONV_IN */
    UNET_STAGE_DOWN,
    UNET_STAGE_MID,
    UNET_STAGE_UP,
    UNET_STAGE_OUTPUT, /* OUT */
} UNetStage;

typedef struct UNetLayer {
    UNetLayerKind kind;
    UNetStage stage;
    int block; /* index of the down or up block; 0 elsewhere */
    char module[UNET_MODULE_BYTES]; /* state_dict prefix: "down_blocks.1.resnets.0", "conv_in", "" (time, out) */
    int in_channels;   /* channels of h on entry, before any skip concatenation */
    int skip_channels; /* > 0: pop a skip of this many channels and concatenate it after h */
    int out_channels;
    int in_level, out_level; /* resolution levels (a downsample goes L -> L+1) */
    bool push_skip;
    /* RESNET */
    UNetResnetResample resample;
    UNetTimeScaleShift time_scale_shift;
    double dropout;
    /* RESNET and ATTENTION: the output is divided by this (mid block: mid_block_scale_factor) */
    double output_scale;
    /* RESNET (norm1/norm2), ATTENTION (0 = no group norm), OUT */
    int norm_groups;
    double norm_eps;
    /* ATTENTION: n_heads * head_dim == out_channels */
    int n_heads, head_dim;
    /* DOWNSAMPLE: 1 = pad 1 all round; 0 = pad right and bottom by 1 */
    int padding;
    int param[UNET_N_PARAM_SLOTS];
} UNetLayer;

typedef struct UNetLayout {
    UNetConfig config;
    int time_embed_dim;  /* temb channels: time_embedding_dim or 4 * block_out_channels[0] */
    int time_proj_dim;   /* sinusoid size: block_out_channels[0] */
    int n_layers;
    UNetLayer *layers;   /* forward order */
    int max_skips;       /* deepest the skip stack gets */
    ParamTable params;   /* state_dict order */
} UNetLayout;

/* Validates the config (an error names the offending field) and builds the layout and its table. */
int unet_layout_init(UNetLayout *layout, const UNetConfig *cfg, Error *err);
void unet_layout_free(UNetLayout *layout);

/* The view of a layer's parameter (or gradient, moment) inside a buffer laid out by layout->params;
 * tensor_none() when the layer has no such parameter. For wiring modules at init. */
Tensor unet_layer_param(const UNetLayout *layout, const UNetLayer *layer, UNetParamSlot slot, float *buffer);

/* Height or width at a resolution level. */
static inline int unet_level_size(int sample_size, int level) { return sample_size >> level; }

#endif
