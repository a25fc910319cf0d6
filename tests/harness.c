/* Test harness implementation (see harness.h). */
#define _XOPEN_SOURCE 700
#include "harness.h"

#include <ftw.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/rng.h"
#include "core/timer.h"

static int n_passed, n_failed;
static int current_failures;
static const char *current_test;

void harness_run(const char *name, void (*test)(void)) {
    current_test = name;
    current_failures = 0;
    double start = time_now();
    test();
    double seconds = time_now() - start;
    if (current_failures) {
        n_failed++;
        printf("FAIL %s (%.2f s)\n", name, seconds);
    } else {
        n_passed++;
        printf("ok   %s (%.2f s)\n", name, seconds);
    }
    fflush(stdout);
}

static char tmp_dir[64];

const char *harness_tmp_dir(void) {
    if (!tmp_dir[0]) {
        snprintf(tmp_dir, sizeof tmp_dir, "/tmp/diffuse-test-XXXXXX");
        CHECK(mkdtemp(tmp_dir), "cannot create a temporary folder under /tmp");
    }
    return tmp_dir;
}

const char *harness_tmp_path(const char *name) {
    static char path[512];
    snprintf(path, sizeof path, "%s/%s", harness_tmp_dir(), name);
    return path;
}

static int remove_entry(const char *path, const struct stat *sb, int type, struct FTW *ftw) {
    (void)sb, (void)type, (void)ftw;
    return remove(path);
}

int harness_finish(void) {
    if (tmp_dir[0]) nftw(tmp_dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    printf("RESULT %d %d\n", n_passed, n_failed);
    fflush(stdout);
    return n_failed ? 1 : 0;
}

void harness_fail(const char *file, int line, const char *fmt, ...) {
    va_list args;
    va_start(args, fmt);
    printf("  %s:%d [%s] ", file, line, current_test ? current_test : "?");
    vprintf(fmt, args);
    printf("\n");
    va_end(args);
    fflush(stdout);
    current_failures++;
}

/* ------------------------------------------------------------------------------------------------ */

double max_abs(const float *x, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) m = fmax(m, fabs((double)x[i]));
    return m;
}

bool expect_all_finite(const char *what, const float *x, size_t n) {
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(x[i])) {
            harness_fail(__FILE__, __LINE__, "%s: element %zu of %zu is %g", what, i, n, (double)x[i]);
            return false;
        }
    }
    return true;
}

bool expect_close(const char *what, const float *got, const float *want, size_t n, double atol, double rtol) {
    if (!expect_all_finite(what, got, n)) return false;
    double worst = 0;
    size_t worst_i = 0;
    for (size_t i = 0; i < n; i++) {
        double ratio = fabs((double)got[i] - want[i]) / (atol + rtol * fabs((double)want[i]));
        if (ratio > worst) worst = ratio, worst_i = i;
    }
    if (worst > 1) {
        harness_fail(__FILE__, __LINE__, "%s: element %zu is %.8g, expected %.8g (|diff| %.3g > atol %.1g + rtol %.1g)",
                     what, worst_i, (double)got[worst_i], (double)want[worst_i],
                     fabs((double)got[worst_i] - want[worst_i]), atol, rtol);
        return false;
    }
    return true;
}

bool expect_close_scaled(const char *what, const float *got, const float *want, size_t n, double tol) {
    if (!expect_all_finite(what, got, n)) return false;
    double scale = max_abs(want, n), worst = 0;
    size_t worst_i = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - want[i]);
        if (d > worst) worst = d, worst_i = i;
    }
    double rel = scale > 0 ? worst / scale : worst;
    if (rel > tol) {
        harness_fail(__FILE__, __LINE__, "%s: max |diff| %.3g at element %zu (got %.8g, expected %.8g) is %.3g of "
                     "max |expected| %.3g, over the tolerance %.1g", what, worst, worst_i, (double)got[worst_i],
                     (double)want[worst_i], rel, scale, tol);
        return false;
    }
    return true;
}

void fill_normal(float *x, size_t n, uint64_t seed) { rng_fill_normal(x, n, seed, 0, 0); }

void fill_uniform(float *x, size_t n, uint64_t seed, float lo, float hi) {
    rng_fill_uniform(x, n, seed, 0, 0);
    for (size_t i = 0; i < n; i++) x[i] = lo + (hi - lo) * x[i];
}

/* ------------------------------------------------------------------------------------------------ */

#define GUARD_WORDS 16
#define GUARD_BITS 0x7FC0DEADu /* a NaN no computation produces */

float *guarded_alloc(size_t n) {
    /* The element count sits before the data so guarded_check can find the guard. */
    size_t *block = xmalloc(64 + (n + GUARD_WORDS) * sizeof(float));
    block[0] = n;
    float *p = (float *)((char *)block + 64);
    memset(p, 0, n * sizeof(float));
    uint32_t bits = GUARD_BITS;
    for (size_t i = 0; i < GUARD_WORDS; i++) memcpy(&p[n + i], &bits, sizeof bits);
    return p;
}

