/* UNet2DModel configuration: names of the enum values, defaults, presets, validation, config.json in
 * and out (see unet_config.h). The parser is strict where diffusers is lenient (diffusers warns about and
 * drops an unknown field; we refuse it), because the fields we would drop change the model. */
#include "nn/unet_config.h"

#include <cjson/cJSON.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/json_values.h"

/* What diffusers writes as _diffusers_version: the release whose config format and names we follow. */
#define UNET_DIFFUSERS_VERSION "0.42.1"

/* ------------------------------------------------------------------------------------------------ */
/* Enum names */

static const char *const block_type_names[UNET_BLOCK_N_TYPES] = {
    [UNET_BLOCK_DOWN] = "DownBlock2D",
    [UNET_BLOCK_ATTN_DOWN] = "AttnDownBlock2D",
    [UNET_BLOCK_UP] = "UpBlock2D",
    [UNET_BLOCK_ATTN_UP] = "AttnUpBlock2D",
};

const char *unet_block_type_name(UNetBlockType type) {
    CHECK(type >= 0 && type < UNET_BLOCK_N_TYPES, "bad block type %d", (int)type);
    return block_type_names[type];
}

int unet_block_type_from_name(const char *name, UNetBlockType *type) {
    /* diffusers' get_down_block / get_up_block strip a "UNetRes" prefix before matching. */
    if (strncmp(name, "UNetRes", 7) == 0) name += 7;
    for (int i = 0; i < UNET_BLOCK_N_TYPES; i++) {
        if (strcmp(name, block_type_names[i]) == 0) {
            *type = (UNetBlockType)i;
            return 0;
        }
    }
    return -1;
}

bool unet_block_type_is_down(UNetBlockType type) { return type == UNET_BLOCK_DOWN || type == UNET_BLOCK_ATTN_DOWN; }

bool unet_block_type_has_attention(UNetBlockType type) {
    return type == UNET_BLOCK_ATTN_DOWN || type == UNET_BLOCK_ATTN_UP;
}

const char *unet_mid_block_type_name(UNetMidBlockType type) {
    return type == UNET_MID_BLOCK_2D ? "UNetMidBlock2D" : NULL;
}

const char *unet_resample_type_name(UNetResampleType type) {
    return type == UNET_RESAMPLE_RESNET ? "resnet" : "conv";
}

int unet_resample_type_from_name(const char *name, UNetResampleType *type) {
    if (strcmp(name, "conv") == 0) *type = UNET_RESAMPLE_CONV;
    else if (strcmp(name, "resnet") == 0) *type = UNET_RESAMPLE_RESNET;
    else return -1;
    return 0;
}

const char *unet_time_scale_shift_name(UNetTimeScaleShift shift) {
    return shift == UNET_TIME_SCALE_SHIFT_SCALE_SHIFT ? "scale_shift" : "default";
}

int unet_time_scale_shift_from_name(const char *name, UNetTimeScaleShift *shift) {
    if (strcmp(name, "default") == 0) *shift = UNET_TIME_SCALE_SHIFT_DEFAULT;
    else if (strcmp(name, "scale_shift") == 0) *shift = UNET_TIME_SCALE_SHIFT_SCALE_SHIFT;
    else return -1;
    return 0;
}

const char *unet_time_embedding_type_name(UNetTimeEmbeddingType type) {
    (void)type;
    return "positional";
}

const char *unet_activation_name(UNetActivation act) {
    (void)act;
    return "silu";
}

/* ------------------------------------------------------------------------------------------------ */
/* Defaults and presets */

static void set_blocks(UNetConfig *cfg, int n, const int *channels, const UNetBlockType *down,
                       const UNetBlockType *up) {
    CHECK(n >= 1 && n <= UNET_MAX_BLOCKS, "%d blocks", n);
    cfg->n_blocks = n;
    for (int i = 0; i < n; i++) {
        cfg->block_out_channels[i] = channels[i];
        cfg->down_block_types[i] = down[i];
        cfg->up_block_types[i] = up[i];
    }
}

UNetConfig unet_config_defaults(void) {
    UNetConfig cfg = {
        .in_channels = 3,
        .out_channels = 3,
        .time_embedding_type = UNET_TIME_EMBEDDING_POSITIONAL,
        .flip_sin_to_cos = true,
        .mid_block_type = UNET_MID_BLOCK_2D,
        .layers_per_block = 2,
        .mid_block_scale_factor = 1.0,
        .downsample_padding = 1,
        .downsample_type = UNET_RESAMPLE_CONV,
        .upsample_type = UNET_RESAMPLE_CONV,
        .act_fn = UNET_ACT_SILU,
        .attention_head_dim = 8,
        .norm_num_groups = 32,
        .norm_eps = 1e-5,
        .resnet_time_scale_shift = UNET_TIME_SCALE_SHIFT_DEFAULT,
        .add_attention = true,
    };
    set_blocks(&cfg, 4, (const int[]){224, 448, 672, 896},
               (const UNetBlockType[]){UNET_BLOCK_DOWN, UNET_BLOCK_ATTN_DOWN, UNET_BLOCK_ATTN_DOWN,
                                       UNET_BLOCK_ATTN_DOWN},
               (const UNetBlockType[]){UNET_BLOCK_ATTN_UP, UNET_BLOCK_ATTN_UP, UNET_BLOCK_ATTN_UP, UNET_BLOCK_UP});
    return cfg;
}

