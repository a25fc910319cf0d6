/* The configuration of diffusers' UNet2DModel (diffusers/models/unets/unet_2d.py), field for field as its
 * config.json spells it, for the subset of values diffuse implements: positional time embeddings, the
 * DownBlock2D / AttnDownBlock2D / UpBlock2D / AttnUpBlock2D blocks, UNetMidBlock2D or none, SiLU,
 * "default" and "scale_shift" time conditioning, conv or resnet resampling, class labels through an
 * embedding table. Everything else is refused by name when parsed, never ignored, because a model that
 * silently differs from the one in the file would train and sample something else.
 *
 * Absent optional values (JSON null) are 0 in the struct: sample_size, time_embedding_dim,
 * attention_head_dim, attn_norm_num_groups, num_class_embeds, num_train_timesteps. */
#ifndef DIFFUSE_UNET_CONFIG_H
#define DIFFUSE_UNET_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

#include "core/error.h"

/* Resolution levels (len(block_out_channels)); diffusers' own configs use 2 to 6. */
#define UNET_MAX_BLOCKS 8

typedef enum UNetBlockType {
    UNET_BLOCK_DOWN,      /* "DownBlock2D": resnets, then a downsampler */
    UNET_BLOCK_ATTN_DOWN, /* "AttnDownBlock2D": resnet + self-attention pairs, then a downsampler */
    UNET_BLOCK_UP,        /* "UpBlock2D" */
    UNET_BLOCK_ATTN_UP,   /* "AttnUpBlock2D" */
    UNET_BLOCK_N_TYPES
} UNetBlockType;

typedef enum UNetMidBlockType {
    UNET_MID_BLOCK_NONE, /* JSON null */
    UNET_MID_BLOCK_2D,   /* "UNetMidBlock2D" */
} UNetMidBlockType;

/* downsample_type / upsample_type. */
typedef enum UNetResampleType {
    UNET_RESAMPLE_CONV,   /* "conv": stride-2 conv down, nearest x2 + conv up */
    UNET_RESAMPLE_RESNET, /* "resnet": a ResnetBlock2D with down=True / up=True (avg-pool / nearest inside) */
} UNetResampleType;

/* resnet_time_scale_shift: how the time embedding enters a resnet. */
typedef enum UNetTimeScaleShift {
    UNET_TIME_SCALE_SHIFT_DEFAULT,     /* "default": h = conv1(...) + proj(temb) before norm2 */
    UNET_TIME_SCALE_SHIFT_SCALE_SHIFT, /* "scale_shift": norm2(h) * (1 + scale) + shift, proj to 2C */
} UNetTimeScaleShift;

typedef enum UNetTimeEmbeddingType {
    UNET_TIME_EMBEDDING_POSITIONAL, /* "positional": sinusoidal, as get_timestep_embedding */
} UNetTimeEmbeddingType;

typedef enum UNetActivation {
    UNET_ACT_SILU, /* "silu" (diffusers also spells it "swish") */
} UNetActivation;

typedef struct UNetConfig {
    int sample_height, sample_width; /* sample_size: an int (square) or [height, width]; 0 when null */
    int in_channels, out_channels;
    bool center_input_sample; /* x = 2x - 1 first */
    UNetTimeEmbeddingType time_embedding_type;
    int time_embedding_dim; /* 0: block_out_channels[0] * 4 */
    int freq_shift;         /* downscale_freq_shift of the sinusoid */
    bool flip_sin_to_cos;   /* [cos, sin] instead of [sin, cos] */
    int n_blocks;           /* len(block_out_channels) == len(down_block_types) == len(up_block_types) */
    UNetBlockType down_block_types[UNET_MAX_BLOCKS];
    UNetMidBlockType mid_block_type;
    UNetBlockType up_block_types[UNET_MAX_BLOCKS];
    int block_out_channels[UNET_MAX_BLOCKS];
    int layers_per_block; /* resnets per down block; up blocks have one more */
    double mid_block_scale_factor;
    int downsample_padding; /* 1, or 0: pad right/bottom by one then a stride-2 conv without padding */
    UNetResampleType downsample_type, upsample_type;
    double dropout;
    UNetActivation act_fn;
    int attention_head_dim; /* 0: one head of all channels */
    int norm_num_groups;
    int attn_norm_num_groups; /* mid-block attention only; 0: see unet_config_mid_attention_groups */
    double norm_eps;
    UNetTimeScaleShift resnet_time_scale_shift;
    bool add_attention; /* attention in the mid block */
    int num_class_embeds;    /* 0: unconditional */
    int num_train_timesteps; /* only used by "learned" time embeddings; kept so a config round-trips */
} UNetConfig;

