/* Builds a UNet2DModel's layers and parameter table from its config (see unet_layout.h), mirroring the
 * constructors in diffusers' unet_2d.py and unet_2d_blocks.py:
 *   - down block i (level i): layers_per_block resnets boc[i-1 or 0] -> boc[i], each followed by an
 *     attention in AttnDownBlock2D; then, except in the last block, a downsampler (a stride-2 conv, or a
 *     resnet with down=True in AttnDownBlock2D when downsample_type is "resnet": DownBlock2D always
 *     uses the conv);
 *   - mid block: resnet, attention (unless add_attention is false), resnet, scaled by
 *     mid_block_scale_factor;
 *   - up block i (level n-1-i): layers_per_block + 1 resnets, each concatenating one skip, each followed
 *     by an attention in AttnUpBlock2D; then, except in the last block, an upsampler (nearest + conv, or
 *     a resnet with up=True in AttnUpBlock2D when upsample_type is "resnet").
 * Registration order, which the state_dict follows: conv_in, time_embedding, class_embedding,
 * down_blocks, up_blocks, mid_block, conv_norm_out, conv_out; inside a block attentions, then resnets,
 * then the sampler. Layers are built in forward order first, then their parameters in that order. */
#include "nn/unet_layout.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/check.h"

const char *unet_layer_kind_name(UNetLayerKind kind) {
    switch (kind) {
    case UNET_LAYER_TIME_EMBEDDING: return "time embedding";
    case UNET_LAYER_CONV_IN: return "conv in";
    case UNET_LAYER_RESNET: return "resnet";
    case UNET_LAYER_ATTENTION: return "attention";
    case UNET_LAYER_DOWNSAMPLE: return "downsample";
    case UNET_LAYER_UPSAMPLE: return "upsample";
    case UNET_LAYER_OUT: return "out";
    }
    CHECK(0, "bad layer kind %d", (int)kind);
}

/* ------------------------------------------------------------------------------------------------ */
/* Pass 1: layers in forward order */

typedef struct Builder {
    UNetLayout *layout;
    int capacity;
    int *skips; /* channel counts on the skip stack */
    int n_skips, skip_capacity;
} Builder;

static UNetLayer *add_layer(Builder *b, UNetLayerKind kind, UNetStage stage, int block, int level, const char *fmt,
                            ...) DIFFUSE_PRINTF(6, 7);

static UNetLayer *add_layer(Builder *b, UNetLayerKind kind, UNetStage stage, int block, int level, const char *fmt,
                            ...) {
    UNetLayout *layout = b->layout;
    if (layout->n_layers == b->capacity) {
        b->capacity = b->capacity ? 2 * b->capacity : 64;
        layout->layers = xrealloc(layout->layers, (size_t)b->capacity * sizeof *layout->layers);
    }
    UNetLayer *layer = &layout->layers[layout->n_layers++];
    *layer = (UNetLayer){.kind = kind, .stage = stage, .block = block, .in_level = level, .out_level = level,
                         .output_scale = 1.0, .norm_eps = layout->config.norm_eps};
    for (int s = 0; s < UNET_N_PARAM_SLOTS; s++) layer->param[s] = -1;
    va_list args;
    va_start(args, fmt);
    vsnprintf(layer->module, sizeof layer->module, fmt, args);
    va_end(args);
    return layer;
}

static void push_skip(Builder *b, UNetLayer *layer) {
    CHECK(b->n_skips < b->skip_capacity, "skip stack overflow");
    layer->push_skip = true;
    b->skips[b->n_skips++] = layer->out_channels;
    if (b->n_skips > b->layout->max_skips) b->layout->max_skips = b->n_skips;
}

static int pop_skip(Builder *b) {
    CHECK(b->n_skips > 0, "skip stack underflow");
    return b->skips[--b->n_skips];
}