/* google's DDPM checkpoints: the paper's time embedding ([sin, cos], divisor half - 1), eps 1e-6,
 * asymmetric downsample padding, one attention head. */
static UNetConfig ddpm_paper_config(void) {
    UNetConfig cfg = unet_config_defaults();
    cfg.flip_sin_to_cos = false;
    cfg.freq_shift = 1;
    cfg.norm_eps = 1e-6;
    cfg.downsample_padding = 0;
    cfg.attention_head_dim = 0;
    return cfg;
}

static UNetConfig preset_cifar10(void) {
    UNetConfig cfg = ddpm_paper_config();
    cfg.sample_height = cfg.sample_width = 32;
    set_blocks(&cfg, 4, (const int[]){128, 256, 256, 256},
               (const UNetBlockType[]){UNET_BLOCK_DOWN, UNET_BLOCK_ATTN_DOWN, UNET_BLOCK_DOWN, UNET_BLOCK_DOWN},
               (const UNetBlockType[]){UNET_BLOCK_UP, UNET_BLOCK_UP, UNET_BLOCK_ATTN_UP, UNET_BLOCK_UP});
    return cfg;
}

static UNetConfig preset_celebahq256(void) {
    UNetConfig cfg = ddpm_paper_config();
    cfg.sample_height = cfg.sample_width = 256;
    set_blocks(&cfg, 6, (const int[]){128, 128, 256, 256, 512, 512},
               (const UNetBlockType[]){UNET_BLOCK_DOWN, UNET_BLOCK_DOWN, UNET_BLOCK_DOWN, UNET_BLOCK_DOWN,
                                       UNET_BLOCK_ATTN_DOWN, UNET_BLOCK_DOWN},
               (const UNetBlockType[]){UNET_BLOCK_UP, UNET_BLOCK_ATTN_UP, UNET_BLOCK_UP, UNET_BLOCK_UP, UNET_BLOCK_UP,
                                       UNET_BLOCK_UP});
    return cfg;
}

/* Fashion-MNIST, 28x28 greyscale, sized to learn recognisable garments in about ten minutes on two CPU
 * cores at batch 64: three levels 28 -> 14 -> 7 (28 = 7 * 2^2), 16/32/64 channels, one resnet per down
 * block (two per up block), self-attention at 14x14 and 7x7 and in the mid block, heads of 32 channels.
 * 699,633 parameters and 83 M multiply-adds (0.17 GFLOP) per image forward, about 32 GFLOP per training
 * step at batch 64: about 2000 steps in ten minutes at an effective 100 GFLOP/s. The
 * 28x28 level dominates the cost, so it is the narrowest; attention is cheap at 196 and 49 tokens.
 * Groups of 8 keep GroupNorm meaningful at 16 channels. diffusers runs this config at sample_size 28
 * (tools/make_model_fixtures.py runs a forward and backward pass of it). */
static UNetConfig preset_fashion_mnist(void) {
    UNetConfig cfg = unet_config_defaults();
    cfg.sample_height = cfg.sample_width = 28;
    cfg.in_channels = cfg.out_channels = 1;
    cfg.layers_per_block = 1;
    cfg.norm_num_groups = 8;
    cfg.attention_head_dim = 32;
    set_blocks(&cfg, 3, (const int[]){16, 32, 64},
               (const UNetBlockType[]){UNET_BLOCK_DOWN, UNET_BLOCK_ATTN_DOWN, UNET_BLOCK_ATTN_DOWN},
               (const UNetBlockType[]){UNET_BLOCK_ATTN_UP, UNET_BLOCK_ATTN_UP, UNET_BLOCK_UP});
    return cfg;
}

static UNetConfig preset_default(void) {
    UNetConfig cfg = unet_config_defaults();
    cfg.sample_height = cfg.sample_width = 64;
    return cfg;
}

static const struct {
    const char *name;
    UNetConfig (*make)(void);
} presets[] = {
    {"default", preset_default},
    {"ddpm-cifar10", preset_cifar10},
    {"ddpm-celebahq-256", preset_celebahq256},
    {"fashion-mnist", preset_fashion_mnist},
};
#define N_PRESETS (sizeof presets / sizeof presets[0])

const char *const *unet_config_preset_names(void) {
    static const char *names[N_PRESETS + 1];
    for (size_t i = 0; i < N_PRESETS; i++) names[i] = presets[i].name;
    names[N_PRESETS] = NULL;
    return names;
}

int unet_config_preset(UNetConfig *cfg, const char *name, Error *err) {
    for (size_t i = 0; i < N_PRESETS; i++) {
        if (strcmp(name, presets[i].name) == 0) {
            *cfg = presets[i].make();
            return 0;
        }
    }
    char list[256] = "";
    for (size_t i = 0; i < N_PRESETS; i++)
        snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", i ? ", " : "", presets[i].name);
    return error_set(err, "'%s' is not a preset (presets: %s)", name, list);
}

/* ------------------------------------------------------------------------------------------------ */
/* Derived values and validation */

int unet_config_time_embed_dim(const UNetConfig *cfg) {
    return cfg->time_embedding_dim > 0 ? cfg->time_embedding_dim : cfg->block_out_channels[0] * 4;
}

