/* TrainProgress line and metrics log (see progress.h). */
#define _POSIX_C_SOURCE 200809L
#include "train/progress.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/timer.h"
#include "io/atomic_file.h"
#include "io/fs.h"

#define METRICS_MAX_BYTES ((size_t)1 << 30)

/* Keeps the lines of metrics.jsonl whose "step" is at most max_step. */
static int truncate_metrics(const char *path, long max_step, Error *err) {
    if (!fs_is_file(path)) return 0;
    size_t n;
    char *text = fs_read_text(path, METRICS_MAX_BYTES, &n, err);
    if (!text) return -1;
    char *kept = xmalloc(n + 1);
    size_t used = 0;
    for (char *line = text; *line;) {
        char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line) + 1 : strlen(line);
        const char *s = strstr(line, "\"step\":");
        if (s && s < line + len && strtol(s + 7, NULL, 10) <= max_step) {
            memcpy(kept + used, line, len);
            used += len;
        }
        line += len;
    }
    int rc = atomic_file_write_all(path, kept, used, err);
    free(text);
    free(kept);
    return rc;
}

int train_progress_open(TrainProgress *p, bool active, const char *run, long resumed_step, long total, long log_every,
                  double images_per_step, Error *err) {
    *p = (TrainProgress){.active = active, .total = total, .log_every = log_every, .images_per_step = images_per_step,
                    .window_start = time_now(), .window_step = resumed_step};
    if (!active) return 0;
    p->tty = isatty(STDERR_FILENO);
    char path[4096];
    fs_join(path, sizeof path, run, "metrics.jsonl");
    if (truncate_metrics(path, resumed_step, err)) return -1;
    p->metrics = fopen(path, "a");
    if (!p->metrics) return error_set(err, "%s: cannot open for writing", path);
    return 0;
}

static void format_duration(char *out, size_t n, double seconds) {
    if (!isfinite(seconds) || seconds < 0) snprintf(out, n, "?");
    else if (seconds < 60) snprintf(out, n, "%.0fs", seconds);
    else if (seconds < 3600) snprintf(out, n, "%dm%02ds", (int)(seconds / 60), (int)fmod(seconds, 60));
    else snprintf(out, n, "%dh%02dm", (int)(seconds / 3600), (int)fmod(seconds / 60, 60));
}

void train_progress_step(TrainProgress *p, const StepReport *r) {
    if (!p->active) return;
    double now = time_now();
    if (!r->skipped && isfinite(r->loss)) {
        /* Mean of the last steps, weighted to forget after ~50. */
        double w = p->smoothed_n < 50 ? 1.0 / (double)(p->smoothed_n + 1) : 0.02;
        p->smoothed_loss += w * (r->loss - p->smoothed_loss);
        p->smoothed_n++;
    }
    if (now - p->window_start > 1.0 || p->rate == 0) {
        if (r->step > p->window_step) p->rate = (double)(r->step - p->window_step) / (now - p->window_start);
        if (now - p->window_start > 10.0) p->window_start = now, p->window_step = r->step;
    }
    double images_per_s = p->rate * p->images_per_step;
    fprintf(p->metrics,
            "{\"step\":%ld,\"epoch\":%llu,\"loss\":%.7g,\"lr\":%.7g,\"grad_norm\":%.7g,\"images_per_second\":%.4g,"
            "\"skipped\":%s,\"skipped_total\":%ld}\n",
            r->step, r->epoch, r->loss, r->lr, r->grad_norm, images_per_s, r->skipped ? "true" : "false",
            r->bad_steps_total);
    fflush(p->metrics);
    char eta[32];
    format_duration(eta, sizeof eta, p->rate > 0 ? (double)(p->total - r->step) / p->rate : NAN);
    bool last = r->step == p->total;
    if (p->tty) {
        fprintf(stderr, "\rstep %ld/%ld  loss %.4f  %.1f img/s  ETA %s   ", r->step, p->total, p->smoothed_loss,
                images_per_s, eta);
        p->line_open = true;
        if (last) fputc('\n', stderr), p->line_open = false;
    } else if (r->step % p->log_every == 0 || last) {
        fprintf(stderr, "step %ld/%ld  loss %.4f  lr %.3g  grad_norm %.3g  %.1f img/s  ETA %s\n", r->step, p->total,
                p->smoothed_loss, r->lr, r->grad_norm, images_per_s, eta);
    }
    fflush(stderr);
}

void train_progress_note(TrainProgress *p, const char *fmt, ...) {
    if (!p->active) return;
    if (p->line_open) fputc('\n', stderr), p->line_open = false;
    va_list args;
    va_start(args, fmt);
    vfprintf(stderr, fmt, args);
    va_end(args);
    fputc('\n', stderr);
    fflush(stderr);
}

void train_progress_close(TrainProgress *p) {
    if (p->line_open) fputc('\n', stderr);
    if (p->metrics) fclose(p->metrics);
    *p = (TrainProgress){0};
}
