/* The training loop (see trainer.h). One step, as diffusers' train_unconditional.py runs it:
 *   x0 = next batch;  t ~ U{0..T-1};  eps ~ N(0, I);  x_t = q_sample(x0, t, eps)      (keyed per sample)
 *   loss = mse(UNet(x_t, t), target);  backward;  (gradient accumulation over micro-batches)
 *   average gradients over ranks;  skip the step if anything is not finite;  clip;  lr from the schedule;
 *   optimizer step;  EMA update.
 * t and eps are drawn from (seed, step, the sample's global position), dropout masks likewise, so a run
 * does not depend on how the global batch is split over ranks, and a resumed run draws what an
 * uninterrupted one would. */
#define _POSIX_C_SOURCE 200809L
#include "train/trainer.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/json_values.h"
#include "core/threads.h"
#include "data/dataset.h"
#include "data/loader.h"
#include "diffusion/objective.h"
#include "diffusion/schedule.h"
#include "dist/dist.h"
#include "io/atomic_file.h"
#include "io/fs.h"
#include "io/model_folder.h"
#include "nn/unet.h"
#include "optim/ema.h"
#include "optim/grad_clip.h"
#include "optim/reduce.h"
#include "pipeline/generate.h"
#include "pipeline/pipeline_folder.h"
#include "train/checkpoint.h"
#include "train/progress.h"

typedef struct Trainer {
    const TrainConfig *cfg;
    int rank, world;
    UNetConfig model_config;
    UNet net;
    UNet sample_net; /* rank 0: a gradient-free copy of the (EMA) weights for sample grids */
    Optimizer opt;
    float *ema;
    Dataset data;
    Loader loader;
    Schedule schedule;
    SchedulerConfig scheduler;
    size_t batch, sample_numel;
    float *x0, *noise, *x_t, *target, *pred, *dpred, *weights, *timesteps;
    int64_t *t;
    int *labels;
    uint64_t *positions;
    long total_steps;
    LrSchedule lr_schedule; /* the configured one, spanning total_steps */
    TrainState state;
    char *config_json;
    TrainProgress progress;
} Trainer;

/* ------------------------------------------------------------------------------------------------ */
/* Signals: finish the step in flight, checkpoint, stop. */

static volatile sig_atomic_t stop_requested;

static void request_stop(int sig) {
    (void)sig;
    stop_requested = 1;
}

/* ------------------------------------------------------------------------------------------------ */
/* Set-up */

static int open_model(Trainer *tr, Error *err) {
    const TrainConfig *cfg = tr->cfg;
    ModelSource src;
    if (model_source_resolve(&src, &tr->model_config, cfg->model, err)) return -1;
    UNetConfig *mc = &tr->model_config;
    if (cfg->resolution) mc->sample_height = mc->sample_width = (int)cfg->resolution;
    if (mc->sample_height == 0)
        return error_set(err, "model %s has no sample_size: give --resolution", cfg->model);
    if (mc->sample_height != mc->sample_width)
        return error_set(err, "model %s has a non-square sample_size %dx%d; training takes square images (--resolution)",
                         cfg->model, mc->sample_height, mc->sample_width);
    if (unet_config_validate(mc, err)) return error_prefix(err, "model %s", cfg->model);
    /* The objective predicts one value per input value (noise, x0 or v); a learned variance is not trained. */
    if (mc->out_channels != mc->in_channels)
        return error_set(err, "model %s predicts %d channels from %d: training needs out_channels = in_channels",
                         cfg->model, mc->out_channels, mc->in_channels);
    if (unet_init(&tr->net, mc, true, err)) return -1;
    if (src.kind == MODEL_SOURCE_FOLDER) {
        if (model_weights_load(src.path, &tr->net.layout.params, tr->net.params, NULL, err)) return -1;
    } else {
        unet_init_weights(&tr->net, cfg->seed);
    }
    return 0;
}