int unet_config_attention_heads(const UNetConfig *cfg, int channels) {
    return cfg->attention_head_dim > 0 ? channels / cfg->attention_head_dim : 1;
}

int unet_config_mid_attention_groups(const UNetConfig *cfg) {
    if (cfg->attn_norm_num_groups > 0) return cfg->attn_norm_num_groups;
    return cfg->resnet_time_scale_shift == UNET_TIME_SCALE_SHIFT_DEFAULT ? cfg->norm_num_groups : 0;
}

static int validate_attention(const UNetConfig *cfg, int channels, const char *where, Error *err) {
    if (cfg->attention_head_dim > 0 && channels % cfg->attention_head_dim != 0)
        return error_set(err, "attention_head_dim %d does not divide the %d channels of the attention in %s",
                         cfg->attention_head_dim, channels, where);
    return 0;
}

/* Bounds far above any real model that keep every derived size (sums of channels, 4 * channels, products
 * in size_t) from overflowing, so a lying config is an error rather than undefined arithmetic. */
#define UNET_MAX_CHANNELS 65536
#define UNET_MAX_LAYERS_PER_BLOCK 64
#define UNET_MAX_SAMPLE_SIZE 65536
#define UNET_MAX_CLASSES (1 << 24)

static int validate_bound(int value, int max, const char *field, Error *err) {
    if (value > max) return error_set(err, "%s = %d is above the supported maximum %d", field, value, max);
    return 0;
}

int unet_config_validate(const UNetConfig *cfg, Error *err) {
    int n = cfg->n_blocks;
    if (n < 1 || n > UNET_MAX_BLOCKS)
        return error_set(err, "block_out_channels has %d entries; 1 to %d are supported", n, UNET_MAX_BLOCKS);
    for (int i = 0; i < n; i++)
        if (validate_bound(cfg->block_out_channels[i], UNET_MAX_CHANNELS, "block_out_channels entry", err)) return -1;
    if (validate_bound(cfg->in_channels, UNET_MAX_CHANNELS, "in_channels", err) ||
        validate_bound(cfg->out_channels, UNET_MAX_CHANNELS, "out_channels", err) ||
        validate_bound(cfg->time_embedding_dim, 4 * UNET_MAX_CHANNELS, "time_embedding_dim", err) ||
        validate_bound(cfg->layers_per_block, UNET_MAX_LAYERS_PER_BLOCK, "layers_per_block", err) ||
        validate_bound(cfg->sample_height, UNET_MAX_SAMPLE_SIZE, "sample_size", err) ||
        validate_bound(cfg->sample_width, UNET_MAX_SAMPLE_SIZE, "sample_size", err) ||
        validate_bound(cfg->num_class_embeds, UNET_MAX_CLASSES, "num_class_embeds", err))
        return -1;
    if (cfg->in_channels < 1 || cfg->out_channels < 1)
        return error_set(err, "in_channels and out_channels must be >= 1 (got %d and %d)", cfg->in_channels,
                         cfg->out_channels);
    if (cfg->layers_per_block < 1)
        return error_set(err, "layers_per_block must be >= 1 (got %d)", cfg->layers_per_block);
    if (cfg->norm_num_groups < 1) return error_set(err, "norm_num_groups must be >= 1 (got %d)", cfg->norm_num_groups);
    if (cfg->time_embedding_dim < 0)
        return error_set(err, "time_embedding_dim must be >= 1 or null (got %d)", cfg->time_embedding_dim);
    if (cfg->attention_head_dim < 0 || cfg->attn_norm_num_groups < 0 || cfg->num_class_embeds < 0 ||
        cfg->num_train_timesteps < 0 || cfg->sample_height < 0 || cfg->sample_width < 0)
        return error_set(err, "a negative value where a count or null is expected");
    if (cfg->downsample_padding != 0 && cfg->downsample_padding != 1)
        return error_set(err, "downsample_padding %d is not supported (supported: 0, 1)", cfg->downsample_padding);
    if (!(cfg->norm_eps > 0) || !isfinite(cfg->norm_eps))
        return error_set(err, "norm_eps must be a positive number (got %g)", cfg->norm_eps);
    if (!(cfg->dropout >= 0 && cfg->dropout < 1))
        return error_set(err, "dropout must be in [0, 1) (got %g)", cfg->dropout);
    if (!isfinite(cfg->mid_block_scale_factor) || cfg->mid_block_scale_factor == 0)
        return error_set(err, "mid_block_scale_factor must be a non-zero number (got %g)", cfg->mid_block_scale_factor);
    /* In forward order, so the first problem reported is the first the forward would meet. */
    for (int i = 0; i < n; i++) {
        int c = cfg->block_out_channels[i];
        if (c < 1) return error_set(err, "block_out_channels[%d] is %d; channel counts must be >= 1", i, c);
        if (c % cfg->norm_num_groups != 0)
            return error_set(err, "norm_num_groups %d does not divide block_out_channels[%d] = %d",
                             cfg->norm_num_groups, i, c);
    }
    if (cfg->freq_shift < 0 || cfg->freq_shift >= cfg->block_out_channels[0] / 2)
        return error_set(err, "freq_shift %d must be >= 0 and below half the sinusoid size %d", cfg->freq_shift,
                         cfg->block_out_channels[0] / 2);
    char where[64];
    for (int i = 0; i < n; i++) {
        if (!unet_block_type_is_down(cfg->down_block_types[i]))
            return error_set(err, "down_block_types[%d] is %s, an up block (supported: DownBlock2D, AttnDownBlock2D)",
                             i, unet_block_type_name(cfg->down_block_types[i]));
        if (unet_block_type_has_attention(cfg->down_block_types[i])) {
            snprintf(where, sizeof where, "down_blocks.%d", i);
            if (validate_attention(cfg, cfg->block_out_channels[i], where, err)) return -1;
        }
    }
    int deepest = cfg->block_out_channels[n - 1];
    if (cfg->mid_block_type == UNET_MID_BLOCK_2D && cfg->add_attention) {
        if (validate_attention(cfg, deepest, "mid_block", err)) return -1;
        if (cfg->attn_norm_num_groups > 0 && deepest % cfg->attn_norm_num_groups != 0)
            return error_set(err, "attn_norm_num_groups %d does not divide the mid block's %d channels",
                             cfg->attn_norm_num_groups, deepest);
    }
    for (int i = 0; i < n; i++) {
        if (unet_block_type_is_down(cfg->up_block_types[i]))
            return error_set(err, "up_block_types[%d] is %s, a down block (supported: UpBlock2D, AttnUpBlock2D)", i,
                             unet_block_type_name(cfg->up_block_types[i]));
        /* Up block i works at the channels of level n - 1 - i. */
        if (unet_block_type_has_attention(cfg->up_block_types[i])) {
            snprintf(where, sizeof where, "up_blocks.%d", i);
            if (validate_attention(cfg, cfg->block_out_channels[n - 1 - i], where, err)) return -1;
        }
    }
    int factor = 1 << (n - 1);
    if ((cfg->sample_height && cfg->sample_height % factor) || (cfg->sample_width && cfg->sample_width % factor))
        return error_set(err, "sample_size %dx%d is not divisible by 2^(len(block_out_channels) - 1) = %d",
                         cfg->sample_height, cfg->sample_width, factor);
    return unet_config_check_image_size(cfg, (size_t)cfg->sample_height, (size_t)cfg->sample_width, err);
}

