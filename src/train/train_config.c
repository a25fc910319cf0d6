/* Training-run configuration: defaults, validation, JSON (see train_config.h). */
#include "train/train_config.h"

#include <cjson/cJSON.h>

#include "core/check.h"

TrainConfig train_config_defaults(void) {
    return (TrainConfig){
        .model = "default",
        .resize = RESIZE_BILINEAR,
        .batch = 16,
        .grad_accum = 1,
        .epochs = 100,
        .optimizer = {.kind = OPTIMIZER_ADAMW, .adamw = adamw_diffusers_defaults()},
        .lr = 1e-4,
        .lr_schedule = {.kind = LR_SCHEDULE_COSINE, .warmup_steps = 500},
        .grad_clip = 1.0,
        .ema_config = ema_diffusers_defaults(),
        .schedule = schedule_config_default(),
        .prediction = PREDICTION_EPSILON,
        .sample_every = 1000,
        .checkpoint_every = 500,
        .log_every = 50,
        .sample_n = 16,
        .sample_steps = 100,
        .sample_sampler = SAMPLER_DDPM,
        .keep = 3,
        .max_bad_steps = 5,
    };
}

int train_config_validate(const TrainConfig *cfg, Error *err) {
    if (!cfg->data) return error_set(err, "no data set: give --data (a folder, IDX, CIFAR, packed file or fashion-mnist)");
    if (!cfg->out) return error_set(err, "no run folder: give --out FOLDER");
    if (cfg->batch < 1) return error_set(err, "--batch must be at least 1");
    if (cfg->grad_accum < 1) return error_set(err, "--grad-accum must be at least 1");
    if (cfg->steps < 0 || cfg->epochs < 0 || (cfg->steps == 0 && cfg->epochs == 0))
        return error_set(err, "give a positive --steps or --epochs");
    if (cfg->stop_at < 0) return error_set(err, "--stop-at must not be negative (0: off)");
    if (!(cfg->lr > 0)) return error_set(err, "--lr must be positive (got %g)", cfg->lr);
    if (cfg->lr_schedule.warmup_steps < 0) return error_set(err, "--warmup must not be negative");
    if (cfg->grad_clip < 0) return error_set(err, "--grad-clip must not be negative (0 turns clipping off)");
    if (cfg->optimizer.kind == OPTIMIZER_SGD) {
        const SgdConfig *s = &cfg->optimizer.sgd;
        if (s->momentum < 0 || s->momentum >= 1) return error_set(err, "--momentum must be in [0, 1)");
        if (s->nesterov && s->momentum == 0) return error_set(err, "--nesterov needs --momentum > 0");
    } else {
        const AdamWConfig *a = &cfg->optimizer.adamw;
        if (a->beta1 < 0 || a->beta1 >= 1 || a->beta2 < 0 || a->beta2 >= 1)
            return error_set(err, "--beta1 and --beta2 must be in [0, 1)");
        if (!(a->eps > 0)) return error_set(err, "--adam-eps must be positive");
    }
    const EmaConfig *e = &cfg->ema_config;
    if (e->max_decay < 0 || e->max_decay >= 1) return error_set(err, "--ema-max-decay must be in [0, 1)");
    if (!(e->inv_gamma > 0) || !(e->power > 0)) return error_set(err, "--ema-inv-gamma and --ema-power must be positive");
    if (cfg->sample_every < 0 || cfg->checkpoint_every < 0 || cfg->log_every < 1)
        return error_set(err, "--sample-every and --checkpoint-every must be >= 0 (0: off), --log-every >= 1");
    if (cfg->sample_n > 0 && cfg->sample_steps < 1) return error_set(err, "--sample-steps must be at least 1");
    if (cfg->keep < 1) return error_set(err, "--keep must be at least 1");
    if (cfg->max_bad_steps < 1) return error_set(err, "--max-bad-steps must be at least 1");
    if (cfg->threads < 0) return error_set(err, "--threads must not be negative (0: all cores)");
    return 0;
}