static int open_data(Trainer *tr, Error *err) {
    const TrainConfig *cfg = tr->cfg;
    const UNetConfig *mc = &tr->model_config;
    DatasetOptions options = {.resolution = (size_t)mc->sample_height, .channels = (size_t)mc->in_channels,
                              .resize = cfg->resize, .strict = cfg->strict};
    if (dataset_open(&tr->data, cfg->data, &options, err)) return -1;
    if (tr->data.n_skipped && tr->rank == 0)
        fprintf(stderr, "warning: %zu unreadable images skipped (first: %s); --strict makes this an error\n",
                tr->data.n_skipped, tr->data.skipped_first);
    if (mc->num_class_embeds > 0) {
        if (!tr->data.labels)
            return error_set(err, "%s has no class labels, but the model is class-conditional (num_class_embeds %d)",
                             cfg->data, mc->num_class_embeds);
        if (tr->data.n_classes > (size_t)mc->num_class_embeds)
            return error_set(err, "%s has %zu classes, more than the model's num_class_embeds %d", cfg->data,
                             tr->data.n_classes, mc->num_class_embeds);
    }
    LoaderOptions lo = {.seed = cfg->seed, .rank = (size_t)tr->rank, .world_size = (size_t)tr->world,
                        .batch_size = cfg->batch, .drop_last = cfg->drop_last, .random_flip = cfg->random_flip};
    return loader_init(&tr->loader, &tr->data, &lo, err);
}

static void allocate_buffers(Trainer *tr) {
    size_t b = tr->batch, n = b * tr->sample_numel;
    tr->x0 = alloc_floats(n), tr->noise = alloc_floats(n), tr->x_t = alloc_floats(n);
    tr->target = alloc_floats(n), tr->pred = alloc_floats(n), tr->dpred = alloc_floats(n);
    tr->weights = alloc_floats(b), tr->timesteps = alloc_floats(b);
    tr->t = xcalloc(b, sizeof *tr->t);
    tr->labels = xcalloc(b, sizeof *tr->labels);
    tr->positions = xcalloc(b, sizeof *tr->positions);
}

/* Settings a resumed run must share with the saved one, or its numbers would silently differ. */
static int check_resume_config(const Trainer *tr, const char *saved_json, const char *checkpoint, Error *err) {
    static const char *const keys[] = {"data",       "seed",          "batch_per_rank", "grad_accum",
                                       "optimizer",  "prediction_type", "num_train_timesteps", "beta_schedule",
                                       "resolution", "ema",           "precision"};
    if (json_check_values(saved_json, strlen(saved_json), JSON_MAX_VALUES, checkpoint, err)) return -1;
    cJSON *saved = cJSON_Parse(saved_json), *now = cJSON_Parse(tr->config_json);
    int rc = 0;
    if (!saved || !now) {
        rc = error_set(err, "%s: the saved training configuration is not valid JSON", checkpoint);
    } else {
        /* Runs saved before --precision existed trained in fp32. */
        if (!cJSON_GetObjectItemCaseSensitive(saved, "precision")) cJSON_AddStringToObject(saved, "precision", "fp32");
        for (size_t i = 0; i < sizeof keys / sizeof keys[0] && rc == 0; i++) {
            char *a = cJSON_PrintUnformatted(cJSON_GetObjectItemCaseSensitive(saved, keys[i]));
            char *b = cJSON_PrintUnformatted(cJSON_GetObjectItemCaseSensitive(now, keys[i]));
            if (!a || !b || strcmp(a, b) != 0)
                rc = error_set(err, "%s was trained with %s %s, this run asks for %s; resume with the same setting",
                               checkpoint, keys[i], a ? a : "(none)", b ? b : "(none)");
            cJSON_free(a), cJSON_free(b);
        }
    }
    cJSON_Delete(saved), cJSON_Delete(now);
    return rc;
}

static CheckpointModel checkpoint_model(Trainer *tr) {
    return (CheckpointModel){.config = &tr->model_config, .table = &tr->net.layout.params, .params = tr->net.params,
                             .ema = tr->ema, .optimizer = &tr->opt};
}

static int start_or_resume(Trainer *tr, Error *err) {
    const TrainConfig *cfg = tr->cfg;
    char latest[4096];
    int found = checkpoint_find_latest(cfg->out, latest, sizeof latest, err);
    if (found < 0) return -1;
    if (!cfg->resume) {
        if (found)
            return error_set(err, "%s already holds checkpoints (latest %s): add --resume to continue it, or choose "
                             "another --out", cfg->out, latest);
        tr->state = (TrainState){.world_size = tr->world};
        /* As DDP does: every rank starts from rank 0's weights. */
        dist_broadcast_floats(tr->net.params, tr->net.n_params, 0);
        if (tr->ema) memcpy(tr->ema, tr->net.params, tr->net.n_params * sizeof(float));
        return 0;
    }
    if (!found) return error_set(err, "--resume: %s has no complete checkpoint to resume from", cfg->out);
    char *saved_json = NULL;
    CheckpointModel m = checkpoint_model(tr);
    if (checkpoint_load(latest, &tr->state, &m, &saved_json, err)) return -1;
    int rc = check_resume_config(tr, saved_json, latest, err);
    free(saved_json);
    if (rc) return -1;
    if (tr->state.world_size != tr->world)
        return error_set(err, "%s was written by %d ranks; resume it with the same number (mpirun -np %d)", latest,
                         tr->state.world_size, tr->state.world_size);
    if (loader_set_cursor(&tr->loader, tr->state.cursor, err)) return error_prefix(err, "%s", latest);
    if (tr->rank == 0) fprintf(stderr, "resuming from %s (step %ld)\n", latest, tr->state.step);
    return 0;
}