/* 4 GB of fp32 per image in one activation at a level's own width: no real model comes near it, and with it
 * a batch's buffers and the cost counts stay far from overflowing size_t and uint64. */
#define UNET_MAX_LEVEL_VALUES ((size_t)1 << 30)

int unet_config_check_image_size(const UNetConfig *cfg, size_t height, size_t width, Error *err) {
    const size_t sides = cfg->in_channels > cfg->out_channels ? (size_t)cfg->in_channels : (size_t)cfg->out_channels;
    for (int level = -1; level < cfg->n_blocks; level++) {
        const size_t h = level < 0 ? height : height >> level, w = level < 0 ? width : width >> level;
        const size_t c = level < 0 ? sides : (size_t)cfg->block_out_channels[level];
        if (h > UNET_MAX_SAMPLE_SIZE || w > UNET_MAX_SAMPLE_SIZE || h * w * c > UNET_MAX_LEVEL_VALUES)
            return error_set(err, "images of %zux%zu are too large for this model: %zux%zux%zu values per image "
                             "in one activation, above the supported 2^30", height, width, h, w, c);
    }
    return 0;
}

/* ------------------------------------------------------------------------------------------------ */
/* config.json parsing */

typedef enum ConfigField {
    FIELD_SAMPLE_SIZE,
    FIELD_IN_CHANNELS,
    FIELD_OUT_CHANNELS,
    FIELD_CENTER_INPUT_SAMPLE,
    FIELD_TIME_EMBEDDING_TYPE,
    FIELD_TIME_EMBEDDING_DIM,
    FIELD_FREQ_SHIFT,
    FIELD_FLIP_SIN_TO_COS,
    FIELD_DOWN_BLOCK_TYPES,
    FIELD_MID_BLOCK_TYPE,
    FIELD_UP_BLOCK_TYPES,
    FIELD_BLOCK_OUT_CHANNELS,
    FIELD_LAYERS_PER_BLOCK,
    FIELD_MID_BLOCK_SCALE_FACTOR,
    FIELD_DOWNSAMPLE_PADDING,
    FIELD_DOWNSAMPLE_TYPE,
    FIELD_UPSAMPLE_TYPE,
    FIELD_DROPOUT,
    FIELD_ACT_FN,
    FIELD_ATTENTION_HEAD_DIM,
    FIELD_NORM_NUM_GROUPS,
    FIELD_ATTN_NORM_NUM_GROUPS,
    FIELD_NORM_EPS,
    FIELD_RESNET_TIME_SCALE_SHIFT,
    FIELD_ADD_ATTENTION,
    FIELD_CLASS_EMBED_TYPE,
    FIELD_NUM_CLASS_EMBEDS,
    FIELD_NUM_TRAIN_TIMESTEPS,
    N_FIELDS
} ConfigField;

