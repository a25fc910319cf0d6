/* `diffuse init <config.json | preset | model folder> <output folder>`: a model folder with freshly
 * initialised weights (PyTorch's default initialisation in distribution, from a seed), which diffusers
 * loads with UNet2DModel.from_pretrained; with --pipeline, a run folder (unet/, scheduler/,
 * model_index.json) that DDPMPipeline.from_pretrained loads. */
#include <stdint.h>
#include <stdio.h>

#include "cli/commands.h"
#include "cli/options.h"
#include "core/alloc.h"
#include "io/model_folder.h"
#include "nn/unet_layout.h"
#include "pipeline/pipeline_folder.h"

/* The run folder: the weights as a UNet, and the scheduler from a file or DDPMScheduler's defaults. */
static int init_pipeline(const char *folder, const UNetConfig *cfg, uint64_t seed, const char *scheduler_path,
                         Error *err) {
    SchedulerConfig scheduler = scheduler_config_default(SAMPLER_DDPM);
    if (scheduler_path && scheduler_config_read(&scheduler, scheduler_path, err)) return -1;
    UNet net;
    int rc = unet_init(&net, cfg, false, err);
    if (rc == 0) {
        unet_init_weights(&net, seed);
        rc = pipeline_folder_save(folder, &net, NULL, &scheduler, err);
        if (rc == 0)
            printf("%s: run folder (unet/, scheduler/ %s), %zu parameters, seed %llu\n", folder,
                   sampler_kind_class_name(scheduler.kind), net.n_params, (unsigned long long)seed);
        unet_free(&net);
    }
    scheduler_config_free(&scheduler);
    return rc;
}

int cmd_init(int argc, char **argv, Error *err) {
    int seed = 0;
    bool pipeline = false;
    const char *scheduler_path = NULL;
    const Option options[] = {
        {"seed", OPTION_INT, &seed, "N", "seed of the initial weights"},
        {"pipeline", OPTION_FLAG, &pipeline, NULL, "write a run folder: unet/, scheduler/, model_index.json"},
        {"scheduler-config", OPTION_STRING, &scheduler_path, "FILE",
         "with --pipeline: the scheduler_config.json to write (default: DDPMScheduler's defaults)"},
        {NULL, 0, NULL, NULL, NULL},
    };
    const OptionSpec spec = {
        .command = "init",
        .usage = "diffuse init <config.json | preset | model folder> <output folder> [options]",
        .summary = "Writes config.json and diffusion_pytorch_model.safetensors (F32) with weights initialised\n"
                   "as PyTorch initialises a new UNet2DModel: conv and linear U(+-1/sqrt(fan_in)), norms 1 and 0,\n"
                   "class embeddings N(0, 1).",
        .options = options,
        .min_positional = 2,
        .max_positional = 2,
    };
    ParsedArgs args;
    if (options_parse(&spec, argc, argv, &args, err)) return -1;
    if (args.help) return 0;
    if (seed < 0) return error_set(err, "--seed must be >= 0 (got %d)", seed);
    if (scheduler_path && !pipeline) return error_set(err, "--scheduler-config needs --pipeline");
    ModelSource src;
    UNetConfig cfg;
    if (model_source_resolve(&src, &cfg, args.positional[0], err)) return -1;
    if (pipeline) return init_pipeline(args.positional[1], &cfg, (uint64_t)seed, scheduler_path, err);
    UNetLayout layout;
    if (unet_layout_init(&layout, &cfg, err)) return -1;
    float *params = alloc_floats(layout.params.n_floats);
    param_table_fill_init(&layout.params, params, (uint64_t)seed);
    int rc = model_folder_save(args.positional[1], &cfg, &layout.params, params, err);
    if (rc == 0)
        printf("%s: %zu parameters, seed %d\n", args.positional[1], layout.params.n_floats, seed);
    alloc_free(params);
    unet_layout_free(&layout);
    return rc;
}
