/* The single-process backend of dist.h, built when MPI is not: rank 0 of a world of 1, where every
 * collective is an identity (the mean or sum over one rank is the buffer itself) and a bucket is done
 * as soon as it starts. It keeps the checks of the MPI backend, so a misuse fails here too. */
#include "dist/dist.h"

#include <stdio.h>
#include <stdlib.h>

#include "core/alloc.h"

static bool initialised;

void dist_init(int *argc, char ***argv) {
    (void)argc, (void)argv;
    CHECK(!initialised, "dist_init called twice");
    initialised = true;
}

void dist_finalize(void) {
    CHECK(initialised, "dist_finalize without dist_init");
    initialised = false;
}

int dist_rank(void) { return 0; }
int dist_world_size(void) { return 1; }
bool dist_is_root(void) { return true; }
int dist_local_rank(void) { return 0; }
int dist_local_size(void) { return 1; }
const char *dist_backend_name(void) { return "single"; }

void dist_abort(int code, const char *msg) {
    fprintf(stderr, "diffuse: rank 0 of 1: %s\n", msg);
    fflush(NULL);
    _Exit(code ? code : 1);
}

void dist_barrier(void) {}

void dist_broadcast_floats(float *buf, size_t n, int root) {
    CHECK(root == 0, "broadcast root %d outside a world of 1", root);
    CHECK(buf || n == 0, "broadcast of %zu floats from NULL", n);
}

void dist_allreduce_mean_floats(float *buf, size_t n) { CHECK(buf || n == 0, "all-reduce of %zu floats from NULL", n); }

void dist_allreduce_sum_doubles(double *buf, size_t n) {
    CHECK(buf || n == 0, "all-reduce of %zu doubles from NULL", n);
}

void dist_allreduce_mean_floats_unordered(float *buf, size_t n) {
    CHECK(buf || n == 0, "all-reduce of %zu floats from NULL", n);
}

int dist_verify_identical(const float *buf, size_t n, const char *what, Error *err) {
    (void)err;
    CHECK(buf || n == 0, "%s: NULL buffer", what);
    return 0;
}

struct DistBucket {
    float *data;
    size_t n;
    bool started;
};

DistBucket *dist_bucket_init(float *data, size_t n) {
    CHECK(data && n > 0, "bucket of %zu floats at %p", n, (void *)data);
    DistBucket *b = xcalloc(1, sizeof *b);
    b->data = data;
    b->n = n;
    return b;
}

void dist_bucket_free(DistBucket *b) {
    if (!b) return;
    CHECK(!b->started, "freeing a bucket that is still in flight: wait for it first");
    free(b);
}

void dist_allreduce_start(DistBucket *b) {
    CHECK(b, "NULL bucket");
    CHECK(!b->started, "bucket started twice: wait for it before starting it again");
    b->started = true;
}

bool dist_allreduce_test(DistBucket *b) {
    CHECK(b, "NULL bucket");
    b->started = false;
    return true;
}

void dist_progress(void) {}

void dist_allreduce_wait(DistBucket *b) {
    CHECK(b, "NULL bucket");
    b->started = false;
}