/* Every argument of UNet2DModel.__init__, in its order. */
static const char *const field_names[N_FIELDS] = {
    "sample_size", "in_channels", "out_channels", "center_input_sample", "time_embedding_type",
    "time_embedding_dim", "freq_shift", "flip_sin_to_cos", "down_block_types", "mid_block_type", "up_block_types",
    "block_out_channels", "layers_per_block", "mid_block_scale_factor", "downsample_padding", "downsample_type",
    "upsample_type", "dropout", "act_fn", "attention_head_dim", "norm_num_groups", "attn_norm_num_groups",
    "norm_eps", "resnet_time_scale_shift", "add_attention", "class_embed_type", "num_class_embeds",
    "num_train_timesteps",
};

/* A short rendering of a JSON value for messages. */
static const char *json_preview(const cJSON *item, char *buf, size_t buf_bytes) {
    char *text = cJSON_PrintUnformatted(item);
    if (!text) {
        snprintf(buf, buf_bytes, "?");
        return buf;
    }
    if (strlen(text) > 60) snprintf(buf, buf_bytes, "%.57s...", text);
    else snprintf(buf, buf_bytes, "%s", text);
    cJSON_free(text);
    return buf;
}

static int type_error(const cJSON *item, const char *field, const char *expected, Error *err) {
    char got[80];
    return error_set(err, "field '%s' must be %s, got %s", field, expected, json_preview(item, got, sizeof got));
}

/* An integer >= min (JSON numbers are doubles: integral and within int range). */
static int parse_int(const cJSON *item, const char *field, int min, int *out, Error *err) {
    char expected[48];
    snprintf(expected, sizeof expected, "an integer >= %d", min);
    if (!cJSON_IsNumber(item)) return type_error(item, field, expected, err);
    double v = item->valuedouble;
    if (!(v >= min) || v > INT_MAX || floor(v) != v) return type_error(item, field, expected, err);
    *out = (int)v;
    return 0;
}

/* An integer >= 1, or null stored as 0. */
static int parse_count_or_null(const cJSON *item, const char *field, int *out, Error *err) {
    if (cJSON_IsNull(item)) {
        *out = 0;
        return 0;
    }
    if (!cJSON_IsNumber(item)) return type_error(item, field, "an integer >= 1 or null", err);
    return parse_int(item, field, 1, out, err);
}

static int parse_number(const cJSON *item, const char *field, double *out, Error *err) {
    if (!cJSON_IsNumber(item) || !isfinite(item->valuedouble)) return type_error(item, field, "a number", err);
    *out = item->valuedouble;
    return 0;
}

static int parse_bool(const cJSON *item, const char *field, bool *out, Error *err) {
    if (!cJSON_IsBool(item)) return type_error(item, field, "true or false", err);
    *out = cJSON_IsTrue(item);
    return 0;
}

static int unsupported_value(const cJSON *item, const char *field, const char *supported, Error *err) {
    char got[80];
    return error_set(err, "field '%s' = %s is not supported (supported: %s)", field,
                     json_preview(item, got, sizeof got), supported);
}

/* A string that must be one of the listed values (NULL-terminated); returns its index. */
static int parse_choice(const cJSON *item, const char *field, const char *const *choices, const char *supported,
                        int *index, Error *err) {
    if (!cJSON_IsString(item)) return type_error(item, field, "a string", err);
    for (int i = 0; choices[i]; i++) {
        if (strcmp(item->valuestring, choices[i]) == 0) {
            *index = i;
            return 0;
        }
    }
    return unsupported_value(item, field, supported, err);
}

static int parse_sample_size(const cJSON *item, UNetConfig *cfg, Error *err) {
    const char *expected = "an integer >= 1, [height, width] or null";
    if (cJSON_IsNull(item)) {
        cfg->sample_height = cfg->sample_width = 0;
        return 0;
    }
    if (cJSON_IsNumber(item)) {
        if (parse_int(item, "sample_size", 1, &cfg->sample_height, err))
            return type_error(item, "sample_size", expected, err);
        cfg->sample_width = cfg->sample_height;
        return 0;
    }
    if (!cJSON_IsArray(item) || cJSON_GetArraySize(item) != 2) return type_error(item, "sample_size", expected, err);
    if (parse_int(cJSON_GetArrayItem(item, 0), "sample_size", 1, &cfg->sample_height, err) ||
        parse_int(cJSON_GetArrayItem(item, 1), "sample_size", 1, &cfg->sample_width, err))
        return type_error(item, "sample_size", expected, err);
    return 0;
}

static int parse_block_list(const cJSON *item, const char *field, bool down, UNetBlockType *out, int *n_out,
                            Error *err) {
    const char *supported = down ? "DownBlock2D, AttnDownBlock2D" : "UpBlock2D, AttnUpBlock2D";
    if (!cJSON_IsArray(item)) return type_error(item, field, "a list of block type names", err);
    int n = cJSON_GetArraySize(item);
    if (n < 1 || n > UNET_MAX_BLOCKS)
        return error_set(err, "field '%s' has %d entries; 1 to %d are supported", field, n, UNET_MAX_BLOCKS);
    for (int i = 0; i < n; i++) {
        const cJSON *name = cJSON_GetArrayItem(item, i);
        if (!cJSON_IsString(name)) return type_error(name, field, "a list of block type names", err);
        UNetBlockType type;
        if (unet_block_type_from_name(name->valuestring, &type) || unet_block_type_is_down(type) != down)
            return error_set(err, "field '%s': block type \"%s\" is not supported (supported: %s)", field,
                             name->valuestring, supported);
        out[i] = type;
    }
    *n_out = n;
    return 0;
}

