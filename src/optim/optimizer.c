/* The optimizer of a run (see optimizer.h): a thin dispatch over sgd.c and adamw.c. */
#include "optim/optimizer.h"

#include <string.h>

#include "core/alloc.h"
#include "core/check.h"

static const char *const names[OPTIMIZER_N_KINDS] = {[OPTIMIZER_ADAMW] = "adamw", [OPTIMIZER_SGD] = "sgd"};

const char *optimizer_kind_name(OptimizerKind kind) {
    CHECK(kind >= 0 && kind < OPTIMIZER_N_KINDS, "bad optimizer kind %d", (int)kind);
    return names[kind];
}

int optimizer_kind_from_name(const char *name, OptimizerKind *kind, Error *err) {
    for (int k = 0; k < OPTIMIZER_N_KINDS; k++)
        if (strcmp(name, names[k]) == 0) {
            *kind = (OptimizerKind)k;
            return 0;
        }
    return error_set(err, "unknown optimizer '%s' (supported: adamw, sgd)", name);
}

void optimizer_init(Optimizer *opt, OptimizerConfig cfg, size_t n) {
    *opt = (Optimizer){.cfg = cfg, .n = n};
    if (cfg.kind == OPTIMIZER_ADAMW) {
        opt->n_state = 2;
        opt->state_names[0] = "exp_avg";
        opt->state_names[1] = "exp_avg_sq";
    } else if (cfg.sgd.momentum != 0) {
        opt->n_state = 1;
        opt->state_names[0] = "momentum_buffer";
    }
    for (int i = 0; i < opt->n_state; i++) opt->state[i] = alloc_floats(n);
}

void optimizer_free(Optimizer *opt) {
    for (int i = 0; i < opt->n_state; i++) alloc_free(opt->state[i]);
    *opt = (Optimizer){0};
}

void optimizer_step(Optimizer *opt, float *params, const float *grads, float lr) {
    opt->updates++;
    if (opt->cfg.kind == OPTIMIZER_ADAMW)
        adamw_step(params, grads, opt->state[0], opt->state[1], opt->n, opt->cfg.adamw, lr, opt->updates);
    else
        sgd_step(params, grads, opt->state[0], opt->n, opt->cfg.sgd, lr, opt->updates);
}
