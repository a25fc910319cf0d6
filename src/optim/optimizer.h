/* The optimizer a training run uses, chosen by name: its configuration, its state buffers (laid out like
 * the parameters, so checkpoints save them by name) and the count of updates applied (AdamW's bias
 * correction and the EMA decay use it; a skipped step does not advance it). */
#ifndef DIFFUSE_OPTIMIZER_H
#define DIFFUSE_OPTIMIZER_H

#include <stddef.h>

#include "core/error.h"
#include "optim/adamw.h"
#include "optim/sgd.h"

typedef enum OptimizerKind {
    OPTIMIZER_ADAMW,
    OPTIMIZER_SGD,
    OPTIMIZER_N_KINDS
} OptimizerKind;

const char *optimizer_kind_name(OptimizerKind kind);
int optimizer_kind_from_name(const char *name, OptimizerKind *kind, Error *err);

typedef struct OptimizerConfig {
    OptimizerKind kind;
    AdamWConfig adamw;
    SgdConfig sgd;
} OptimizerConfig;

#define OPTIMIZER_MAX_STATE 2

typedef struct Optimizer {
    OptimizerConfig cfg;
    size_t n;
    int n_state;                            /* AdamW: exp_avg, exp_avg_sq; SGD: momentum_buffer or none */
    float *state[OPTIMIZER_MAX_STATE];      /* n floats each, zero at the start */
    const char *state_names[OPTIMIZER_MAX_STATE];
    long updates;
} Optimizer;

void optimizer_init(Optimizer *opt, OptimizerConfig cfg, size_t n);
void optimizer_free(Optimizer *opt);
/* One update of params from grads at learning rate lr. */
void optimizer_step(Optimizer *opt, float *params, const float *grads, float lr);

#endif