static int parse_channel_list(const cJSON *item, int *out, int *n_out, Error *err) {
    const char *field = "block_out_channels";
    if (!cJSON_IsArray(item)) return type_error(item, field, "a list of integers", err);
    int n = cJSON_GetArraySize(item);
    if (n < 1 || n > UNET_MAX_BLOCKS)
        return error_set(err, "field '%s' has %d entries; 1 to %d are supported", field, n, UNET_MAX_BLOCKS);
    for (int i = 0; i < n; i++)
        if (parse_int(cJSON_GetArrayItem(item, i), field, 1, &out[i], err)) return -1;
    *n_out = n;
    return 0;
}

/* The list lengths seen, so they can be checked against each other once all fields are read. */
typedef struct BlockCounts {
    int n_down, n_up, n_channels;
} BlockCounts;

static int parse_field(UNetConfig *cfg, BlockCounts *counts, ConfigField field, const cJSON *item, Error *err) {
    const char *name = field_names[field];
    int index;
    switch (field) {
    case FIELD_SAMPLE_SIZE: return parse_sample_size(item, cfg, err);
    case FIELD_IN_CHANNELS: return parse_int(item, name, 1, &cfg->in_channels, err);
    case FIELD_OUT_CHANNELS: return parse_int(item, name, 1, &cfg->out_channels, err);
    case FIELD_CENTER_INPUT_SAMPLE: return parse_bool(item, name, &cfg->center_input_sample, err);
    case FIELD_TIME_EMBEDDING_TYPE:
        if (parse_choice(item, name, (const char *const[]){"positional", NULL}, "\"positional\"", &index, err))
            return -1;
        cfg->time_embedding_type = UNET_TIME_EMBEDDING_POSITIONAL;
        return 0;
    case FIELD_TIME_EMBEDDING_DIM: return parse_count_or_null(item, name, &cfg->time_embedding_dim, err);
    case FIELD_FREQ_SHIFT: return parse_int(item, name, 0, &cfg->freq_shift, err);
    case FIELD_FLIP_SIN_TO_COS: return parse_bool(item, name, &cfg->flip_sin_to_cos, err);
    case FIELD_DOWN_BLOCK_TYPES: return parse_block_list(item, name, true, cfg->down_block_types, &counts->n_down, err);
    case FIELD_UP_BLOCK_TYPES: return parse_block_list(item, name, false, cfg->up_block_types, &counts->n_up, err);
    case FIELD_MID_BLOCK_TYPE:
        if (cJSON_IsNull(item)) {
            cfg->mid_block_type = UNET_MID_BLOCK_NONE;
            return 0;
        }
        if (parse_choice(item, name, (const char *const[]){"UNetMidBlock2D", NULL}, "\"UNetMidBlock2D\", null", &index,
                         err))
            return -1;
        cfg->mid_block_type = UNET_MID_BLOCK_2D;
        return 0;
    case FIELD_BLOCK_OUT_CHANNELS: return parse_channel_list(item, cfg->block_out_channels, &counts->n_channels, err);
    case FIELD_LAYERS_PER_BLOCK: return parse_int(item, name, 1, &cfg->layers_per_block, err);
    case FIELD_MID_BLOCK_SCALE_FACTOR: return parse_number(item, name, &cfg->mid_block_scale_factor, err);
    case FIELD_DOWNSAMPLE_PADDING:
        if (parse_int(item, name, 0, &cfg->downsample_padding, err)) return -1;
        if (cfg->downsample_padding > 1) return unsupported_value(item, name, "0, 1", err);
        return 0;
    case FIELD_DOWNSAMPLE_TYPE:
    case FIELD_UPSAMPLE_TYPE:
        if (parse_choice(item, name, (const char *const[]){"conv", "resnet", NULL}, "\"conv\", \"resnet\"", &index,
                         err))
            return -1;
        *(field == FIELD_DOWNSAMPLE_TYPE ? &cfg->downsample_type : &cfg->upsample_type) =
            index ? UNET_RESAMPLE_RESNET : UNET_RESAMPLE_CONV;
        return 0;
    case FIELD_DROPOUT: return parse_number(item, name, &cfg->dropout, err);
    case FIELD_ACT_FN:
        if (parse_choice(item, name, (const char *const[]){"silu", "swish", NULL}, "\"silu\" (alias \"swish\")", &index,
                         err))
            return -1;
        cfg->act_fn = UNET_ACT_SILU;
        return 0;
    case FIELD_ATTENTION_HEAD_DIM: return parse_count_or_null(item, name, &cfg->attention_head_dim, err);
    case FIELD_NORM_NUM_GROUPS: return parse_int(item, name, 1, &cfg->norm_num_groups, err);
    case FIELD_ATTN_NORM_NUM_GROUPS: return parse_count_or_null(item, name, &cfg->attn_norm_num_groups, err);
    case FIELD_NORM_EPS: return parse_number(item, name, &cfg->norm_eps, err);
    case FIELD_RESNET_TIME_SCALE_SHIFT:
        if (parse_choice(item, name, (const char *const[]){"default", "scale_shift", NULL},
                         "\"default\", \"scale_shift\"", &index, err))
            return -1;
        cfg->resnet_time_scale_shift = index ? UNET_TIME_SCALE_SHIFT_SCALE_SHIFT : UNET_TIME_SCALE_SHIFT_DEFAULT;
        return 0;
    case FIELD_ADD_ATTENTION: return parse_bool(item, name, &cfg->add_attention, err);
    case FIELD_CLASS_EMBED_TYPE:
        if (!cJSON_IsNull(item))
            return unsupported_value(item, name, "null (class labels go through num_class_embeds)", err);
        return 0;
    case FIELD_NUM_CLASS_EMBEDS: return parse_count_or_null(item, name, &cfg->num_class_embeds, err);
    case FIELD_NUM_TRAIN_TIMESTEPS: return parse_count_or_null(item, name, &cfg->num_train_timesteps, err);
    case N_FIELDS: break;
    }
    CHECK(0, "unhandled field %d", (int)field);
}

