/* Checkpoints and the run folder.
 *
 * A checkpoint is the folder run/checkpoints/step-N/ holding everything that resuming needs to continue
 * bit for bit: unet/ (the weights, a diffusers model folder), unet_ema/ (when EMA is on) and
 * training_state.safetensors (the optimizer's moments by name, plus metadata: step, updates applied, the
 * data cursor, the world size and the resolved configuration). It is written as a hidden
 * .step-N.partial/ folder and renamed into place once every file is complete and synced, so a crash or a
 * full disk at any moment leaves the previous checkpoints whole; only complete step-N folders count.
 * The oldest complete checkpoints beyond `keep` are removed after a new one lands.
 * (The run folder itself, a diffusers pipeline, is written by pipeline/pipeline_folder.h.) */
#ifndef DIFFUSE_CHECKPOINT_H
#define DIFFUSE_CHECKPOINT_H

#include <stddef.h>

#include "core/error.h"
#include "data/loader.h"
#include "nn/params.h"
#include "nn/unet_config.h"
#include "optim/optimizer.h"

typedef struct TrainState {
    long step;            /* training steps done, skipped ones included */
    long bad_steps_total; /* steps skipped for a non-finite loss or gradient */
    LoaderCursor cursor;  /* where the data continues */
    int world_size;
} TrainState;

/* What a checkpoint holds besides the state; ema may be NULL. */
typedef struct CheckpointModel {
    const UNetConfig *config;
    const ParamTable *table;
    float *params, *ema;
    Optimizer *optimizer;
} CheckpointModel;

int checkpoint_save(const char *run, const TrainState *state, const CheckpointModel *model, const char *config_json,
                    int keep, Error *err);

/* The latest complete checkpoint of a run: 1 and its folder in path when there is one, 0 when none. */
int checkpoint_find_latest(const char *run, char *path, size_t path_bytes, Error *err);

/* Loads a checkpoint into the model's buffers (same config and optimizer as saved, else an error naming
 * the mismatch) and the state. config_json receives the saved configuration (malloc'ed) when not NULL. */
int checkpoint_load(const char *folder, TrainState *state, const CheckpointModel *model, char **config_json,
                    Error *err);

#endif
