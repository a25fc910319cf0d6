/* Learning-rate schedules, as diffusers' get_scheduler (optimization.py): a factor applied to the base
 * learning rate at scheduler step k (0 for the first optimizer step):
 *   constant              1
 *   constant_with_warmup  k / warmup during warmup, then 1
 *   linear                k / warmup, then (total - k) / (total - warmup), floored at 0
 *   cosine                k / warmup, then 0.5 (1 + cos(pi * progress)), progress = (k - warmup) / (total - warmup) */
#ifndef DIFFUSE_LR_SCHEDULE_H
#define DIFFUSE_LR_SCHEDULE_H

#include "core/error.h"

typedef enum LrScheduleKind {
    LR_SCHEDULE_CONSTANT,
    LR_SCHEDULE_CONSTANT_WITH_WARMUP,
    LR_SCHEDULE_LINEAR,
    LR_SCHEDULE_COSINE,
    LR_SCHEDULE_N_KINDS
} LrScheduleKind;

typedef struct LrSchedule {
    LrScheduleKind kind;
    long warmup_steps, total_steps;
} LrSchedule;

const char *lr_schedule_name(LrScheduleKind kind);
/* -1 with a message listing the supported names when `name` is unknown. */
int lr_schedule_from_name(const char *name, LrScheduleKind *kind, Error *err);

double lr_schedule_factor(LrSchedule s, long step);

#endif