static bool name_in_list(const cJSON *list, const char *name) {
    for (const cJSON *item = list ? list->child : NULL; item; item = item->next)
        if (cJSON_IsString(item) && strcmp(item->valuestring, name) == 0) return true;
    return false;
}

static int unknown_field(const char *name, Error *err) {
    char list[700] = "";
    for (int i = 0; i < N_FIELDS; i++)
        snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", i ? ", " : "", field_names[i]);
    return error_set(err, "unknown field '%s' (UNet2DModel fields: %s)", name, list);
}

static int parse_object(UNetConfig *cfg, const cJSON *root, Error *err) {
    if (!cJSON_IsObject(root)) return error_set(err, "not a JSON object");
    const cJSON *class_name = cJSON_GetObjectItemCaseSensitive(root, "_class_name");
    if (class_name && !(cJSON_IsString(class_name) && strcmp(class_name->valuestring, "UNet2DModel") == 0)) {
        char got[80];
        return error_set(err, "_class_name is %s; only UNet2DModel configs are supported",
                         json_preview(class_name, got, sizeof got));
    }
    /* diffusers drops the fields listed here and uses the constructor default instead. */
    const cJSON *use_defaults = cJSON_GetObjectItemCaseSensitive(root, "_use_default_values");
    if (use_defaults && !cJSON_IsArray(use_defaults))
        return type_error(use_defaults, "_use_default_values", "a list of field names", err);

    *cfg = unet_config_defaults();
    BlockCounts counts = {cfg->n_blocks, cfg->n_blocks, cfg->n_blocks};
    bool seen[N_FIELDS] = {false};
    for (const cJSON *item = root->child; item; item = item->next) {
        const char *name = item->string;
        if (name[0] == '_' || name_in_list(use_defaults, name)) continue;
        int field = 0;
        while (field < N_FIELDS && strcmp(field_names[field], name) != 0) field++;
        if (field == N_FIELDS) return unknown_field(name, err);
        if (seen[field]) return error_set(err, "field '%s' appears twice", name);
        seen[field] = true;
        if (parse_field(cfg, &counts, (ConfigField)field, item, err)) return -1;
    }
    if (counts.n_down != counts.n_up || counts.n_down != counts.n_channels)
        return error_set(err, "block_out_channels, down_block_types and up_block_types must have the same length "
                         "(got %d, %d and %d)", counts.n_channels, counts.n_down, counts.n_up);
    cfg->n_blocks = counts.n_channels;
    return unet_config_validate(cfg, err);
}

int unet_config_from_json(UNetConfig *cfg, const char *json, size_t json_bytes, const char *source, Error *err) {
    if (json_check_values(json, json_bytes, JSON_MAX_VALUES, source, err)) return -1;
    cJSON *root = cJSON_ParseWithLength(json, json_bytes);
    if (!root) {
        const char *at = cJSON_GetErrorPtr();
        size_t offset = at && at >= json && at <= json + json_bytes ? (size_t)(at - json) : 0;
        return error_set(err, "%s: not valid JSON (error near byte %zu)", source, offset);
    }
    int rc = parse_object(cfg, root, err);
    cJSON_Delete(root);
    if (rc) return error_prefix(err, "%s", source);
    return 0;
}

/* ------------------------------------------------------------------------------------------------ */
/* config.json writing, formatted as Python's json.dumps(config, indent=2, sort_keys=True) */

typedef struct TextBuf {
    char *data;
    size_t len, cap;
} TextBuf;

static void text_printf(TextBuf *b, const char *fmt, ...) DIFFUSE_PRINTF(2, 3);
static void text_printf(TextBuf *b, const char *fmt, ...) {
    for (;;) {
        va_list args;
        va_start(args, fmt);
        int n = vsnprintf(b->data + b->len, b->cap - b->len, fmt, args);
        va_end(args);
        CHECK(n >= 0, "vsnprintf failed");
        if ((size_t)n < b->cap - b->len) {
            b->len += (size_t)n;
            return;
        }
        b->cap = (b->cap + (size_t)n + 1) * 2;
        b->data = xrealloc(b->data, b->cap);
    }
}

/* Python's float repr: the shortest %g that reads back exactly, always with a '.' or an exponent. */
static void format_float(char *buf, size_t buf_bytes, double v) {
    for (int precision = 15; precision <= 17; precision++) {
        snprintf(buf, buf_bytes, "%.*g", precision, v);
        if (strtod(buf, NULL) == v) break;
    }
    if (!strpbrk(buf, ".en")) snprintf(buf + strlen(buf), buf_bytes - strlen(buf), ".0");
}

