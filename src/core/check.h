/* Always-on invariant checks for programmer errors (wrong shapes, NULL buffers, broken invariants).
 * Unlike assert() they survive NDEBUG: a failed CHECK prints "file:line func: message" with the values
 * involved and aborts the process. Input and environment problems are not CHECKs: they return an Error. */
#ifndef DIFFUSE_CHECK_H
#define DIFFUSE_CHECK_H

#if defined(__GNUC__)
#define DIFFUSE_PRINTF(fmt_index, first_arg) __attribute__((format(printf, fmt_index, first_arg)))
#define DIFFUSE_NORETURN __attribute__((noreturn))
#else
#define DIFFUSE_PRINTF(fmt_index, first_arg)
#define DIFFUSE_NORETURN
#endif

DIFFUSE_NORETURN void check_fail(const char *file, int line, const char *func, const char *fmt, ...)
    DIFFUSE_PRINTF(4, 5);

/* Called before abort(), e.g. to bring down every MPI rank. NULL restores plain abort(). */
void check_set_abort_hook(void (*hook)(void));

#define CHECK(cond, ...)                                                 \
    do {                                                                 \
        if (!(cond)) check_fail(__FILE__, __LINE__, __func__, __VA_ARGS__); \
    } while (0)

#endif
