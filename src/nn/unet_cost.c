/* FLOP and training-memory estimates of a UNet2DModel (see unet_cost.h): one pass over the layers in
 * forward order, each layer contributing its multiply-adds and the activations its backward reads. */
#include "nn/unet_cost.h"

#include "core/check.h"

typedef struct LayerShape {
    uint64_t in_pixels, out_pixels; /* H * W at the layer's input and output levels */
} LayerShape;

static void add_resnet(UNetCost *cost, const UNetLayout *layout, const UNetLayer *l, LayerShape s) {
    uint64_t in = (uint64_t)(l->in_channels + l->skip_channels), out = (uint64_t)l->out_channels;
    uint64_t temb = (uint64_t)layout->time_embed_dim;
    uint64_t proj = l->time_scale_shift == UNET_TIME_SCALE_SHIFT_SCALE_SHIFT ? 2 * out : out;
    uint64_t groups = (uint64_t)l->norm_groups;
    cost->conv_macs += s.out_pixels * out * in * 9 + s.out_pixels * out * out * 9;
    if (in != out) cost->conv_macs += s.out_pixels * out * in;
    cost->linear_macs += temb * proj;

    uint64_t saved = 0;
    saved += s.in_pixels * in;                              /* silu(norm1(x)), the norm fused with the SiLU */
    if (l->resample != UNET_RESNET_RESAMPLE_NONE) saved += 2 * s.out_pixels * in; /* resampled main path, shortcut */
    saved += s.out_pixels * out;                            /* conv1 + temb: norm2's input */
    if (l->time_scale_shift == UNET_TIME_SCALE_SHIFT_SCALE_SHIFT)
        saved += 2 * s.out_pixels * out;                    /* norm2 output and its modulation (unfused) */
    saved += s.out_pixels * out;                            /* SiLU (then dropout in place): conv2's input */
    saved += s.out_pixels * out;                            /* the block's output */
    saved += 4 * groups + temb + proj;                      /* mean/rstd of both norms, SiLU(temb), projection */
    cost->saved_floats += saved;
}

static void add_attention(UNetCost *cost, const UNetLayer *l, LayerShape s) {
    uint64_t c = (uint64_t)l->out_channels, tokens = s.out_pixels;
    cost->linear_macs += 4 * tokens * c * c;
    cost->attention_macs += 2 * tokens * tokens * c;
    uint64_t saved = tokens * c * 5 + tokens * (uint64_t)l->n_heads; /* q, k, v, attention out, output; lse */
    saved += 2 * (uint64_t)l->norm_groups;                            /* the norm's mean and rstd */
    cost->saved_floats += saved;
}

UNetCost unet_cost(const UNetLayout *layout, int height, int width) {
    const UNetConfig *cfg = &layout->config;
    int factor = 1 << (cfg->n_blocks - 1);
    CHECK(height > 0 && width > 0 && height % factor == 0 && width % factor == 0,
          "size %dx%d is not a positive multiple of %d", height, width, factor);
    UNetCost cost = {0};
    for (int i = 0; i < layout->n_layers; i++) {
        const UNetLayer *l = &layout->layers[i];
        LayerShape s = {
            .in_pixels = (uint64_t)unet_level_size(height, l->in_level) * (uint64_t)unet_level_size(width, l->in_level),
            .out_pixels =
                (uint64_t)unet_level_size(height, l->out_level) * (uint64_t)unet_level_size(width, l->out_level),
        };
        uint64_t in = (uint64_t)l->in_channels, out = (uint64_t)l->out_channels;
        switch (l->kind) {
        case UNET_LAYER_TIME_EMBEDDING:
            cost.linear_macs += in * out + out * out;
            cost.saved_floats += in + 3 * out; /* sinusoid, linear_1 out, its SiLU, embedding */
            break;
        case UNET_LAYER_CONV_IN:
            cost.conv_macs += s.out_pixels * out * in * 9;
            cost.saved_floats += s.in_pixels * in + s.out_pixels * out;
            break;
        case UNET_LAYER_RESNET: add_resnet(&cost, layout, l, s); break;
        case UNET_LAYER_ATTENTION: add_attention(&cost, l, s); break;
        case UNET_LAYER_DOWNSAMPLE:
            cost.conv_macs += s.out_pixels * out * in * 9;
            cost.saved_floats += s.out_pixels * out;
            break;
        case UNET_LAYER_UPSAMPLE:
            cost.conv_macs += s.out_pixels * out * in * 9;
            cost.saved_floats += s.out_pixels * out; /* the upsampled input is not kept (ops/upsample_conv.h) */
            break;
        case UNET_LAYER_OUT:
            cost.conv_macs += s.out_pixels * out * in * 9;
            cost.saved_floats += s.in_pixels * in + s.out_pixels * out + 2 * (uint64_t)l->norm_groups; /* silu(norm) */
            break;
        }
    }
    return cost;
}

uint64_t unet_cost_total_macs(const UNetCost *cost) {
    return cost->conv_macs + cost->linear_macs + cost->attention_macs;
}

UNetMemory unet_memory_estimate(const UNetLayout *layout, int height, int width, size_t batch) {
    UNetCost cost = unet_cost(layout, height, width);
    size_t param_bytes = layout->params.n_floats * sizeof(float);
    UNetMemory m = {
        .params_bytes = param_bytes,
        .grads_bytes = param_bytes,
        .moments_bytes = 2 * param_bytes,
        .ema_bytes = param_bytes,
        .activations_bytes = (size_t)cost.saved_floats * batch * sizeof(float),
    };
    m.total_bytes = m.params_bytes + m.grads_bytes + m.moments_bytes + m.ema_bytes + m.activations_bytes;
    return m;
}
