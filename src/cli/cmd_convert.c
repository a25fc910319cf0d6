/* `diffuse convert <model folder> <output folder>`: reads a diffusers UNet2DModel folder in any form
 * diffuse accepts (F32, F16 or BF16; one file or shards; legacy attention names) and writes it back as
 * diffuse writes models: one F32 file, current names. The output may be the input folder. */
#include <stdio.h>

#include "cli/commands.h"
#include "cli/options.h"
#include "core/alloc.h"
#include "io/model_folder.h"
#include "nn/unet_layout.h"

int cmd_convert(int argc, char **argv, Error *err) {
    const Option options[] = {{NULL, 0, NULL, NULL, NULL}};
    const OptionSpec spec = {
        .command = "convert",
        .usage = "diffuse convert <model folder> <output folder>",
        .summary = "Rewrites a diffusers UNet2DModel folder (F32, F16 or BF16, sharded or not, legacy\n"
                   "query/key/value/proj_attn names) as one F32 safetensors file with current names.",
        .options = options,
        .min_positional = 2,
        .max_positional = 2,
    };
    ParsedArgs args;
    if (options_parse(&spec, argc, argv, &args, err)) return -1;
    if (args.help) return 0;
    ModelSource src;
    UNetConfig cfg;
    if (model_source_resolve(&src, &cfg, args.positional[0], err)) return -1;
    if (src.kind != MODEL_SOURCE_FOLDER)
        return error_set(err, "%s is not a model folder (a config or preset has no weights to convert)",
                         args.positional[0]);
    UNetLayout layout;
    if (unet_layout_init(&layout, &cfg, err)) return -1;
    float *params = alloc_floats(layout.params.n_floats);
    ModelWeightsInfo info;
    int rc = model_weights_load(src.path, &layout.params, params, &info, err);
    if (rc == 0) rc = model_folder_save(args.positional[1], &cfg, &layout.params, params, err);
    if (rc == 0)
        printf("%s: %zu tensors (%zu F32, %zu F16, %zu BF16, %zu legacy names) written as F32\n", args.positional[1],
               info.n_tensors, info.n_f32, info.n_f16, info.n_bf16, info.n_legacy_names);
    alloc_free(params);
    unet_layout_free(&layout);
    return rc;
}
