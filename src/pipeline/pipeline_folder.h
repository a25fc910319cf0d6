/* Run folders: what the trainer writes and the sampler reads. A run folder is a diffusers pipeline folder,
 * so DDPMPipeline.from_pretrained loads it unchanged (DESIGN.md, Files):
 *   run/model_index.json                    {"_class_name": "DDPMPipeline", "scheduler": [...], "unet": [...]}
 *   run/unet/                               UNet2DModel: config.json + diffusion_pytorch_model.safetensors
 *   run/scheduler/scheduler_config.json     DDPMScheduler config
 *   run/unet_ema/                           the EMA weights, when EMA is on (diffusers ignores this folder)
 * A sampler also accepts a bare UNet2DModel folder, which has no scheduler: then DDPMScheduler's defaults
 * (linear β 1e-4 -> 0.02, T = 1000) apply, unless a scheduler_config.json is named explicitly.
 *
 * Samplers other than the folder's scheduler class get their config the way diffusers' pipelines swap
 * schedulers, Class.from_config(scheduler.config) (scheduler_config_read_as): DDIM and DPM-Solver++ from
 * a run folder keep its schedule, prediction type, spacing and offset and take their own defaults for the
 * rest; from a bare folder they are the classes' defaults, as from_config of a default DDPMScheduler. */
#ifndef DIFFUSE_PIPELINE_FOLDER_H
#define DIFFUSE_PIPELINE_FOLDER_H

#include <stdbool.h>
#include <stddef.h>

#include "core/error.h"
#include "diffusion/scheduler_config.h"
#include "nn/unet.h"
#include "nn/unet_config.h"

#define PIPELINE_INDEX_FILE "model_index.json"
#define PIPELINE_UNET_DIR "unet"
#define PIPELINE_UNET_EMA_DIR "unet_ema"
#define PIPELINE_SCHEDULER_DIR "scheduler"
#define PIPELINE_SCHEDULER_FILE "scheduler_config.json"
#define PIPELINE_PATH_BYTES 4096

typedef struct PipelineSourceOptions {
    bool ema;                     /* the EMA weights (unet_ema/) instead of unet/; needs a run folder */
    const char *scheduler_config; /* a scheduler_config.json used instead of the folder's; NULL: the folder's */
} PipelineSourceOptions;

typedef struct PipelineSource {
    bool is_pipeline;                        /* a run / pipeline folder, not a bare model folder */
    char model_dir[PIPELINE_PATH_BYTES];     /* the UNet2DModel folder whose weights are loaded */
    char scheduler_path[PIPELINE_PATH_BYTES]; /* the scheduler config, "" for DDPMScheduler's defaults */
    UNetConfig config;                       /* of model_dir */
} PipelineSource;

/* Resolves `path` (a run / pipeline folder or a bare UNet2DModel folder) and reads the model's config.
 * Errors name the path and what is missing: not a folder, no config.json in it or in unet/, --ema without
 * unet_ema/, a named scheduler config that is not a file. */
int pipeline_source_resolve(PipelineSource *src, const char *path, const PipelineSourceOptions *opt, Error *err);

/* The scheduler config for sampler `kind` (see above). The caller frees it (scheduler_config_free). */
int pipeline_source_scheduler(SchedulerConfig *cfg, const PipelineSource *src, SamplerKind kind, Error *err);

/* A sampling-only UNet (no gradients) with the source's weights; unet_free it. */
int pipeline_source_load_unet(UNet *net, const PipelineSource *src, Error *err);

/* Writes a run folder: unet/ from net's parameters, unet_ema/ from ema_params (laid out like net->params)
 * when not NULL, scheduler/scheduler_config.json from `scheduler`, and model_index.json last, naming the
 * scheduler's class. Creates the folder and its parents; each file is written atomically. An existing
 * unet_ema/ is left alone when ema_params is NULL. */
int pipeline_folder_save(const char *dir, const UNet *net, const float *ema_params, const SchedulerConfig *scheduler,
                         Error *err);

#endif