typedef struct JsonWriter {
    TextBuf text;
    int n_items;
} JsonWriter;

static void json_key(JsonWriter *w, const char *key) {
    text_printf(&w->text, "%s\n  \"%s\": ", w->n_items++ ? "," : "", key);
}

static void json_string(JsonWriter *w, const char *key, const char *value) {
    json_key(w, key);
    if (value) text_printf(&w->text, "\"%s\"", value);
    else text_printf(&w->text, "null");
}

static void json_int_or_null(JsonWriter *w, const char *key, int value) {
    json_key(w, key);
    if (value) text_printf(&w->text, "%d", value);
    else text_printf(&w->text, "null");
}

static void json_int(JsonWriter *w, const char *key, int value) {
    json_key(w, key);
    text_printf(&w->text, "%d", value);
}

static void json_bool(JsonWriter *w, const char *key, bool value) {
    json_key(w, key);
    text_printf(&w->text, "%s", value ? "true" : "false");
}

/* integral: written as an int when the value is one (diffusers' default mid_block_scale_factor is 1). */
static void json_number(JsonWriter *w, const char *key, double value, bool integral) {
    char buf[40];
    if (integral && floor(value) == value && fabs(value) < 1e15) snprintf(buf, sizeof buf, "%.0f", value);
    else format_float(buf, sizeof buf, value);
    json_key(w, key);
    text_printf(&w->text, "%s", buf);
}

static void json_blocks(JsonWriter *w, const char *key, const UNetBlockType *types, int n) {
    json_key(w, key);
    text_printf(&w->text, "[");
    for (int i = 0; i < n; i++)
        text_printf(&w->text, "%s\n    \"%s\"", i ? "," : "", unet_block_type_name(types[i]));
    text_printf(&w->text, "\n  ]");
}

char *unet_config_to_json(const UNetConfig *cfg) {
    JsonWriter w = {{xmalloc(1024), 0, 1024}, 0};
    text_printf(&w.text, "{");
    /* In sorted key order: '_' sorts before the lower-case letters. */
    json_string(&w, "_class_name", "UNet2DModel");
    json_string(&w, "_diffusers_version", UNET_DIFFUSERS_VERSION);
    json_string(&w, "act_fn", unet_activation_name(cfg->act_fn));
    json_bool(&w, "add_attention", cfg->add_attention);
    json_int_or_null(&w, "attention_head_dim", cfg->attention_head_dim);
    json_int_or_null(&w, "attn_norm_num_groups", cfg->attn_norm_num_groups);
    json_key(&w, "block_out_channels");
    text_printf(&w.text, "[");
    for (int i = 0; i < cfg->n_blocks; i++)
        text_printf(&w.text, "%s\n    %d", i ? "," : "", cfg->block_out_channels[i]);
    text_printf(&w.text, "\n  ]");
    json_bool(&w, "center_input_sample", cfg->center_input_sample);
    json_string(&w, "class_embed_type", NULL);
    json_blocks(&w, "down_block_types", cfg->down_block_types, cfg->n_blocks);
    json_int(&w, "downsample_padding", cfg->downsample_padding);
    json_string(&w, "downsample_type", unet_resample_type_name(cfg->downsample_type));
    json_number(&w, "dropout", cfg->dropout, false);
    json_bool(&w, "flip_sin_to_cos", cfg->flip_sin_to_cos);
    json_int(&w, "freq_shift", cfg->freq_shift);
    json_int(&w, "in_channels", cfg->in_channels);
    json_int(&w, "layers_per_block", cfg->layers_per_block);
    json_number(&w, "mid_block_scale_factor", cfg->mid_block_scale_factor, true);
    json_string(&w, "mid_block_type", unet_mid_block_type_name(cfg->mid_block_type));
    json_number(&w, "norm_eps", cfg->norm_eps, false);
    json_int(&w, "norm_num_groups", cfg->norm_num_groups);
    json_int_or_null(&w, "num_class_embeds", cfg->num_class_embeds);
    json_int_or_null(&w, "num_train_timesteps", cfg->num_train_timesteps);
    json_int(&w, "out_channels", cfg->out_channels);
    json_string(&w, "resnet_time_scale_shift", unet_time_scale_shift_name(cfg->resnet_time_scale_shift));
    json_key(&w, "sample_size");
    if (!cfg->sample_height) text_printf(&w.text, "null");
    else if (cfg->sample_height == cfg->sample_width) text_printf(&w.text, "%d", cfg->sample_height);
    else text_printf(&w.text, "[\n    %d,\n    %d\n  ]", cfg->sample_height, cfg->sample_width);
    json_int_or_null(&w, "time_embedding_dim", cfg->time_embedding_dim);
    json_string(&w, "time_embedding_type", unet_time_embedding_type_name(cfg->time_embedding_type));
    json_blocks(&w, "up_block_types", cfg->up_block_types, cfg->n_blocks);
    json_string(&w, "upsample_type", unet_resample_type_name(cfg->upsample_type));
    text_printf(&w.text, "\n}\n");
    return w.text.data;
}