static int write_config_file(const Trainer *tr, Error *err) {
    char path[4096];
    if (fs_make_folders(tr->cfg->out, err)) return -1;
    fs_join(path, sizeof path, tr->cfg->out, "train_config.json");
    return atomic_file_write_all(path, tr->config_json, strlen(tr->config_json), err);
}

static int trainer_init(Trainer *tr, const TrainConfig *cfg, Error *err) {
    *tr = (Trainer){.cfg = cfg, .rank = dist_rank(), .world = dist_world_size()};
    if (train_config_validate(cfg, err)) return -1;
    /* Ranks on one machine share its cores. */
    int cores = threads_available() / dist_local_size();
    threads_set(cfg->threads ? cfg->threads : (cores > 0 ? cores : 1));
    ops_set_precision(cfg->precision);
    if (open_model(tr, err) || open_data(tr, err)) return -1;
    tr->batch = cfg->batch;
    tr->sample_numel = tr->data.height * tr->data.width * tr->data.channels;
    size_t per_epoch = (loader_batches_per_epoch(&tr->loader) + cfg->grad_accum - 1) / cfg->grad_accum;
    tr->total_steps = cfg->steps ? cfg->steps : cfg->epochs * (long)per_epoch;
    tr->lr_schedule = cfg->lr_schedule;
    tr->lr_schedule.total_steps = tr->total_steps;
    if (schedule_init(&tr->schedule, &cfg->schedule, err)) return -1;
    tr->scheduler = train_config_scheduler(cfg);
    if (unet_plan(&tr->net, tr->batch, tr->data.height, tr->data.width, err)) return -1;
    optimizer_init(&tr->opt, cfg->optimizer, tr->net.n_params);
    if (cfg->ema) tr->ema = alloc_floats(tr->net.n_params);
    allocate_buffers(tr);
    tr->config_json = train_config_to_json(cfg, tr->total_steps, tr->world);
    if (start_or_resume(tr, err)) return -1;
    if (tr->rank == 0) {
        if (write_config_file(tr, err)) return -1;
        fprintf(stderr, "diffuse train: %zu parameters, %zu images of %zux%zux%zu, %d rank%s\n%s\n", tr->net.n_params,
                tr->data.count, tr->data.height, tr->data.width, tr->data.channels, tr->world, tr->world > 1 ? "s" : "",
                tr->config_json);
    }
    double images_per_step = (double)(cfg->batch * cfg->grad_accum * (size_t)tr->world);
    return train_progress_open(&tr->progress, tr->rank == 0, cfg->out, tr->state.step, tr->total_steps, cfg->log_every,
                         images_per_step, err);
}

static void trainer_free(Trainer *tr) {
    train_progress_close(&tr->progress);
    free(tr->config_json);
    alloc_free(tr->x0), alloc_free(tr->noise), alloc_free(tr->x_t), alloc_free(tr->target);
    alloc_free(tr->pred), alloc_free(tr->dpred), alloc_free(tr->weights), alloc_free(tr->timesteps);
    free(tr->t), free(tr->labels), free(tr->positions);
    alloc_free(tr->ema);
    optimizer_free(&tr->opt);
    schedule_free(&tr->schedule);
    loader_free(&tr->loader);
    dataset_free(&tr->data);
    unet_free(&tr->sample_net);
    unet_free(&tr->net);
}

/* ------------------------------------------------------------------------------------------------ */
/* One step */

typedef struct StepResult {
    double loss, grad_norm, lr;
    bool skipped;
} StepResult;