static UNetLayer *add_resnet(Builder *b, UNetStage stage, int block, int level, int in_channels, int out_channels,
                             const char *module) {
    const UNetConfig *cfg = &b->layout->config;
    UNetLayer *r = add_layer(b, UNET_LAYER_RESNET, stage, block, level, "%s", module);
    r->in_channels = in_channels;
    r->out_channels = out_channels;
    r->time_scale_shift = cfg->resnet_time_scale_shift;
    r->dropout = cfg->dropout;
    r->norm_groups = cfg->norm_num_groups;
    return r;
}

static UNetLayer *add_attention(Builder *b, UNetStage stage, int block, int level, int channels, int groups,
                                const char *module) {
    const UNetConfig *cfg = &b->layout->config;
    UNetLayer *a = add_layer(b, UNET_LAYER_ATTENTION, stage, block, level, "%s", module);
    a->in_channels = a->out_channels = channels;
    a->norm_groups = groups;
    a->n_heads = unet_config_attention_heads(cfg, channels);
    a->head_dim = channels / a->n_heads;
    CHECK(a->n_heads * a->head_dim == channels, "%s: %d heads do not split %d channels", module, a->n_heads, channels);
    return a;
}

static void build_down_blocks(Builder *b) {
    const UNetConfig *cfg = &b->layout->config;
    int channels = cfg->block_out_channels[0];
    for (int i = 0; i < cfg->n_blocks; i++) {
        int out = cfg->block_out_channels[i];
        bool attn = unet_block_type_has_attention(cfg->down_block_types[i]);
        for (int j = 0; j < cfg->layers_per_block; j++) {
            char module[UNET_MODULE_BYTES];
            snprintf(module, sizeof module, "down_blocks.%d.resnets.%d", i, j);
            UNetLayer *last = add_resnet(b, UNET_STAGE_DOWN, i, i, j == 0 ? channels : out, out, module);
            if (attn) {
                snprintf(module, sizeof module, "down_blocks.%d.attentions.%d", i, j);
                last = add_attention(b, UNET_STAGE_DOWN, i, i, out, cfg->norm_num_groups, module);
            }
            push_skip(b, last);
        }
        channels = out;
        if (i == cfg->n_blocks - 1) continue;
        UNetLayer *sampler;
        if (attn && cfg->downsample_type == UNET_RESAMPLE_RESNET) {
            char module[UNET_MODULE_BYTES];
            snprintf(module, sizeof module, "down_blocks.%d.downsamplers.0", i);
            sampler = add_resnet(b, UNET_STAGE_DOWN, i, i, out, out, module);
            sampler->resample = UNET_RESNET_RESAMPLE_DOWN;
        } else {
            sampler = add_layer(b, UNET_LAYER_DOWNSAMPLE, UNET_STAGE_DOWN, i, i, "down_blocks.%d.downsamplers.0.conv",
                                i);
            sampler->in_channels = sampler->out_channels = out;
            sampler->padding = cfg->downsample_padding;
        }
        sampler->out_level = i + 1;
        push_skip(b, sampler);
    }
}

static void build_mid_block(Builder *b) {
    const UNetConfig *cfg = &b->layout->config;
    if (cfg->mid_block_type == UNET_MID_BLOCK_NONE) return;
    int level = cfg->n_blocks - 1, channels = cfg->block_out_channels[level];
    UNetLayer *r0 = add_resnet(b, UNET_STAGE_MID, 0, level, channels, channels, "mid_block.resnets.0");
    r0->output_scale = cfg->mid_block_scale_factor;
    if (cfg->add_attention) {
        UNetLayer *a = add_attention(b, UNET_STAGE_MID, 0, level, channels, unet_config_mid_attention_groups(cfg),
                                     "mid_block.attentions.0");
        a->output_scale = cfg->mid_block_scale_factor;
    }
    UNetLayer *r1 = add_resnet(b, UNET_STAGE_MID, 0, level, channels, channels, "mid_block.resnets.1");
    r1->output_scale = cfg->mid_block_scale_factor;
}

