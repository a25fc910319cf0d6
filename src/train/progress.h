/* What a training run tells the person watching it and the tools reading it: one live progress line on
 * a terminal (step/total, smoothed loss, images/s, ETA), plain lines every log_every steps otherwise,
 * and every step as a JSON line in run/metrics.jsonl. On resume, metrics lines past the checkpoint (from
 * steps the crash undid) are dropped, so the file describes one consistent run. Only rank 0 reports. */
#ifndef DIFFUSE_TRAIN_PROGRESS_H
#define DIFFUSE_TRAIN_PROGRESS_H

#include <stdbool.h>
#include <stdio.h>

#include "core/error.h"

typedef struct TrainProgress {
    bool active; /* rank 0 */
    bool tty;
    FILE *metrics;
    long total, log_every;
    double images_per_step;
    double smoothed_loss;
    long smoothed_n;
    double window_start; /* time and step where the current rate window began */
    long window_step;
    double rate;         /* steps per second, recent */
    bool line_open;      /* a live line is on the terminal */
} TrainProgress;

typedef struct StepReport {
    long step;
    unsigned long long epoch;
    double loss, lr, grad_norm;
    long bad_steps_total;
    bool skipped;
} StepReport;

/* Opens run/metrics.jsonl for appending after dropping lines with a step > resumed_step. */
int train_progress_open(TrainProgress *p, bool active, const char *run, long resumed_step, long total, long log_every,
                  double images_per_step, Error *err);
void train_progress_step(TrainProgress *p, const StepReport *r);
/* A message on its own line (the live line is redrawn after the next step). */
void train_progress_note(TrainProgress *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void train_progress_close(TrainProgress *p);

#endif
