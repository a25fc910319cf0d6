/* diffusers model folders: config.json + diffusion_pytorch_model.safetensors (or shards listed in
 * diffusion_pytorch_model.safetensors.index.json), as UNet2DModel.save_pretrained writes them and
 * from_pretrained reads them.
 *
 * Loading goes through the parameter table built from the config: every tensor in the files must be a
 * table entry of the same shape, and every entry must be present, so a file that does not match its
 * config is an error naming the file and the tensor, never a silent partial load. F32, F16 and BF16 are
 * read (converted to fp32); the legacy attention names query/key/value/proj_attn are read as
 * to_q/to_k/to_v/to_out.0, as diffusers renames them on load.
 * Saving writes current names, F32, metadata {"format": "pt"}; each file is written atomically. */
#ifndef DIFFUSE_MODEL_FOLDER_H
#define DIFFUSE_MODEL_FOLDER_H

#include <stddef.h>

#include "core/error.h"
#include "nn/params.h"
#include "nn/unet_config.h"

#define MODEL_CONFIG_FILE "config.json"
#define MODEL_WEIGHTS_FILE "diffusion_pytorch_model.safetensors"
#define MODEL_WEIGHTS_INDEX_FILE "diffusion_pytorch_model.safetensors.index.json"

/* Reads and validates a config.json file. */
int model_config_load(UNetConfig *cfg, const char *path, Error *err);

typedef enum ModelSourceKind {
    MODEL_SOURCE_PRESET,      /* a preset name: no file, no weights */
    MODEL_SOURCE_CONFIG_FILE, /* a config.json file */
    MODEL_SOURCE_FOLDER,      /* a model folder, or a pipeline folder whose unet/ is one */
} ModelSourceKind;

typedef struct ModelSource {
    ModelSourceKind kind;
    char path[4096]; /* the config file, or the model folder (with unet/ appended for a pipeline) */
} ModelSource;

/* Where a model comes from, given as a model folder, a pipeline folder, a config.json path or a preset
 * name (an existing path wins over a preset of the same name); reads its config. */
int model_source_resolve(ModelSource *src, UNetConfig *cfg, const char *spec, Error *err);

/* What model_weights_load found. */
typedef struct ModelWeightsInfo {
    size_t n_files;        /* 1, or the number of shards */
    size_t n_tensors;
    size_t n_f32, n_f16, n_bf16;
    size_t n_legacy_names; /* tensors read under a legacy attention name */
} ModelWeightsInfo;

/* Reads the folder's weights into params (table->n_floats floats, laid out by the table). With params
 * NULL, only checks names, shapes and dtypes against the table. info may be NULL. */
int model_weights_load(const char *folder, const ParamTable *table, float *params, ModelWeightsInfo *info,
                       Error *err);

/* Creates the folder (and its parents) when missing and writes the weights, then config.json. A stale
 * shard index left in the folder is removed, since diffusers would prefer it to the new file. */
int model_folder_save(const char *folder, const UNetConfig *cfg, const ParamTable *table, const float *params,
                      Error *err);

#endif
