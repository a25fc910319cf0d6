/* `diffuse info <model folder | config.json | preset>`: the model's config on one screen, its parameter
 * count, the FLOPs of one forward pass at its sample size and the memory training takes at a batch size
 * (nn/unet_cost.h says what is counted). For a folder, also checks that its weights match the config. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "cli/commands.h"
#include "cli/options.h"
#include "io/model_folder.h"
#include "nn/unet_cost.h"
#include "nn/unet_layout.h"

/* 35746307 -> "35,746,307" */
static const char *with_commas(uint64_t v, char *buf, size_t buf_bytes) {
    char digits[32];
    int n = snprintf(digits, sizeof digits, "%llu", (unsigned long long)v);
    size_t j = 0;
    for (int i = 0; i < n && j + 2 < buf_bytes; i++) {
        if (i > 0 && (n - i) % 3 == 0) buf[j++] = ',';
        buf[j++] = digits[i];
    }
    buf[j] = '\0';
    return buf;
}

static const char *bytes_str(double bytes, char *buf, size_t buf_bytes) {
    static const char *const units[] = {"B", "KB", "MB", "GB", "TB"};
    int u = 0;
    while (bytes >= 1000 && u < 4) bytes /= 1000, u++;
    snprintf(buf, buf_bytes, u ? "%.1f %s" : "%.0f %s", bytes, units[u]);
    return buf;
}

static const char *attention_str(const UNetConfig *cfg, int channels, char *buf, size_t buf_bytes) {
    int heads = unet_config_attention_heads(cfg, channels);
    snprintf(buf, buf_bytes, "%d head%s of %d", heads, heads == 1 ? "" : "s", channels / heads);
    return buf;
}

static void print_structure(const UNetLayout *layout, int height, int width) {
    const UNetConfig *cfg = &layout->config;
    int n = cfg->n_blocks;
    char a[64];
    printf("levels       size     down block                 up block\n");
    for (int level = 0; level < n; level++) {
        int c = cfg->block_out_channels[level];
        UNetBlockType down = cfg->down_block_types[level], up = cfg->up_block_types[n - 1 - level];
        char size[32], down_s[64], up_s[64];
        snprintf(size, sizeof size, "%dx%d", unet_level_size(height, level), unet_level_size(width, level));
        snprintf(down_s, sizeof down_s, "%s %d", unet_block_type_name(down), c);
        snprintf(up_s, sizeof up_s, "%s %d", unet_block_type_name(up), c);
        printf("  %-10s %-8s %-26s %s", level == 0 ? "" : "", size, down_s, up_s);
        if (unet_block_type_has_attention(down) || unet_block_type_has_attention(up))
            printf("   (attention: %s)", attention_str(cfg, c, a, sizeof a));
        printf("\n");
    }
    int deepest = cfg->block_out_channels[n - 1];
    if (cfg->mid_block_type == UNET_MID_BLOCK_NONE) printf("mid block    none\n");
    else if (!cfg->add_attention) printf("mid block    UNetMidBlock2D %d, no attention, scale %g\n", deepest,
                                         cfg->mid_block_scale_factor);
    else {
        int groups = unet_config_mid_attention_groups(cfg);
        printf("mid block    UNetMidBlock2D %d, attention %s (%s), scale %g\n", deepest,
               attention_str(cfg, deepest, a, sizeof a), groups ? "with group norm" : "no group norm",
               cfg->mid_block_scale_factor);
    }
    printf("resnets      %d per down block, %d per up block; GroupNorm %d groups, eps %g; time %s; dropout %g\n",
           cfg->layers_per_block, cfg->layers_per_block + 1, cfg->norm_num_groups, cfg->norm_eps,
           unet_time_scale_shift_name(cfg->resnet_time_scale_shift), cfg->dropout);
    int n_conv_down = 0, n_resnet_down = 0, n_conv_up = 0, n_resnet_up = 0;
    for (int i = 0; i < layout->n_layers; i++) {
        const UNetLayer *l = &layout->layers[i];
        n_conv_down += l->kind == UNET_LAYER_DOWNSAMPLE;
        n_conv_up += l->kind == UNET_LAYER_UPSAMPLE;
        n_resnet_down += l->kind == UNET_LAYER_RESNET && l->resample == UNET_RESNET_RESAMPLE_DOWN;
        n_resnet_up += l->kind == UNET_LAYER_RESNET && l->resample == UNET_RESNET_RESAMPLE_UP;
    }
    printf("resampling   down: %d conv (padding %s), %d resnet; up: %d conv, %d resnet\n", n_conv_down,
           cfg->downsample_padding ? "1" : "0 + right/bottom 1", n_resnet_down, n_conv_up, n_resnet_up);
    printf("time         %s, flip_sin_to_cos %s, freq_shift %d; embedding %d -> %d\n",
           unet_time_embedding_type_name(cfg->time_embedding_type), cfg->flip_sin_to_cos ? "true" : "false",
           cfg->freq_shift, layout->time_proj_dim, layout->time_embed_dim);
    if (cfg->num_class_embeds)
        printf("classes      %d (embedding added to the time embedding)\n", cfg->num_class_embeds);
    else printf("classes      none\n");
}

