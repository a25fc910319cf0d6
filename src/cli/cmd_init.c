/* `diffuse init <config.json | preset | model folder> <output folder>`: a model folder with freshly
 * initialised weights (PyTorch's default initialisation in distribution, from a seed), which diffusers
 * loads with UNet2DModel.from_pretrained. */
#include <stdint.h>
#include <stdio.h>

#include "cli/commands.h"
#include "cli/options.h"
#include "core/alloc.h"
#include "io/model_folder.h"
#include "nn/unet_layout.h"

int cmd_init(int argc, char **argv, Error *err) {
    int seed = 0;
    const Option options[] = {
        {"seed", OPTION_INT, &seed, "N", "seed of the initial weights"},
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
    if (args.help) {
        options_print_help(&spec, stdout);
        return 0;
    }
    if (seed < 0) return error_set(err, "--seed must be >= 0 (got %d)", seed);
    ModelSource src;
    UNetConfig cfg;
    if (model_source_resolve(&src, &cfg, args.positional[0], err)) return -1;
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