const char *unet_block_type_name(UNetBlockType type);
/* -1 when the name is not a supported block (diffusers' "UNetRes" prefix is accepted, as diffusers does). */
int unet_block_type_from_name(const char *name, UNetBlockType *type);
bool unet_block_type_is_down(UNetBlockType type);
bool unet_block_type_has_attention(UNetBlockType type);
const char *unet_mid_block_type_name(UNetMidBlockType type); /* NULL for none */
const char *unet_resample_type_name(UNetResampleType type);
int unet_resample_type_from_name(const char *name, UNetResampleType *type);
const char *unet_time_scale_shift_name(UNetTimeScaleShift shift);
int unet_time_scale_shift_from_name(const char *name, UNetTimeScaleShift *shift);
const char *unet_time_embedding_type_name(UNetTimeEmbeddingType type);
const char *unet_activation_name(UNetActivation act);

/* UNet2DModel's constructor defaults (the 274M-parameter model), with sample_size null. */
UNetConfig unet_config_defaults(void);

/* Named presets, usable wherever a config is: "default" (the class defaults, 64x64 RGB),
 * "ddpm-cifar10" (google/ddpm-cifar10-32), "ddpm-celebahq-256" (google/ddpm-celebahq-256 and the other
 * 256px DDPM checkpoints) and "fashion-mnist" (a small 28x28 greyscale model; see unet_config.c). */
int unet_config_preset(UNetConfig *cfg, const char *name, Error *err);
/* The preset names, NULL-terminated. */
const char *const *unet_config_preset_names(void);

/* Checks what the constructor and the forward pass need: matching block counts, channel counts
 * divisible by the norm groups and by attention_head_dim, a sample size divisible by 2^(n_blocks - 1).
 * The message names the offending field. */
int unet_config_validate(const UNetConfig *cfg, Error *err);
/* An error when images of height x width would give an activation of more than 2^30 values per image (the
 * model's input or output, or a level's own channels): sizes far above any real model, whose products
 * would overflow. unet_config_validate checks the config's sample_size with it. */
int unet_config_check_image_size(const UNetConfig *cfg, size_t height, size_t width, Error *err);

/* Parses a diffusers config.json (JSON text of json_bytes bytes) and validates it. `source` names the
 * file in messages. Fields starting with '_' are diffusers' bookkeeping and are skipped (diffusers skips
 * them too); a field listed in "_use_default_values" takes its default, as in diffusers. Any other unknown
 * field, a value of the wrong JSON type, or a value diffuse does not implement is an error naming it and
 * listing what is supported. */
int unet_config_from_json(UNetConfig *cfg, const char *json, size_t json_bytes, const char *source, Error *err);

/* config.json text as diffusers' save_pretrained writes it (keys sorted, 2-space indent,
 * "_class_name": "UNet2DModel"). Free with free(). */
char *unet_config_to_json(const UNetConfig *cfg);

/* Derived values the constructor computes. */
int unet_config_time_embed_dim(const UNetConfig *cfg);
/* Heads of an attention layer over `channels` channels. */
int unet_config_attention_heads(const UNetConfig *cfg, int channels);
/* GroupNorm groups of the mid-block attention, 0 when it has no norm: attn_norm_num_groups when set,
 * else norm_num_groups with "default" time conditioning and none with "scale_shift" (diffusers'
 * UNetMidBlock2D). The down/up-block attentions always use norm_num_groups. */
int unet_config_mid_attention_groups(const UNetConfig *cfg);

#endif
