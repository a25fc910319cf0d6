/* `diffuse sample <model>`: images from a run folder or any diffusers UNet2DModel folder, as DDPMPipeline
 * (or DDIMPipeline, or a DPM-Solver++ scheduler) makes them, written as a PNG grid and/or one PNG per image.
 * Everything that can be wrong with the arguments is checked before the first model call, so a mistake
 * costs a one-line error, not a sampling run; outputs are written atomically at the end. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/commands.h"
#include "cli/options.h"
#include "cli/output_check.h"
#include "cli/progress.h"
#include "core/alloc.h"
#include "core/threads.h"
#include "ops/precision.h"
#include "core/timer.h"
#include "io/safetensors.h"
#include "pipeline/generate.h"
#include "pipeline/noise_file.h"
#include "pipeline/pipeline_folder.h"

/* A whole number >= min from an option whose default is "not given" (a string option). */
static int parse_count(const char *option, const char *text, long min, long *out, Error *err) {
    char *end = NULL;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (end == text || *end != '\0' || errno == ERANGE || v > INT_MAX)
        return error_set(err, "--%s expects a whole number, got '%s' (see diffuse sample --help)", option, text);
    if (v < min) return error_set(err, "--%s must be >= %ld (got %ld)", option, min, v);
    *out = v;
    return 0;
}

typedef struct SampleProgress {
    Progress bar;
    size_t batch_size, n_batches;
} SampleProgress;

static void on_progress(void *ctx, const GenerateProgress *g) {
    SampleProgress *p = ctx;
    size_t batch = g->images_done / p->batch_size;
    char detail[64];
    snprintf(detail, sizeof detail, "batch %zu of %zu, %zu images", batch + 1, p->n_batches, g->batch_images);
    progress_update(&p->bar, batch * g->n_steps + g->step, p->n_batches * g->n_steps, detail);
}

static int write_floats(const char *path, const float *images, size_t n, size_t h, size_t w, size_t c, Error *err) {
    size_t total = n * h * w * c;
    float *unit = alloc_floats(total);
    generate_to_unit(unit, images, total);
    SafeTensorsEntry e = {.name = "images", .ndim = 4, .shape = {n, h, w, c}, .data = unit};
    int rc = safetensors_write(path, &e, 1, NULL, 0, err);
    alloc_free(unit);
    return rc;
}

