/* Everything that defines a training run, as `diffuse train` resolves it from its options: the defaults
 * are diffusers' train_unconditional.py's where it has one (AdamW 1e-4 with betas 0.95 / 0.999, weight
 * decay 1e-6, cosine schedule with 500 warm-up steps, gradient clipping at 1.0, EMA 0.9999 with
 * inv_gamma 1 and power 3/4, linear betas 1e-4 -> 0.02 over 1000 steps, epsilon prediction, batch 16).
 * The resolved configuration is printed at the start and stored as train_config.json in the run folder;
 * a resumed run must agree with it on everything that changes the numbers. */
#ifndef DIFFUSE_TRAIN_CONFIG_H
#define DIFFUSE_TRAIN_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "data/resize.h"
#include "diffusion/objective.h"
#include "diffusion/schedule.h"
#include "diffusion/scheduler_config.h"
#include "ops/precision.h"
#include "optim/ema.h"
#include "optim/lr_schedule.h"
#include "optim/optimizer.h"

typedef struct TrainConfig {
    /* what */
    const char *data;  /* a data source (data/dataset.h) */
    const char *model; /* a preset, a config.json, or a model / pipeline folder whose weights start the run */
    const char *out;   /* the run folder */
    bool resume;       /* continue from the latest checkpoint in out */
    /* data */
    size_t resolution; /* 0: the model's sample_size */
    ResizeFilter resize;
    bool strict, random_flip, drop_last;
    /* length */
    size_t batch; /* per rank */
    size_t grad_accum;
    long steps;  /* optimizer steps in all; 0: from epochs */
    long epochs;
    long stop_at; /* checkpoint and stop after this step, as an interruption would (time-limited jobs); 0: off */
    /* optimisation */
    OptimizerConfig optimizer;
    double lr;
    LrSchedule lr_schedule; /* its total_steps is ignored: the trainer sets it from the run's length */
    double grad_clip;       /* max gradient norm; 0: off */
    bool ema;
    EmaConfig ema_config;
    /* the diffusion process */
    ScheduleConfig schedule;
    PredictionType prediction;
    /* reproducibility and speed */
    uint64_t seed;
    int threads; /* 0: all cores */
    OpsPrecision precision; /* of the convolutions (ops/precision.h) */
    /* output */
    long sample_every, checkpoint_every, log_every;
    size_t sample_n, sample_steps;
    SamplerKind sample_sampler;
    int keep; /* checkpoints kept */
    /* safety */
    int max_bad_steps; /* consecutive non-finite steps before the run stops */
    bool verify_weights;
} TrainConfig;

TrainConfig train_config_defaults(void);
/* Checks ranges and combinations; the message names the option. */
int train_config_validate(const TrainConfig *cfg, Error *err);
/* The resolved configuration as JSON (malloc'ed): for train_config.json and the start-up print. */
char *train_config_to_json(const TrainConfig *cfg, long total_steps, int world_size);
/* The DDPMScheduler configuration a run trains for (written to scheduler/scheduler_config.json). */
SchedulerConfig train_config_scheduler(const TrainConfig *cfg);

#endif