static void build_up_blocks(Builder *b) {
    const UNetConfig *cfg = &b->layout->config;
    int n = cfg->n_blocks;
    int channels = cfg->block_out_channels[n - 1];
    for (int i = 0; i < n; i++) {
        int level = n - 1 - i;
        int out = cfg->block_out_channels[level];
        /* diffusers: the last resnet's skip has the next block's width (input_channel), the others out. */
        int input_channel = cfg->block_out_channels[level > 0 ? level - 1 : 0];
        bool attn = unet_block_type_has_attention(cfg->up_block_types[i]);
        int n_resnets = cfg->layers_per_block + 1;
        for (int j = 0; j < n_resnets; j++) {
            char module[UNET_MODULE_BYTES];
            snprintf(module, sizeof module, "up_blocks.%d.resnets.%d", i, j);
            UNetLayer *r = add_resnet(b, UNET_STAGE_UP, i, level, j == 0 ? channels : out, out, module);
            r->skip_channels = pop_skip(b);
            CHECK(r->skip_channels == (j == n_resnets - 1 ? input_channel : out),
                  "%s: skip of %d channels, diffusers expects %d", module, r->skip_channels,
                  j == n_resnets - 1 ? input_channel : out);
            if (attn) {
                snprintf(module, sizeof module, "up_blocks.%d.attentions.%d", i, j);
                add_attention(b, UNET_STAGE_UP, i, level, out, cfg->norm_num_groups, module);
            }
        }
        channels = out;
        if (i == n - 1) continue;
        UNetLayer *sampler;
        if (attn && cfg->upsample_type == UNET_RESAMPLE_RESNET) {
            char module[UNET_MODULE_BYTES];
            snprintf(module, sizeof module, "up_blocks.%d.upsamplers.0", i);
            sampler = add_resnet(b, UNET_STAGE_UP, i, level, out, out, module);
            sampler->resample = UNET_RESNET_RESAMPLE_UP;
        } else {
            sampler = add_layer(b, UNET_LAYER_UPSAMPLE, UNET_STAGE_UP, i, level, "up_blocks.%d.upsamplers.0.conv", i);
            sampler->in_channels = sampler->out_channels = out;
        }
        sampler->out_level = level - 1;
    }
    CHECK(b->n_skips == 0, "%d skips left over", b->n_skips);
}

static void build_layers(Builder *b) {
    UNetLayout *layout = b->layout;
    const UNetConfig *cfg = &layout->config;
    UNetLayer *time = add_layer(b, UNET_LAYER_TIME_EMBEDDING, UNET_STAGE_INPUT, 0, 0, "time_embedding");
    time->in_channels = layout->time_proj_dim;
    time->out_channels = layout->time_embed_dim;
    UNetLayer *conv_in = add_layer(b, UNET_LAYER_CONV_IN, UNET_STAGE_INPUT, 0, 0, "conv_in");
    conv_in->in_channels = cfg->in_channels;
    conv_in->out_channels = cfg->block_out_channels[0];
    push_skip(b, conv_in);
    build_down_blocks(b);
    build_mid_block(b);
    build_up_blocks(b);
    UNetLayer *out = add_layer(b, UNET_LAYER_OUT, UNET_STAGE_OUTPUT, 0, 0, "conv_out");
    out->in_channels = cfg->block_out_channels[0];
    out->out_channels = cfg->out_channels;
    out->norm_groups = cfg->norm_num_groups;
}

/* ------------------------------------------------------------------------------------------------ */
/* Pass 2: parameters in state_dict order */

static void add_param(UNetLayout *layout, UNetLayer *layer, UNetParamSlot slot, const char *name, int ndim,
                      const size_t *shape, ParamInit init, size_t fan_in) {
    layer->param[slot] = (int)param_table_add(&layout->params, name, ndim, shape, init, fan_in);
}

/* weight (out, in, k, k) and bias (out), named module.weight / module.bias. */
static void add_conv(UNetLayout *layout, UNetLayer *layer, UNetParamSlot weight_slot, const char *module, int in,
                     int out, int kernel) {
    char name[PARAM_NAME_BYTES];
    size_t fan_in = (size_t)in * (size_t)kernel * (size_t)kernel;
    snprintf(name, sizeof name, "%s.weight", module);
    add_param(layout, layer, weight_slot, name, 4, (size_t[]){(size_t)out, (size_t)in, (size_t)kernel, (size_t)kernel},
              PARAM_INIT_FAN_IN_UNIFORM, fan_in);
    snprintf(name, sizeof name, "%s.bias", module);
    add_param(layout, layer, weight_slot + 1, name, 1, (size_t[]){(size_t)out}, PARAM_INIT_FAN_IN_UNIFORM, fan_in);
}