int cmd_sample(int argc, char **argv, Error *err) {
    int n_images = 16, batch = 16, seed = 0, size = 0, cols = 0, frames = 10, trajectory_images = 4, threads = 0;
    double eta = 0.0;
    bool ema = false;
    const char *sampler_name = "ddpm", *steps_text = NULL, *class_text = NULL, *output = NULL, *out_dir = NULL;
    const char *scheduler_config = NULL, *noise_path = NULL, *trajectory = NULL, *save_float = NULL;
    const char *precision_name = "fp32";
    const Option options[] = {
        {"images", OPTION_INT, &n_images, "N", "number of images"},
        {"batch", OPTION_INT, &batch, "N", "images sampled together (memory grows with it)"},
        {"sampler", OPTION_STRING, &sampler_name, "NAME", "ddpm, ddim or dpm++"},
        {"steps", OPTION_STRING, &steps_text, "N", "sampler steps (default: 1000 ddpm, 50 ddim, 20 dpm++)"},
        {"eta", OPTION_FLOAT, &eta, "X", "DDIM noise: 0 deterministic .. 1 DDPM-like"},
        {"seed", OPTION_INT, &seed, "N", "seed of the noise; image i's noise depends only on (seed, i)"},
        {"class", OPTION_STRING, &class_text, "K",
         "class label for a class-conditional model (default: image i gets class i mod classes)"},
        {"ema", OPTION_FLAG, &ema, NULL, "use the run's EMA weights (unet_ema/)"},
        {"scheduler-config", OPTION_STRING, &scheduler_config, "FILE",
         "scheduler_config.json to use instead of the folder's (or of DDPMScheduler's defaults)"},
        {"noise", OPTION_STRING, &noise_path, "FILE",
         "explicit noise: safetensors with x_T (N, H, W, C) and, for stochastic samplers, noise (steps, N, H, W, C)"},
        {"output", OPTION_STRING, &output, "FILE", "write the images as one PNG grid"},
        {"out-dir", OPTION_STRING, &out_dir, "DIR", "write one PNG per image, DIR/00000.png ..."},
        {"cols", OPTION_INT, &cols, "N", "images per grid row (0: a near-square grid)"},
        {"trajectory", OPTION_STRING, &trajectory, "FILE",
         "write a PNG of x_t at evenly spaced steps (rows: the first images; columns: noise to image)"},
        {"trajectory-frames", OPTION_INT, &frames, "N", "columns of the trajectory"},
        {"trajectory-images", OPTION_INT, &trajectory_images, "N", "rows of the trajectory"},
        {"save-float", OPTION_STRING, &save_float, "FILE",
         "also write the images before rounding: safetensors \"images\" (N, H, W, C) in [0, 1]"},
        {"size", OPTION_INT, &size, "N", "image height and width (0: the model's sample_size)"},
        {"threads", OPTION_INT, &threads, "N", "threads (0: every core)"},
        {"precision", OPTION_STRING, &precision_name, "NAME",
         "fp32, or bf16: convolutions on bf16 operands with fp32 results (CPUs with AVX-512 BF16 or AMX)"},
        {NULL, 0, NULL, NULL, NULL},
    };
    static const OptionAlias aliases[] = {{'n', "images"}, {'o', "output"}, {0, NULL}};
    const OptionSpec spec = {
        .command = "sample",
        .usage = "diffuse sample <run folder | model folder> (-o FILE.png | --out-dir DIR) [options]",
        .summary = "Generates images as diffusers' DDPMPipeline does: x_T ~ N(0, I), then the sampler's steps\n"
                   "with the UNet, then (x / 2 + 0.5) clamped and rounded to 8 bits. The model is a run folder\n"
                   "(unet/, unet_ema/, scheduler/) or a bare UNet2DModel folder (DDPMScheduler defaults: linear\n"
                   "1e-4 .. 0.02, 1000 steps). ddim and dpm++ take the DDPM config as diffusers'\n"
                   "from_config does.",
        .options = options,
        .min_positional = 1,
        .max_positional = 1,
        .aliases = aliases,
    };
    ParsedArgs args;
    if (options_parse(&spec, argc, argv, &args, err)) return -1;
    if (args.help) return 0;

    /* ---- arguments ---- */
    SamplerKind kind;
    if (sampler_kind_from_name(sampler_name, &kind, err)) return -1;
    long steps = 0, class_label = -1;
    if (steps_text && parse_count("steps", steps_text, 1, &steps, err)) return -1;
    if (class_text && parse_count("class", class_text, 0, &class_label, err)) return -1;
    if (n_images < 1) return error_set(err, "-n/--images must be >= 1 (got %d)", n_images);
    if (batch < 1) return error_set(err, "--batch must be >= 1 (got %d)", batch);
    if (seed < 0) return error_set(err, "--seed must be >= 0 (got %d)", seed);
    if (size < 0) return error_set(err, "--size must be >= 0 (got %d)", size);
    if (cols < 0) return error_set(err, "--cols must be >= 0 (got %d)", cols);
    if (frames < 2) return error_set(err, "--trajectory-frames must be >= 2 (got %d)", frames);
    if (trajectory_images < 1) return error_set(err, "--trajectory-images must be >= 1 (got %d)", trajectory_images);
    if (eta < 0) return error_set(err, "--eta must be >= 0 (got %g)", eta);
    if (eta != 0 && kind != SAMPLER_DDIM) return error_set(err, "--eta applies to --sampler ddim only");
    OpsPrecision precision;
    if (ops_precision_from_name(precision_name, &precision, err)) return -1;
    if (!output && !out_dir)
        return error_set(err, "nothing to write: give -o FILE.png for a grid and/or --out-dir DIR for one PNG per image");
    if (output && output_check_file(output, "-o", err)) return -1;
    if (out_dir && output_check_folder(out_dir, "--out-dir", err)) return -1;
    if (trajectory && output_check_file(trajectory, "--trajectory", err)) return -1;
    if (save_float && output_check_file(save_float, "--save-float", err)) return -1;

    PipelineSource src;
    PipelineSourceOptions src_opt = {.ema = ema, .scheduler_config = scheduler_config};
    if (pipeline_source_resolve(&src, args.positional[0], &src_opt, err)) return -1;
    SchedulerConfig scheduler;
    if (pipeline_source_scheduler(&scheduler, &src, kind, err)) return -1;

    NoiseFile noise = {0};
    UNet net = {0};
    float *images = NULL, *frames_buf = NULL;
    bool have_net = false;
    int rc = 0;
    if (noise_path) {
        if ((rc = noise_file_read(&noise, noise_path, err))) goto done;
        if (noise.n_images < (size_t)n_images) {
            rc = error_set(err, "%s holds noise for %zu images, fewer than -n %d (pass -n %zu)", noise_path,
                           noise.n_images, n_images, noise.n_images);
            goto done;
        }
    }
    threads_set(threads);
    ops_set_precision(precision);
    if ((rc = pipeline_source_load_unet(&net, &src, err))) goto done;
    have_net = true;

    GenerateOptions gen = {
        .n_images = (size_t)n_images,
        .batch_size = (size_t)batch,
        .num_inference_steps = (size_t)steps,
        .height = (size_t)size,
        .width = (size_t)size,
        .eta = eta,
        .seed = (uint64_t)seed,
        .class_label = (int)class_label,
        .noise = noise_path ? &noise : NULL,
    };
    if ((rc = generate_validate(&net, &scheduler, &gen, err))) goto done;
    size_t h = size ? (size_t)size : (size_t)net.layout.config.sample_height;
    size_t w = size ? (size_t)size : (size_t)net.layout.config.sample_width;
    size_t c = (size_t)net.layout.config.in_channels, D = h * w * c;
    size_t n_steps = steps ? (size_t)steps : generate_default_steps(kind, scheduler.schedule.num_train_timesteps);
    if (trajectory) {
        gen.trajectory_images = (size_t)trajectory_images < gen.n_images ? (size_t)trajectory_images : gen.n_images;
        gen.trajectory_frames = (size_t)frames < n_steps + 1 ? (size_t)frames : n_steps + 1;
        frames_buf = alloc_floats_or_null(gen.trajectory_images * gen.trajectory_frames, D);
        gen.trajectory = frames_buf;
    }
    images = alloc_floats_or_null(gen.n_images, D);
    if (!images || (trajectory && !frames_buf)) {
        rc = error_set(err, "%zu images of %zux%zux%zu%s need more memory than this machine can give; ask for fewer",
                       gen.n_images, h, w, c, trajectory ? " and their trajectory" : "");
        goto done;
    }
    SampleProgress progress = {.batch_size = gen.batch_size < gen.n_images ? gen.batch_size : gen.n_images};
    progress.n_batches = (gen.n_images + progress.batch_size - 1) / progress.batch_size;
    progress_init(&progress.bar, "sampling", "steps");
    gen.progress = on_progress;
    gen.progress_ctx = &progress;
    double start = time_now();
    rc = generate_images(images, &net, &scheduler, &gen, err);
    progress_finish(&progress.bar, NULL);
    if (rc) goto done;
    double seconds = time_now() - start;

    /* ---- outputs ---- */
    if (output) {
        if ((rc = generate_write_grid(output, images, gen.n_images, h, w, c, (size_t)cols, err))) goto done;
        printf("wrote %s: %zu images\n", output, gen.n_images);
    }
    if (out_dir) {
        if ((rc = output_make_folder(out_dir, err))) goto done;
        if ((rc = generate_write_images(out_dir, "", 0, images, gen.n_images, h, w, c, err))) goto done;
        printf("wrote %s/: %zu PNG files\n", out_dir, gen.n_images);
    }
    if (trajectory) {
        if ((rc = generate_write_grid(trajectory, frames_buf, gen.trajectory_images * gen.trajectory_frames, h, w, c,
                                      gen.trajectory_frames, err)))
            goto done;
        printf("wrote %s: %zu images x %zu frames\n", trajectory, gen.trajectory_images, gen.trajectory_frames);
    }
    if (save_float) {
        if ((rc = write_floats(save_float, images, gen.n_images, h, w, c, err))) goto done;
        printf("wrote %s: images (%zu, %zu, %zu, %zu) in [0, 1]\n", save_float, gen.n_images, h, w, c);
    }
    printf("%zu images %zux%zu, %s %zu steps%s, seed %d%s%s, %.1f s\n", gen.n_images, h, w,
           sampler_kind_name(kind), n_steps,
           kind == SAMPLER_DDIM && eta > 0 ? " (eta > 0)" : "", seed, ema ? ", EMA weights" : "",
           noise_path ? ", noise from file" : "", seconds);
done:
    alloc_free(images);
    alloc_free(frames_buf);
    if (have_net) unet_free(&net);
    noise_file_free(&noise);
    scheduler_config_free(&scheduler);
    return rc;
}