SchedulerConfig train_config_scheduler(const TrainConfig *cfg) {
    SchedulerConfig s = scheduler_config_default(SAMPLER_DDPM);
    s.schedule = cfg->schedule;
    s.prediction_type = cfg->prediction;
    return s;
}

char *train_config_to_json(const TrainConfig *cfg, long total_steps, int world_size) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "data", cfg->data);
    cJSON_AddStringToObject(j, "model", cfg->model);
    cJSON_AddStringToObject(j, "out", cfg->out);
    cJSON_AddNumberToObject(j, "resolution", (double)cfg->resolution);
    cJSON_AddStringToObject(j, "resize", resize_filter_name(cfg->resize));
    cJSON_AddBoolToObject(j, "random_flip", cfg->random_flip);
    cJSON_AddBoolToObject(j, "drop_last", cfg->drop_last);
    cJSON_AddNumberToObject(j, "batch_per_rank", (double)cfg->batch);
    cJSON_AddNumberToObject(j, "world_size", world_size);
    cJSON_AddNumberToObject(j, "grad_accum", (double)cfg->grad_accum);
    cJSON_AddNumberToObject(j, "global_batch", (double)(cfg->batch * cfg->grad_accum * (size_t)world_size));
    cJSON_AddNumberToObject(j, "steps", (double)total_steps);
    cJSON_AddStringToObject(j, "optimizer", optimizer_kind_name(cfg->optimizer.kind));
    cJSON_AddNumberToObject(j, "lr", cfg->lr);
    if (cfg->optimizer.kind == OPTIMIZER_ADAMW) {
        cJSON_AddNumberToObject(j, "beta1", cfg->optimizer.adamw.beta1);
        cJSON_AddNumberToObject(j, "beta2", cfg->optimizer.adamw.beta2);
        cJSON_AddNumberToObject(j, "adam_eps", cfg->optimizer.adamw.eps);
        cJSON_AddNumberToObject(j, "weight_decay", cfg->optimizer.adamw.weight_decay);
    } else {
        cJSON_AddNumberToObject(j, "momentum", cfg->optimizer.sgd.momentum);
        cJSON_AddBoolToObject(j, "nesterov", cfg->optimizer.sgd.nesterov);
        cJSON_AddNumberToObject(j, "weight_decay", cfg->optimizer.sgd.weight_decay);
    }
    cJSON_AddStringToObject(j, "lr_schedule", lr_schedule_name(cfg->lr_schedule.kind));
    cJSON_AddNumberToObject(j, "warmup_steps", (double)cfg->lr_schedule.warmup_steps);
    cJSON_AddNumberToObject(j, "grad_clip", cfg->grad_clip);
    cJSON_AddBoolToObject(j, "ema", cfg->ema);
    if (cfg->ema) {
        cJSON_AddNumberToObject(j, "ema_max_decay", cfg->ema_config.max_decay);
        cJSON_AddNumberToObject(j, "ema_inv_gamma", cfg->ema_config.inv_gamma);
        cJSON_AddNumberToObject(j, "ema_power", cfg->ema_config.power);
    }
    cJSON_AddNumberToObject(j, "num_train_timesteps", (double)cfg->schedule.num_train_timesteps);
    cJSON_AddStringToObject(j, "beta_schedule", beta_schedule_name(cfg->schedule.beta_schedule));
    cJSON_AddNumberToObject(j, "beta_start", cfg->schedule.beta_start);
    cJSON_AddNumberToObject(j, "beta_end", cfg->schedule.beta_end);
    cJSON_AddStringToObject(j, "prediction_type", prediction_type_name(cfg->prediction));
    cJSON_AddNumberToObject(j, "seed", (double)cfg->seed);
    cJSON_AddStringToObject(j, "precision", ops_precision_name(cfg->precision));
    cJSON_AddNumberToObject(j, "sample_every", (double)cfg->sample_every);
    cJSON_AddNumberToObject(j, "checkpoint_every", (double)cfg->checkpoint_every);
    char *text = cJSON_Print(j);
    cJSON_Delete(j);
    CHECK(text, "out of memory printing the training configuration");
    return text;
}
