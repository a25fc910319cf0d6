/* CHECK failure reporting: one line on stderr, then abort (through an optional hook). */
#include "core/check.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

static void (*abort_hook)(void);

void check_set_abort_hook(void (*hook)(void)) { abort_hook = hook; }

void check_fail(const char *file, int line, const char *func, const char *fmt, ...) {
    va_list args;
    va_start(args, fmt);
    fprintf(stderr, "%s:%d %s: CHECK failed: ", file, line, func);
    vfprintf(stderr, fmt, args);
    fputc('\n', stderr);
    va_end(args);
    fflush(stderr);
    if (abort_hook) abort_hook();
    abort();
}