static void add_linear(UNetLayout *layout, UNetLayer *layer, UNetParamSlot weight_slot, const char *module, int in,
                       int out) {
    char name[PARAM_NAME_BYTES];
    snprintf(name, sizeof name, "%s.weight", module);
    add_param(layout, layer, weight_slot, name, 2, (size_t[]){(size_t)out, (size_t)in}, PARAM_INIT_FAN_IN_UNIFORM,
              (size_t)in);
    snprintf(name, sizeof name, "%s.bias", module);
    add_param(layout, layer, weight_slot + 1, name, 1, (size_t[]){(size_t)out}, PARAM_INIT_FAN_IN_UNIFORM, (size_t)in);
}

static void add_norm(UNetLayout *layout, UNetLayer *layer, UNetParamSlot weight_slot, const char *module,
                     int channels) {
    char name[PARAM_NAME_BYTES];
    snprintf(name, sizeof name, "%s.weight", module);
    add_param(layout, layer, weight_slot, name, 1, (size_t[]){(size_t)channels}, PARAM_INIT_ONES, 0);
    snprintf(name, sizeof name, "%s.bias", module);
    add_param(layout, layer, weight_slot + 1, name, 1, (size_t[]){(size_t)channels}, PARAM_INIT_ZEROS, 0);
}

static void add_layer_params(UNetLayout *layout, UNetLayer *layer) {
    char module[UNET_MODULE_BYTES + 32];
    const char *m = layer->module;
    switch (layer->kind) {
    case UNET_LAYER_RESNET: {
        int in = layer->in_channels + layer->skip_channels, out = layer->out_channels;
        int proj = layer->time_scale_shift == UNET_TIME_SCALE_SHIFT_SCALE_SHIFT ? 2 * out : out;
        snprintf(module, sizeof module, "%s.norm1", m);
        add_norm(layout, layer, UNET_RESNET_NORM1_WEIGHT, module, in);
        snprintf(module, sizeof module, "%s.conv1", m);
        add_conv(layout, layer, UNET_RESNET_CONV1_WEIGHT, module, in, out, 3);
        snprintf(module, sizeof module, "%s.time_emb_proj", m);
        add_linear(layout, layer, UNET_RESNET_TIME_EMB_PROJ_WEIGHT, module, layout->time_embed_dim, proj);
        snprintf(module, sizeof module, "%s.norm2", m);
        add_norm(layout, layer, UNET_RESNET_NORM2_WEIGHT, module, out);
        snprintf(module, sizeof module, "%s.conv2", m);
        add_conv(layout, layer, UNET_RESNET_CONV2_WEIGHT, module, out, out, 3);
        if (in != out) {
            snprintf(module, sizeof module, "%s.conv_shortcut", m);
            add_conv(layout, layer, UNET_RESNET_SHORTCUT_WEIGHT, module, in, out, 1);
        }
        return;
    }
    case UNET_LAYER_ATTENTION: {
        int c = layer->out_channels;
        if (layer->norm_groups > 0) {
            snprintf(module, sizeof module, "%s.group_norm", m);
            add_norm(layout, layer, UNET_ATTN_GROUP_NORM_WEIGHT, module, c);
        }
        static const char *const names[] = {"to_q", "to_k", "to_v", "to_out.0"};
        for (int k = 0; k < 4; k++) {
            snprintf(module, sizeof module, "%s.%s", m, names[k]);
            add_linear(layout, layer, (UNetParamSlot)(UNET_ATTN_TO_Q_WEIGHT + 2 * k), module, c, c);
        }
        return;
    }
    case UNET_LAYER_DOWNSAMPLE:
    case UNET_LAYER_UPSAMPLE:
    case UNET_LAYER_CONV_IN:
        add_conv(layout, layer, UNET_CONV_WEIGHT, m, layer->in_channels, layer->out_channels, 3);
        return;
    case UNET_LAYER_TIME_EMBEDDING: {
        add_linear(layout, layer, UNET_TIME_LINEAR_1_WEIGHT, "time_embedding.linear_1", layer->in_channels,
                   layer->out_channels);
        add_linear(layout, layer, UNET_TIME_LINEAR_2_WEIGHT, "time_embedding.linear_2", layer->out_channels,
                   layer->out_channels);
        int n_classes = layout->config.num_class_embeds;
        if (n_classes > 0)
            add_param(layout, layer, UNET_CLASS_EMBEDDING, "class_embedding.weight", 2,
                      (size_t[]){(size_t)n_classes, (size_t)layer->out_channels}, PARAM_INIT_NORMAL, 0);
        return;
    }
    case UNET_LAYER_OUT:
        add_norm(layout, layer, UNET_OUT_NORM_WEIGHT, "conv_norm_out", layer->in_channels);
        add_conv(layout, layer, UNET_OUT_CONV_WEIGHT, "conv_out", layer->in_channels, layer->out_channels, 3);
        return;
    }
}

