/* Progress of a long command on stderr. On a terminal: one line rewritten in place (\r) at most a few
 * times a second, e.g. "sampling  412/1000 steps  41%  23.5 steps/s  ETA 0:25  (batch 1 of 2)". Otherwise
 * (a log file, a pipe): a plain line every PROGRESS_PLAIN_SECONDS, so logs stay short. Commands print
 * nothing else on stderr while it runs, and progress_finish ends the line. */
#ifndef DIFFUSE_CLI_PROGRESS_H
#define DIFFUSE_CLI_PROGRESS_H

#include <stdbool.h>
#include <stddef.h>

#define PROGRESS_PLAIN_SECONDS 10.0

typedef struct Progress {
    const char *label; /* "sampling" */
    const char *unit;  /* "steps" */
    bool live;         /* stderr is a terminal */
    double start, last_print;
    bool line_open;    /* a live line is on screen without its newline */
} Progress;

void progress_init(Progress *p, const char *label, const char *unit);
/* done of total units; detail (may be NULL) goes at the end of the line. */
void progress_update(Progress *p, size_t done, size_t total, const char *detail);
/* Ends a live line; prints "label: summary (N s)" as the closing line when summary is not NULL. */
void progress_finish(Progress *p, const char *summary);

#endif