/* Forward and backward of one micro-batch; returns its loss. Gradients accumulate in net.grads. */
static double micro_batch(Trainer *tr, long step, double dloss) {
    const TrainConfig *cfg = tr->cfg;
    const size_t b = tr->batch, numel = tr->sample_numel;
    bool conditional = tr->model_config.num_class_embeds > 0;
    loader_next_batch(&tr->loader, tr->x0, tr->labels, tr->positions);
    for (size_t i = 0; i < b; i++) {
        objective_sample_timesteps(&tr->t[i], 1, &tr->schedule, cfg->seed, (uint64_t)step, tr->positions[i]);
        objective_sample_noise(tr->noise + i * numel, 1, numel, cfg->seed, (uint64_t)step, tr->positions[i]);
        tr->timesteps[i] = (float)tr->t[i];
    }
    objective_q_sample(tr->x_t, tr->x0, tr->noise, tr->t, b, numel, &tr->schedule);
    objective_target(tr->target, cfg->prediction, tr->x0, tr->noise, tr->t, b, numel, &tr->schedule);
    /* train_unconditional weighs x0-prediction by the SNR. */
    const float *weights = NULL;
    if (cfg->prediction == PREDICTION_SAMPLE) {
        objective_snr_weights(tr->weights, tr->t, b, &tr->schedule);
        weights = tr->weights;
    }
    UNetDropoutKeys keys = {.active = true, .seed = cfg->seed, .step = (uint64_t)step, .sample_ids = tr->positions};
    unet_forward(&tr->net, tr->pred, tr->x_t, tr->timesteps, conditional ? tr->labels : NULL, &keys);
    double loss = objective_loss_forward(tr->pred, tr->target, weights, b, numel);
    memset(tr->dpred, 0, b * numel * sizeof(float));
    objective_loss_backward(tr->dpred, tr->pred, tr->target, weights, b, numel, dloss);
    unet_backward(&tr->net, NULL, tr->dpred);
    return loss;
}

static StepResult train_step(Trainer *tr, long step) {
    const TrainConfig *cfg = tr->cfg;
    const size_t n = tr->net.n_params;
    StepResult r = {0};
    unet_zero_grads(&tr->net);
    double loss = 0;
    for (size_t a = 0; a < cfg->grad_accum; a++) loss += micro_batch(tr, step, 1.0 / (double)cfg->grad_accum);
    loss /= (double)cfg->grad_accum;
    if (tr->world > 1) {
        dist_allreduce_mean_floats(tr->net.grads, n);
        dist_allreduce_sum_doubles(&loss, 1);
        loss /= tr->world;
    }
    r.loss = loss;
    /* Every rank holds the same averaged gradients, so every rank makes the same decision. */
    if (!isfinite(loss) || !reduce_all_finite(tr->net.grads, n)) {
        r.skipped = true;
        r.grad_norm = NAN;
        return r;
    }
    r.grad_norm = cfg->grad_clip > 0 ? grad_clip_norm(tr->net.grads, n, cfg->grad_clip)
                                     : sqrt(reduce_sum_squares(tr->net.grads, n));
    /* diffusers' scheduler steps after each optimizer step: the k-th update (from 0) uses factor(k). */
    r.lr = cfg->lr * lr_schedule_factor(tr->lr_schedule, step - 1);
    optimizer_step(&tr->opt, tr->net.params, tr->net.grads, (float)r.lr);
    if (tr->ema) ema_update(tr->ema, tr->net.params, n, ema_decay(cfg->ema_config, tr->opt.updates));
    return r;
}

/* ------------------------------------------------------------------------------------------------ */
/* The run */

/* Rank 0 writes; every rank learns whether it worked, so a failure stops the whole job together. */
static int save_checkpoint(Trainer *tr, Error *err) {
    tr->state.cursor = loader_cursor(&tr->loader);
    double failed = 0;
    if (tr->rank == 0) {
        CheckpointModel m = checkpoint_model(tr);
        failed = checkpoint_save(tr->cfg->out, &tr->state, &m, tr->config_json, tr->cfg->keep, err) ? 1 : 0;
    }
    dist_allreduce_sum_doubles(&failed, 1);
    if (failed && tr->rank != 0) return error_set(err, "rank 0 could not write the checkpoint of step %ld", tr->state.step);
    return failed ? -1 : 0;
}

static int save_run_folder(Trainer *tr, Error *err) {
    double failed = 0;
    if (tr->rank == 0) failed = pipeline_folder_save(tr->cfg->out, &tr->net, tr->ema, &tr->scheduler, err) ? 1 : 0;
    dist_allreduce_sum_doubles(&failed, 1);
    if (failed && tr->rank != 0) return error_set(err, "rank 0 could not write the run folder");
    return failed ? -1 : 0;
}

/* Rank 0 writes run/samples/step-N.png from the EMA weights when there are any, with a fixed seed so the
 * grids of a run show the same noise turning into better images. */
