/* Learning-rate schedules (see lr_schedule.h), step for step as diffusers' lambdas. */
#include "optim/lr_schedule.h"

#include <math.h>
#include <string.h>

#include "core/check.h"

static const char *const names[LR_SCHEDULE_N_KINDS] = {
    [LR_SCHEDULE_CONSTANT] = "constant",
    [LR_SCHEDULE_CONSTANT_WITH_WARMUP] = "constant_with_warmup",
    [LR_SCHEDULE_LINEAR] = "linear",
    [LR_SCHEDULE_COSINE] = "cosine",
};

const char *lr_schedule_name(LrScheduleKind kind) {
    CHECK(kind >= 0 && kind < LR_SCHEDULE_N_KINDS, "bad LR schedule %d", (int)kind);
    return names[kind];
}

int lr_schedule_from_name(const char *name, LrScheduleKind *kind, Error *err) {
    for (int k = 0; k < LR_SCHEDULE_N_KINDS; k++) {
        if (strcmp(name, names[k]) == 0) {
            *kind = (LrScheduleKind)k;
            return 0;
        }
    }
    return error_set(err, "unknown learning-rate schedule '%s' (supported: constant, constant_with_warmup, linear, cosine)",
                     name);
}

static double max1(long x) { return x > 1 ? (double)x : 1.0; }

double lr_schedule_factor(LrSchedule s, long step) {
    if (s.kind == LR_SCHEDULE_CONSTANT) return 1.0;
    if (step < s.warmup_steps) return (double)step / max1(s.warmup_steps);
    switch (s.kind) {
    case LR_SCHEDULE_CONSTANT_WITH_WARMUP:
        return 1.0;
    case LR_SCHEDULE_LINEAR:
        return fmax(0.0, (double)(s.total_steps - step) / max1(s.total_steps - s.warmup_steps));
    case LR_SCHEDULE_COSINE: {
        double progress = (double)(step - s.warmup_steps) / max1(s.total_steps - s.warmup_steps);
        return fmax(0.0, 0.5 * (1.0 + cos(3.141592653589793 * progress)));
    }
    default:
        break;
    }
    CHECK(0, "bad LR schedule %d", (int)s.kind);
    return 0;
}
