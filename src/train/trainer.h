/* A whole training run, as `diffuse train` starts it: data, model, optimizer, the DDPM objective,
 * data-parallel gradient averaging over the ranks of the job (src/dist), EMA, checkpoints, samples,
 * progress and metrics (DESIGN.md, "The job"). */
#ifndef DIFFUSE_TRAINER_H
#define DIFFUSE_TRAINER_H

#include <stdbool.h>

#include "core/error.h"
#include "train/train_config.h"

typedef enum TrainOutcome {
    TRAIN_COMPLETED,
    TRAIN_INTERRUPTED, /* SIGINT or SIGTERM: the step in flight finished and a checkpoint was written */
} TrainOutcome;

/* 0 with the outcome, or -1 with err. SIGINT and SIGTERM are handled while it runs. */
int train_run(const TrainConfig *cfg, TrainOutcome *outcome, Error *err);

#endif
