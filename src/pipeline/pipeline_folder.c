/* Run folders: resolving a model path for sampling, and writing a run folder (see pipeline_folder.h). */
#define _POSIX_C_SOURCE 200809L
#include "pipeline/pipeline_folder.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "io/atomic_file.h"
#include "io/model_folder.h"

static bool is_file(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static bool is_folder(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* folder/name into out; false when it does not fit. */
static bool join(char *out, size_t out_bytes, const char *folder, const char *name) {
    size_t n = strlen(folder);
    int len = snprintf(out, out_bytes, "%s%s%s", folder, n && folder[n - 1] == '/' ? "" : "/", name);
    return len >= 0 && (size_t)len < out_bytes;
}

int pipeline_source_resolve(PipelineSource *src, const char *path, const PipelineSourceOptions *opt, Error *err) {
    *src = (PipelineSource){0};
    char config[PIPELINE_PATH_BYTES + 64], unet_config[PIPELINE_PATH_BYTES + 64], index[PIPELINE_PATH_BYTES + 64];
    if (strlen(path) + 64 >= PIPELINE_PATH_BYTES) return error_set(err, "%.200s...: path too long", path);
    if (!is_folder(path)) {
        if (is_file(path))
            return error_set(err, "%s is a file, not a model folder (give the run folder or the UNet2DModel folder "
                                  "holding config.json and the weights)", path);
        return error_set(err, "%s: no such model folder (give a run folder written by diffuse train, or a "
                              "diffusers UNet2DModel or DDPMPipeline folder)", path);
    }
    join(config, sizeof config, path, MODEL_CONFIG_FILE);
    char unet_dir[PIPELINE_PATH_BYTES];
    join(unet_dir, sizeof unet_dir, path, PIPELINE_UNET_DIR);
    join(unet_config, sizeof unet_config, unet_dir, MODEL_CONFIG_FILE);
    join(index, sizeof index, path, PIPELINE_INDEX_FILE);
    bool bare = is_file(config);
    src->is_pipeline = !bare && (is_file(unet_config) || is_file(index));
    if (!bare && !src->is_pipeline)
        return error_set(err, "%s: no config.json here or in unet/ (not a diffusers model or pipeline folder)", path);
    if (src->is_pipeline && !is_file(unet_config))
        return error_set(err, "%s: has model_index.json but no unet/config.json (an incomplete pipeline folder)", path);

    bool ema = opt && opt->ema;
    if (ema && !src->is_pipeline)
        return error_set(err, "--ema needs a run folder with unet_ema/, but %s is a bare model folder", path);
    if (ema) {
        join(src->model_dir, sizeof src->model_dir, path, PIPELINE_UNET_EMA_DIR);
        char ema_config[PIPELINE_PATH_BYTES + 64];
        join(ema_config, sizeof ema_config, src->model_dir, MODEL_CONFIG_FILE);
        if (!is_file(ema_config))
            return error_set(err, "%s: no unet_ema/config.json (the run kept no EMA weights; sample without --ema)",
                             path);
    } else {
        snprintf(src->model_dir, sizeof src->model_dir, "%s", src->is_pipeline ? unet_dir : path);
    }
    char model_config[PIPELINE_PATH_BYTES + 64];
    join(model_config, sizeof model_config, src->model_dir, MODEL_CONFIG_FILE);
    if (model_config_load(&src->config, model_config, err)) return -1;

    if (opt && opt->scheduler_config) {
        if (!is_file(opt->scheduler_config))
            return error_set(err, "%s: no such scheduler config file", opt->scheduler_config);
        if (strlen(opt->scheduler_config) >= sizeof src->scheduler_path)
            return error_set(err, "%.200s...: path too long", opt->scheduler_config);
        snprintf(src->scheduler_path, sizeof src->scheduler_path, "%s", opt->scheduler_config);
    } else if (src->is_pipeline) {
        char scheduler_dir[PIPELINE_PATH_BYTES + 32];
        join(scheduler_dir, sizeof scheduler_dir, path, PIPELINE_SCHEDULER_DIR);
        join(src->scheduler_path, sizeof src->scheduler_path, scheduler_dir, PIPELINE_SCHEDULER_FILE);
        if (!is_file(src->scheduler_path)) src->scheduler_path[0] = '\0';
    }
    return 0;
}

int pipeline_source_scheduler(SchedulerConfig *cfg, const PipelineSource *src, SamplerKind kind, Error *err) {
    if (src->scheduler_path[0]) return scheduler_config_read_as(cfg, src->scheduler_path, kind, err);
    *cfg = scheduler_config_default(kind);
    return 0;
}

int pipeline_source_load_unet(UNet *net, const PipelineSource *src, Error *err) {
    if (unet_init(net, &src->config, false, err)) return error_prefix(err, "%s", src->model_dir);
    if (model_weights_load(src->model_dir, &net->layout.params, net->params, NULL, err)) {
        unet_free(net);
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------------------------------------ */
/* Writing */

static int make_folder(const char *path, Error *err) {
    if (mkdir(path, 0777) != 0 && errno != EEXIST)
        return error_set(err, "%s: cannot create folder: %s", path, strerror(errno));
    if (!is_folder(path)) return error_set(err, "%s exists and is not a folder", path);
    return 0;
}

int pipeline_folder_save(const char *dir, const UNet *net, const float *ema_params, const SchedulerConfig *scheduler,
                         Error *err) {
    char path[PIPELINE_PATH_BYTES + 64], sub[PIPELINE_PATH_BYTES + 32];
    if (strlen(dir) + 64 >= PIPELINE_PATH_BYTES) return error_set(err, "%.200s...: path too long", dir);
    const UNetConfig *cfg = &net->layout.config;
    join(sub, sizeof sub, dir, PIPELINE_UNET_DIR);
    if (model_folder_save(sub, cfg, &net->layout.params, net->params, err)) return -1;
    if (ema_params) {
        join(sub, sizeof sub, dir, PIPELINE_UNET_EMA_DIR);
        if (model_folder_save(sub, cfg, &net->layout.params, ema_params, err)) return -1;
    }
    join(sub, sizeof sub, dir, PIPELINE_SCHEDULER_DIR);
    if (make_folder(sub, err)) return -1;
    join(path, sizeof path, sub, PIPELINE_SCHEDULER_FILE);
    if (scheduler_config_write(scheduler, path, err)) return -1;

    /* The layout diffusers' save_pretrained gives model_index.json: sorted keys, two-space indent. */
    char index[512];
    snprintf(index, sizeof index,
             "{\n  \"_class_name\": \"DDPMPipeline\",\n  \"_diffusers_version\": \"%s\",\n"
             "  \"scheduler\": [\n    \"diffusers\",\n    \"%s\"\n  ],\n"
             "  \"unet\": [\n    \"diffusers\",\n    \"UNet2DModel\"\n  ]\n}\n",
             SCHEDULER_CONFIG_DIFFUSERS_VERSION, sampler_kind_class_name(scheduler->kind));
    join(path, sizeof path, dir, PIPELINE_INDEX_FILE);
    return atomic_file_write_all(path, index, strlen(index), err);
}