static int write_sample_grid(Trainer *tr, Error *err) {
    if (tr->rank != 0) return 0;
    const TrainConfig *cfg = tr->cfg;
    if (!tr->sample_net.params && unet_init(&tr->sample_net, &tr->model_config, false, err)) return -1;
    memcpy(tr->sample_net.params, tr->ema ? tr->ema : tr->net.params, tr->net.n_params * sizeof(float));
    SchedulerConfig sampler;
    char *json = scheduler_config_to_json(&tr->scheduler);
    int rc = scheduler_config_parse_as(&sampler, json, cfg->sample_sampler, "the run's scheduler", err);
    free(json);
    if (rc) return -1;
    size_t n = cfg->sample_n, h = tr->data.height, w = tr->data.width, c = tr->data.channels;
    float *images = alloc_floats(n * h * w * c);
    GenerateOptions opt = {.n_images = n, .batch_size = n, .num_inference_steps = cfg->sample_steps, .seed = cfg->seed,
                           .class_label = -1};
    char folder[4096], path[4200];
    fs_join(folder, sizeof folder, cfg->out, "samples");
    snprintf(path, sizeof path, "%s/step-%ld.png", folder, tr->state.step);
    rc = generate_images(images, &tr->sample_net, &sampler, &opt, err) || fs_make_folders(folder, err) ||
         generate_write_grid(path, images, n, h, w, c, 0, err);
    if (rc == 0) train_progress_note(&tr->progress, "samples: %s", path);
    alloc_free(images);
    scheduler_config_free(&sampler);
    return rc ? -1 : 0;
}

static bool stop_agreed(const Trainer *tr) {
    double stop = stop_requested ? 1 : 0;
    if (tr->world > 1) dist_allreduce_sum_doubles(&stop, 1);
    return stop > 0;
}

static int run_loop(Trainer *tr, TrainOutcome *outcome, Error *err) {
    const TrainConfig *cfg = tr->cfg;
    int consecutive_bad = 0;
    *outcome = TRAIN_COMPLETED;
    for (long step = tr->state.step + 1; step <= tr->total_steps; step++) {
        StepResult r = train_step(tr, step);
        tr->state.step = step;
        if (r.skipped) {
            tr->state.bad_steps_total++;
            consecutive_bad++;
            train_progress_note(&tr->progress, "step %ld: loss or gradients not finite; step skipped", step);
        } else {
            consecutive_bad = 0;
        }
        StepReport report = {.step = step, .epoch = tr->loader.epoch, .loss = r.loss, .lr = r.lr,
                             .grad_norm = r.grad_norm, .bad_steps_total = tr->state.bad_steps_total,
                             .skipped = r.skipped};
        train_progress_step(&tr->progress, &report);
        if (consecutive_bad >= cfg->max_bad_steps) {
            char latest[4096] = "none";
            checkpoint_find_latest(cfg->out, latest, sizeof latest, err);
            return error_set(err, "the loss or gradients were not finite for %d steps in a row (up to step %ld); "
                             "stopped without saving; the last checkpoint (%s) is intact: lower --lr or check the data",
                             consecutive_bad, step, latest);
        }
        if (cfg->verify_weights && (step % cfg->log_every == 0 || step == tr->total_steps) &&
            dist_verify_identical(tr->net.params, tr->net.n_params, "weights", err))
            return -1;
        bool stop = stop_agreed(tr) || (cfg->stop_at > 0 && step >= cfg->stop_at);
        bool last = step == tr->total_steps;
        bool due = cfg->checkpoint_every > 0 && step % cfg->checkpoint_every == 0;
        if ((due || stop || last) && save_checkpoint(tr, err)) return -1;
        bool grid_due = cfg->sample_every > 0 && step % cfg->sample_every == 0;
        if ((grid_due || last) && cfg->sample_n > 0 && write_sample_grid(tr, err)) return -1;
        if (stop) {
            *outcome = TRAIN_INTERRUPTED;
            train_progress_note(&tr->progress, "%s: checkpoint of step %ld written to %s/checkpoints; continue with "
                                "the same command and --resume", stop_requested ? "interrupted" : "stopped (--stop-at)",
                                step, cfg->out);
            break;
        }
    }
    return save_run_folder(tr, err);
}

int train_run(const TrainConfig *cfg, TrainOutcome *outcome, Error *err) {
    Trainer tr;
    stop_requested = 0;
    struct sigaction sa = {.sa_handler = request_stop}, old_int, old_term;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    int rc = trainer_init(&tr, cfg, err);
    if (rc == 0) rc = run_loop(&tr, outcome, err);
    trainer_free(&tr);
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    return rc;
}
