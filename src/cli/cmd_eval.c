/* `diffuse eval <model> <data>`: the training loss and bits/dim (the variational bound) of a model on a data
 * set, each as mean ± standard error over the evaluated images (pipeline/evaluate.h says how they are
 * drawn). The data is read at the model's sample size and channel count, resized and converted as the
 * trainer would. */
#include <stdio.h>

#include "cli/commands.h"
#include "cli/options.h"
#include "cli/progress.h"
#include "core/threads.h"
#include "data/dataset.h"
#include "pipeline/evaluate.h"
#include "pipeline/pipeline_folder.h"

/* s as a JSON string literal. */
static void print_json_string(const char *s) {
    putchar('"');
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\') printf("\\%c", ch);
        else if (ch < 0x20) printf("\\u%04x", ch);
        else putchar(ch);
    }
    putchar('"');
}

static void on_progress(void *ctx, const EvaluateProgress *e) {
    char detail[64];
    snprintf(detail, sizeof detail, "%zu of %zu images done", e->images_done, e->n_images);
    progress_update(ctx, e->model_calls_done, e->n_model_calls, detail);
}

int cmd_eval(int argc, char **argv, Error *err) {
    int samples = 256, batch = 16, seed = 0, timesteps = 50, threads = 0;
    bool ema = false, no_bpd = false, json = false;
    const char *scheduler_config = NULL, *resize_name = "bilinear";
    const Option options[] = {
        {"samples", OPTION_INT, &samples, "N", "images evaluated, a seeded random subset (0: all)"},
        {"batch", OPTION_INT, &batch, "N", "images per forward pass"},
        {"seed", OPTION_INT, &seed, "N", "seed of the subset, timesteps and noise"},
        {"timesteps", OPTION_INT, &timesteps, "K",
         "timesteps per image for the bits/dim estimate (0: all T, exact, T forward passes per image)"},
        {"no-bpd", OPTION_FLAG, &no_bpd, NULL, "the loss only"},
        {"ema", OPTION_FLAG, &ema, NULL, "evaluate the run's EMA weights (unet_ema/)"},
        {"scheduler-config", OPTION_STRING, &scheduler_config, "FILE",
         "scheduler_config.json to use instead of the folder's (or of DDPMScheduler's defaults)"},
        {"resize", OPTION_STRING, &resize_name, "FILTER", "bilinear or area, for data at another size"},
        {"json", OPTION_FLAG, &json, NULL, "print the results as one JSON line"},
        {"threads", OPTION_INT, &threads, "N", "threads (0: every core)"},
        {NULL, 0, NULL, NULL, NULL},
    };
    const OptionSpec spec = {
        .command = "eval",
        .usage = "diffuse eval <run folder | model folder> <data> [options]",
        .summary = "Evaluates a model on a data set (any source diffuse train reads: fashion-mnist, an IDX or\n"
                   "CIFAR-10 file or folder, an image folder, a packed file):\n"
                   "  loss      L_simple, |model(x_t, t) - target|^2 per dimension at one uniformly drawn t\n"
                   "  bits/dim  the variational bound on -log p(x) (Ho et al. 2020), estimated from K timesteps\n"
                   "            per image, or exact with --timesteps 0\n"
                   "each as mean +- standard error over the images.",
        .options = options,
        .min_positional = 2,
        .max_positional = 2,
    };
    ParsedArgs args;
    if (options_parse(&spec, argc, argv, &args, err)) return -1;
    if (args.help) return 0;
    if (samples < 0) return error_set(err, "--samples must be >= 0 (got %d)", samples);
    if (batch < 1) return error_set(err, "--batch must be >= 1 (got %d)", batch);
    if (seed < 0) return error_set(err, "--seed must be >= 0 (got %d)", seed);
    if (timesteps < 0) return error_set(err, "--timesteps must be >= 0 (got %d)", timesteps);
    ResizeFilter resize;
    if (resize_filter_from_name(resize_name, &resize))
        return error_set(err, "unknown --resize '%s' (supported: bilinear, area)", resize_name);

    PipelineSource src;
    PipelineSourceOptions src_opt = {.ema = ema, .scheduler_config = scheduler_config};
    if (pipeline_source_resolve(&src, args.positional[0], &src_opt, err)) return -1;
    const UNetConfig *cfg = &src.config;
    if (cfg->sample_height <= 0)
        return error_set(err, "%s: the model's config has no sample_size, so the evaluation size is unknown",
                         src.model_dir);
    if (cfg->sample_height != cfg->sample_width)
        return error_set(err, "%s: sample_size %dx%d is not square; eval reads square images", src.model_dir,
                         cfg->sample_height, cfg->sample_width);
    if (cfg->in_channels != 1 && cfg->in_channels != 3)
        return error_set(err, "%s: the model has %d input channels; data sets have 1 or 3", src.model_dir,
                         cfg->in_channels);
    SchedulerConfig scheduler;
    if (pipeline_source_scheduler(&scheduler, &src, SAMPLER_DDPM, err)) return -1;
    if (timesteps > 0 && (size_t)timesteps > scheduler.schedule.num_train_timesteps) {
        int rc = error_set(err, "--timesteps %d exceeds the schedule's %zu timesteps", timesteps,
                           scheduler.schedule.num_train_timesteps);
        scheduler_config_free(&scheduler);
        return rc;
    }

    threads_set(threads);
    Dataset ds = {0};
    UNet net = {0};
    bool have_data = false, have_net = false;
    DatasetOptions data_opt = {.resolution = (size_t)cfg->sample_height, .channels = (size_t)cfg->in_channels,
                               .resize = resize};
    int rc = dataset_open(&ds, args.positional[1], &data_opt, err);
    have_data = rc == 0;
    if (!rc) rc = pipeline_source_load_unet(&net, &src, err);
    have_net = have_data && rc == 0;
    if (!rc && !no_bpd && timesteps == 0)
        fprintf(stderr, "note: --timesteps 0 evaluates all %zu timesteps: %zu forward passes per image\n",
                scheduler.schedule.num_train_timesteps, scheduler.schedule.num_train_timesteps + 1);
    EvaluateResult r;
    if (!rc) {
        Progress bar;
        progress_init(&bar, "evaluating", "passes");
        EvaluateOptions opt = {
            .n_images = (size_t)samples,
            .batch_size = (size_t)batch,
            .seed = (uint64_t)seed,
            .n_timesteps = (size_t)timesteps,
            .skip_bpd = no_bpd,
            .progress = on_progress,
            .progress_ctx = &bar,
        };
        rc = evaluate_model(&r, &net, &scheduler, &ds, &opt, err);
        progress_finish(&bar, NULL);
    }
    if (!rc && ds.n_skipped)
        fprintf(stderr, "warning: %zu unreadable images skipped (first: %s)\n", ds.n_skipped, ds.skipped_first);
    if (!rc && json) {
        printf("{\"model\": ");
        print_json_string(src.model_dir);
        printf(", \"data\": ");
        print_json_string(args.positional[1]);
        printf(", \"images\": %zu, \"loss\": %.6g, \"loss_std_error\": %.6g", r.n_images, r.loss_mean,
               r.loss_std_error);
        if (!no_bpd)
            printf(", \"bpd\": %.6g, \"bpd_std_error\": %.6g, \"bpd_timesteps\": %d, \"prior_bpd\": %.6g",
                   r.bpd_mean, r.bpd_std_error, timesteps, r.prior_bpd_mean);
        printf("}\n");
    } else if (!rc) {
        printf("model        %s%s\n", src.model_dir, ema ? " (EMA weights)" : "");
        printf("data         %s: %zu of %zu images, %zux%zux%zu, seed %d\n", args.positional[1], r.n_images, ds.count,
               ds.height, ds.width, ds.channels, seed);
        printf("loss         %.6f +- %.6f   (L_simple, %s target, one t and noise per image)\n", r.loss_mean,
               r.loss_std_error, prediction_type_name(scheduler.prediction_type));
        if (!no_bpd) {
            printf("bits/dim     %.4f +- %.4f   (variational bound, %s variance", r.bpd_mean, r.bpd_std_error,
                   variance_type_name(scheduler.variance_type));
            if (timesteps) printf("; %d timesteps per image, Monte-Carlo part +- %.4f)\n", timesteps,
                                  r.bpd_mc_std_error);
            else printf("; exact over %zu timesteps, decoder term %.4f)\n", scheduler.schedule.num_train_timesteps,
                        r.decoder_bpd_mean);
            printf("prior        %.6f bits/dim (L_T)\n", r.prior_bpd_mean);
        }
    }
    if (have_net) unet_free(&net);
    if (have_data) dataset_free(&ds);
    scheduler_config_free(&scheduler);
    return rc;
}
