/* Progress lines on stderr (see progress.h). */
#define _POSIX_C_SOURCE 200809L
#include "cli/progress.h"

#include <stdio.h>
#include <unistd.h>

#include "core/timer.h"

/* A live line is redrawn at most this often: faster only costs terminal output. */
#define PROGRESS_LIVE_SECONDS 0.1

void progress_init(Progress *p, const char *label, const char *unit) {
    *p = (Progress){.label = label, .unit = unit, .live = isatty(fileno(stderr)) == 1};
    p->start = p->last_print = time_now();
}

static void format_duration(char *buf, size_t buf_bytes, double seconds) {
    long s = (long)(seconds + 0.5);
    if (s >= 3600) snprintf(buf, buf_bytes, "%ld:%02ld:%02ld", s / 3600, s / 60 % 60, s % 60);
    else snprintf(buf, buf_bytes, "%ld:%02ld", s / 60, s % 60);
}

void progress_update(Progress *p, size_t done, size_t total, const char *detail) {
    double now = time_now(), elapsed = now - p->start;
    bool last = done >= total;
    if (p->live ? (now - p->last_print < PROGRESS_LIVE_SECONDS && !last) : now - p->last_print < PROGRESS_PLAIN_SECONDS)
        return;
    p->last_print = now;
    double rate = elapsed > 0 ? (double)done / elapsed : 0;
    char eta[32] = "?";
    if (rate > 0) format_duration(eta, sizeof eta, (double)(total - (done < total ? done : total)) / rate);
    char line[512];
    snprintf(line, sizeof line, "%s  %zu/%zu %s  %3.0f%%  %.3g %s/s  ETA %s%s%s%s", p->label, done, total, p->unit,
             total ? 100.0 * (double)done / (double)total : 100.0, rate, p->unit, eta, detail ? "  (" : "",
             detail ? detail : "", detail ? ")" : "");
    if (p->live) {
        fprintf(stderr, "\r%s\033[K", line);
        p->line_open = true;
    } else {
        fprintf(stderr, "%s\n", line);
    }
    fflush(stderr);
}

void progress_finish(Progress *p, const char *summary) {
    if (p->line_open) fprintf(stderr, "\r\033[K");
    p->line_open = false;
    if (summary) {
        char took[32];
        format_duration(took, sizeof took, time_now() - p->start);
        fprintf(stderr, "%s: %s (%s)\n", p->label, summary, took);
    }
    fflush(stderr);
}