/* Order of the parts of a block in the state_dict. */
static int block_part(const UNetLayer *layer) {
    if (layer->kind == UNET_LAYER_ATTENTION) return 0;
    if (layer->kind == UNET_LAYER_RESNET && layer->resample == UNET_RESNET_RESAMPLE_NONE) return 1;
    return 2; /* downsampler or upsampler */
}

static void add_block_params(UNetLayout *layout, UNetStage stage, int block) {
    for (int part = 0; part < 3; part++)
        for (int i = 0; i < layout->n_layers; i++) {
            UNetLayer *layer = &layout->layers[i];
            if (layer->stage == stage && layer->block == block && block_part(layer) == part)
                add_layer_params(layout, layer);
        }
}

static void build_params(UNetLayout *layout) {
    int n = layout->config.n_blocks;
    add_layer_params(layout, &layout->layers[1]); /* conv_in */
    add_layer_params(layout, &layout->layers[0]); /* time_embedding, class_embedding */
    for (int i = 0; i < n; i++) add_block_params(layout, UNET_STAGE_DOWN, i);
    for (int i = 0; i < n; i++) add_block_params(layout, UNET_STAGE_UP, i);
    add_block_params(layout, UNET_STAGE_MID, 0);
    add_layer_params(layout, &layout->layers[layout->n_layers - 1]); /* conv_norm_out, conv_out */
}

/* ------------------------------------------------------------------------------------------------ */

int unet_layout_init(UNetLayout *layout, const UNetConfig *cfg, Error *err) {
    *layout = (UNetLayout){0};
    if (unet_config_validate(cfg, err)) return -1;
    layout->config = *cfg;
    layout->time_embed_dim = unet_config_time_embed_dim(cfg);
    layout->time_proj_dim = cfg->block_out_channels[0];
    param_table_init(&layout->params);
    /* conv_in, every down-block layer and every downsampler push one skip. */
    int capacity = 1 + cfg->n_blocks * (cfg->layers_per_block + 1);
    Builder b = {.layout = layout, .skips = xcalloc((size_t)capacity, sizeof(int)), .skip_capacity = capacity};
    build_layers(&b);
    free(b.skips);
    build_params(layout);
    return 0;
}

void unet_layout_free(UNetLayout *layout) {
    free(layout->layers);
    param_table_free(&layout->params);
    *layout = (UNetLayout){0};
}

Tensor unet_layer_param(const UNetLayout *layout, const UNetLayer *layer, UNetParamSlot slot, float *buffer) {
    CHECK(slot >= 0 && slot < UNET_N_PARAM_SLOTS, "bad slot %d", (int)slot);
    if (layer->param[slot] < 0) return tensor_none();
    return param_table_view(&layout->params, buffer, (size_t)layer->param[slot]);
}
