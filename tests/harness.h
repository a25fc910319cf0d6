/* The test harness: each tests/test_<area>.c is one executable whose main() RUNs its tests and returns
 * harness_finish(). A failed EXPECT marks the running test failed and goes on, so one run reports every
 * failure. Each executable ends with "RESULT <passed> <failed>", which tests/run adds up into the
 * "N passed, M failed" line; a crash counts as a failure there.
 *
 * Numeric helpers say what differed, where, and by how much. Guarded buffers catch writes past the end
 * of an output; expect_check_failure runs a call in a child process and expects a CHECK to stop it. */
#ifndef DIFFUSE_TEST_HARNESS_H
#define DIFFUSE_TEST_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/check.h"
#include "io/safetensors.h"

/* ---- running tests ---- */
void harness_run(const char *name, void (*test)(void));
#define RUN(test) harness_run(#test, test)
/* Prints the RESULT line; returns the process exit status (0 when every test passed). */
int harness_finish(void);

void harness_fail(const char *file, int line, const char *fmt, ...) DIFFUSE_PRINTF(3, 4);
#define EXPECT(cond, ...)                                            \
    do {                                                             \
        if (!(cond)) harness_fail(__FILE__, __LINE__, __VA_ARGS__);  \
    } while (0)

/* A fresh folder for this test executable's files, removed by harness_finish. */
const char *harness_tmp_dir(void);
/* harness_tmp_dir()/name, in a static buffer (valid until the next call). */
const char *harness_tmp_path(const char *name);

/* ---- numbers ---- */
/* Elementwise |got - want| <= atol + rtol * |want|, and both finite. Reports the worst element. */
bool expect_close(const char *what, const float *got, const float *want, size_t n, double atol, double rtol);
/* max |got - want| / max |want| <= tol: the model-level measure (error relative to the tensor's scale). */
bool expect_close_scaled(const char *what, const float *got, const float *want, size_t n, double tol);
bool expect_all_finite(const char *what, const float *x, size_t n);
double max_abs(const float *x, size_t n);

/* Deterministic test data from the library's RNG. */
void fill_normal(float *x, size_t n, uint64_t seed);
void fill_uniform(float *x, size_t n, uint64_t seed, float lo, float hi);

/* ---- guarded buffers: n floats followed by guard words that must stay untouched ---- */
float *guarded_alloc(size_t n);
/* EXPECTs the guard words after p[n-1] are intact; frees nothing. */
bool guarded_check(const char *what, const float *p);
void guarded_free(float *p);

/* ---- fixtures: tests/fixtures/<area>.safetensors written by tools/gen_fixtures.py ---- */
typedef struct Fixture {
    SafeTensors st;
} Fixture;
/* Aborts the test binary with a hint when the fixture file is missing or unreadable. */
Fixture *fixture_open(const char *area);
/* A malloc'ed float copy of tensor `name`, CHECKed to hold n_expected elements. */
float *fixture_floats(Fixture *fx, const char *name, size_t n_expected);
/* A scalar stored as a 1-element tensor. */
double fixture_scalar(Fixture *fx, const char *name);
bool fixture_has(Fixture *fx, const char *name);
void fixture_close(Fixture *fx);

/* ---- finite differences ---- */
/* Recomputes the forward pass from the current inputs and returns sum(out * dout) in double. */
typedef double (*GradcheckLoss)(void *ctx);
/* Compares analytic[i] with the central difference (L(x+eps) - L(x-eps)) / 2eps at up to n_probe indices
 * of x (all of them when n <= n_probe). Returns the worst |a - fd| / (atol + rtol |fd|): pass when <= 1.
 * x is restored afterwards. */
double gradcheck(const char *what, GradcheckLoss loss, void *ctx, float *x, const float *analytic, size_t n,
                 size_t n_probe, double eps, double atol, double rtol);
/* sum(a * b) in double: the scalar loss a gradcheck closure returns. */
double dot_double(const float *a, const float *b, size_t n);

/* ---- CHECK failures ---- */
/* Runs call(ctx) in a child process; passes when it dies by abort() with a message containing `expected`. */
bool expect_check_failure(const char *what, void (*call)(void *ctx), void *ctx, const char *expected);

#endif