int cmd_info(int argc, char **argv, Error *err) {
    int batch = 16, size = 0;
    const Option options[] = {
        {"batch", OPTION_INT, &batch, "N", "batch size of the training memory estimate"},
        {"size", OPTION_INT, &size, "N", "image size for FLOPs and memory (default: the config's sample_size)"},
        {NULL, 0, NULL, NULL, NULL},
    };
    const OptionSpec spec = {
        .command = "info",
        .usage = "diffuse info <model folder | config.json | preset> [options]",
        .summary = "Shows a UNet2DModel: its config, parameter count, forward FLOPs per image (convolutions,\n"
                   "linear layers and the attention matmuls; 2 FLOPs per multiply-add) and the memory\n"
                   "training takes (parameters, gradients, AdamW moments, EMA and saved activations).\n"
                   "For a model folder it also checks the weights against the config.\n"
                   "Presets: default, ddpm-cifar10, ddpm-celebahq-256, fashion-mnist.",
        .options = options,
        .min_positional = 1,
        .max_positional = 1,
    };
    ParsedArgs args;
    if (options_parse(&spec, argc, argv, &args, err)) return -1;
    if (args.help) return 0;
    if (batch < 1) return error_set(err, "--batch must be >= 1 (got %d)", batch);

    ModelSource src;
    UNetConfig cfg;
    if (model_source_resolve(&src, &cfg, args.positional[0], err)) return -1;
    int height = size ? size : cfg.sample_height, width = size ? size : cfg.sample_width;
    if (height <= 0)
        return error_set(err, "%s has no sample_size; give the image size with --size", args.positional[0]);
    int factor = 1 << (cfg.n_blocks - 1);
    if (height % factor || width % factor)
        return error_set(err, "size %dx%d is not divisible by %d (2^(levels - 1))", height, width, factor);
    UNetLayout layout;
    if (unet_layout_init(&layout, &cfg, err)) return -1;

    int rc = 0;
    ModelWeightsInfo weights = {0};
    if (src.kind == MODEL_SOURCE_FOLDER) rc = model_weights_load(src.path, &layout.params, NULL, &weights, err);
    if (rc == 0) {
        static const char *const kinds[] = {"preset", "config", "folder"};
        printf("model        %s %s\n", kinds[src.kind], src.path);
        printf("sample       %dx%d%s, %d -> %d channels%s\n", height, width, size ? " (--size)" : "",
               cfg.in_channels, cfg.out_channels, cfg.center_input_sample ? ", centred (2x - 1)" : "");
        print_structure(&layout, height, width);

        char a[64], b[64], c[64], d[64], e[64], f[64];
        uint64_t n_params = layout.params.n_floats;
        printf("parameters   %s in %zu tensors (%s as fp32)\n", with_commas(n_params, a, sizeof a),
               layout.params.n_entries, bytes_str((double)n_params * 4, b, sizeof b));
        UNetCost cost = unet_cost(&layout, height, width);
        double total = 2.0 * (double)unet_cost_total_macs(&cost);
        double unit = total >= 1e9 ? 1e9 : 1e6;
        const char *unit_name = total >= 1e9 ? "GFLOP" : "MFLOP";
        printf("FLOPs        %.3f %s per %dx%d image, forward: conv %.3f, linear %.3f, attention matmuls %.3f\n"
               "             (2 per multiply-add; norms, activations and softmax not counted; training ~3x)\n",
               total / unit, unit_name, height, width, 2.0 * (double)cost.conv_macs / unit,
               2.0 * (double)cost.linear_macs / unit, 2.0 * (double)cost.attention_macs / unit);
        UNetMemory m = unet_memory_estimate(&layout, height, width, (size_t)batch);
        printf("memory       training at batch %d: %s = params %s + grads %s + AdamW moments %s + EMA %s\n"
               "             + activations %s (kept for backward)\n",
               batch, bytes_str((double)m.total_bytes, a, sizeof a), bytes_str((double)m.params_bytes, b, sizeof b),
               bytes_str((double)m.grads_bytes, c, sizeof c), bytes_str((double)m.moments_bytes, d, sizeof d),
               bytes_str((double)m.ema_bytes, e, sizeof e), bytes_str((double)m.activations_bytes, f, sizeof f));
        if (src.kind == MODEL_SOURCE_FOLDER)
            printf("weights      %zu tensors in %zu file%s (F32 %zu, F16 %zu, BF16 %zu%s), all match the config\n",
                   weights.n_tensors, weights.n_files, weights.n_files == 1 ? "" : "s", weights.n_f32, weights.n_f16,
                   weights.n_bf16, weights.n_legacy_names ? ", some under legacy attention names" : "");
    }
    unet_layout_free(&layout);
    return rc;
}