bool guarded_check(const char *what, const float *p) {
    size_t n = *(const size_t *)((const char *)p - 64);
    for (size_t i = 0; i < GUARD_WORDS; i++) {
        uint32_t bits;
        memcpy(&bits, &p[n + i], sizeof bits);
        if (bits != GUARD_BITS) {
            harness_fail(__FILE__, __LINE__, "%s: write past the end: guard word %zu after %zu elements changed", what, i, n);
            return false;
        }
    }
    return true;
}

void guarded_free(float *p) {
    if (p) free((char *)p - 64);
}

/* ------------------------------------------------------------------------------------------------ */

Fixture *fixture_open(const char *area) {
    char path[512];
    snprintf(path, sizeof path, "tests/fixtures/%s.safetensors", area);
    Fixture *fx = xcalloc(1, sizeof *fx);
    Error err;
    if (safetensors_open(&fx->st, path, &err)) {
        fprintf(stderr, "cannot load fixture: %s\n(run tests from the repository root; regenerate fixtures with "
                        "`python3 tools/gen_fixtures.py`)\n", err.message);
        exit(2);
    }
    return fx;
}

bool fixture_has(Fixture *fx, const char *name) { return safetensors_find(&fx->st, name) != NULL; }

float *fixture_floats(Fixture *fx, const char *name, size_t n_expected) {
    const SafeTensorInfo *t = safetensors_find(&fx->st, name);
    CHECK(t, "fixture %s has no tensor '%s' (regenerate with tools/gen_fixtures.py)", fx->st.path, name);
    float *out = xmalloc((n_expected ? n_expected : 1) * sizeof(float));
    Error err;
    CHECK(safetensors_read_f32(&fx->st, t, out, n_expected, &err) == 0, "%s", err.message);
    return out;
}

double fixture_scalar(Fixture *fx, const char *name) {
    float *v = fixture_floats(fx, name, 1);
    double x = v[0];
    free(v);
    return x;
}

void fixture_close(Fixture *fx) {
    safetensors_close(&fx->st);
    free(fx);
}

/* ------------------------------------------------------------------------------------------------ */

double dot_double(const float *a, const float *b, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += (double)a[i] * b[i];
    return s;
}

double gradcheck(const char *what, GradcheckLoss loss, void *ctx, float *x, const float *analytic, size_t n,
                 size_t n_probe, double eps, double atol, double rtol) {
    size_t stride = n <= n_probe ? 1 : n / n_probe;
    double worst = 0;
    size_t worst_i = 0;
    double worst_fd = 0;
    for (size_t i = 0; i < n; i += stride) {
        float saved = x[i];
        x[i] = saved + (float)eps;
        double up = loss(ctx);
        x[i] = saved - (float)eps;
        double down = loss(ctx);
        x[i] = saved;
        /* Divide by the step actually taken, which float rounding may have changed. */
        double step = (double)(saved + (float)eps) - (double)(saved - (float)eps);
        double fd = (up - down) / step;
        double ratio = fabs(analytic[i] - fd) / (atol + rtol * fabs(fd));
        if (!(ratio <= worst)) worst = ratio, worst_i = i, worst_fd = fd;
    }
    loss(ctx); /* leave the outputs as computed from the unperturbed inputs */
    if (!(worst <= 1))
        harness_fail(__FILE__, __LINE__, "%s: gradient element %zu: analytic %.8g, finite difference %.8g "
                     "(ratio %.3g to atol %.1g + rtol %.1g)", what, worst_i, (double)analytic[worst_i], worst_fd,
                     worst, atol, rtol);
    return worst;
}

/* ------------------------------------------------------------------------------------------------ */

bool expect_check_failure(const char *what, void (*call)(void *ctx), void *ctx, const char *expected) {
    int pipe_fds[2];
    CHECK(pipe(pipe_fds) == 0, "pipe failed");
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    CHECK(pid >= 0, "fork failed");
    if (pid == 0) {
        close(pipe_fds[0]);
        dup2(pipe_fds[1], STDERR_FILENO);
        signal(SIGABRT, SIG_DFL);
        call(ctx);
        _exit(0);
    }
    close(pipe_fds[1]);
    char message[4096];
    size_t used = 0;
    ssize_t got;
    while (used < sizeof message - 1 && (got = read(pipe_fds[0], message + used, sizeof message - 1 - used)) > 0)
        used += (size_t)got;
    message[used] = '\0';
    close(pipe_fds[0]);
    int status;
    waitpid(pid, &status, 0);
    bool aborted = WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT;
    if (!aborted || !strstr(message, expected)) {
        harness_fail(__FILE__, __LINE__, "%s: expected a CHECK failure mentioning \"%s\"; the call %s, saying: %s", what,
                     expected, aborted ? "aborted" : "did not abort", used ? message : "(nothing)");
        return false;
    }
    return true;
}
