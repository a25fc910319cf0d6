/* `diffuse prepare <source> --output FILE`: any data source diffuse reads (fashion-mnist, IDX or CIFAR-10
 * files and folders, image folders, packed files) decoded, converted and resized once into one packed
 * uint8 file (data/packed.h), which training then memory-maps instead of decoding again. */
#include <stdio.h>

#include "cli/commands.h"
#include "cli/options.h"
#include "cli/output_check.h"
#include "core/threads.h"
#include "data/dataset.h"
#include "data/packed.h"

int cmd_prepare(int argc, char **argv, Error *err) {
    int resolution = 0, channels = 0, threads = 0;
    bool strict = false;
    const char *output = NULL, *resize_name = "bilinear";
    const Option options[] = {
        {"output", OPTION_STRING, &output, "FILE", "the packed file to write"},
        {"resolution", OPTION_INT, &resolution, "N",
         "height and width: resize to cover, then centre-crop (0: the source's own size)"},
        {"channels", OPTION_INT, &channels, "C", "1 (grey) or 3 (RGB) (0: the source's own)"},
        {"resize", OPTION_STRING, &resize_name, "FILTER", "bilinear (as torchvision's Resize) or area"},
        {"strict", OPTION_FLAG, &strict, NULL, "an unreadable image is an error instead of a skipped one"},
        {"threads", OPTION_INT, &threads, "N", "threads for decoding (0: every core)"},
        {NULL, 0, NULL, NULL, NULL},
    };
    static const OptionAlias aliases[] = {{'o', "output"}, {0, NULL}};
    const OptionSpec spec = {
        .command = "prepare",
        .usage = "diffuse prepare <source> --output FILE [options]",
        .summary = "Reads a data set once and writes it as one packed file of uint8 images (N, H, W, C) with\n"
                   "their labels and class names, which diffuse train and diffuse eval open instantly.\n"
                   "Sources: fashion-mnist, fashion-mnist:test, an IDX image file (labels found beside it),\n"
                   "a CIFAR-10 .bin batch or folder (DIR:test for the test split), a folder of PNG/JPEG\n"
                   "images (first-level sub-folders are the classes), a packed file.",
        .options = options,
        .min_positional = 1,
        .max_positional = 1,
        .aliases = aliases,
    };
    ParsedArgs args;
    if (options_parse(&spec, argc, argv, &args, err)) return -1;
    if (args.help) return 0;
    if (!output) return error_set(err, "no output file: give --output FILE (see diffuse prepare --help)");
    if (resolution < 0) return error_set(err, "--resolution must be >= 0 (got %d)", resolution);
    if (channels != 0 && channels != 1 && channels != 3)
        return error_set(err, "--channels must be 1 or 3 (got %d)", channels);
    ResizeFilter resize;
    if (resize_filter_from_name(resize_name, &resize))
        return error_set(err, "unknown --resize '%s' (supported: bilinear, area)", resize_name);
    if (output_check_file(output, "--output", err)) return -1;

    threads_set(threads);
    Dataset ds;
    DatasetOptions opt = {.resolution = (size_t)resolution, .channels = (size_t)channels, .resize = resize,
                          .strict = strict};
    if (dataset_open(&ds, args.positional[0], &opt, err)) return -1;
    int rc = packed_write(output, &ds, err);
    if (rc == 0) {
        double mb = (double)(ds.count * dataset_image_bytes(&ds)) / 1e6;
        printf("wrote %s: %zu images %zux%zux%zu, %s, %.1f MB of pixels\n", output, ds.count, ds.height, ds.width,
               ds.channels, ds.labels ? "labelled" : "unlabelled", mb);
        if (ds.labels) printf("classes      %zu\n", ds.n_classes);
        if (ds.n_skipped)
            fprintf(stderr, "warning: %zu unreadable images skipped (first: %s; --strict makes this an error)\n",
                    ds.n_skipped, ds.skipped_first);
    }
    dataset_free(&ds);
    return rc;
}
