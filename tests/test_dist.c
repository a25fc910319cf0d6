/* dist: the communication layer of data-parallel training.
 *
 * Run plainly (as tests/run does), this executable tests a world of one process, where every collective
 * is an identity, and then, when MPI was built, starts itself again under
 *     mpirun --oversubscribe -np N [--allow-run-as-root] ... test_dist --worker <scenario>
 * The workers check the collectives bit for bit against the rank-ordered reference formulas of dist.h
 * (at 2 ranks, and at 3, where the order of additions matters), the asynchronous buckets, and that a
 * failed CHECK, a rank killed by SIGKILL, a rank exiting with an error and a rank calling dist_abort
 * each end the whole job with a non-zero status within seconds (the issue asks for 30 s). */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/rng.h"
#include "core/threads.h"
#include "core/timer.h"
#include "dist/dist.h"
#include "harness.h"

/* ------------------------------------------------------------------------------------------------ */
/* Test data, different for every rank, whose sums depend on the order of additions: normal values
 * scaled by 2^-20 .. 2^20 (floats), 2^-60 .. 2^60 (doubles). Every 8th float is +-2^60 on ranks 0 and
 * 1, which cancel: in rank order a third rank's value survives, in another order it is lost. */
static void rank_floats(float *x, size_t n, uint64_t seed, int rank) {
    rng_fill_normal(x, n, seed, (uint64_t)rank, 0);
    for (size_t i = 0; i < n; i++) {
        x[i] = ldexpf(x[i], (int)(rng_bits(seed, 1000 + (uint64_t)rank, i) % 41) - 20);
        if (i % 8 == 5 && rank < 2) x[i] = ldexpf(rank ? -1.0f : 1.0f, 60);
    }
}

static void rank_doubles(double *x, size_t n, uint64_t seed, int rank) {
    for (size_t i = 0; i < n; i++)
        x[i] = ldexp(rng_normal(seed, (uint64_t)rank, i), (int)(rng_bits(seed, 1000 + (uint64_t)rank, i) % 121) - 60);
}

/* want = the mean of every rank's rank_floats in the order of dist.h: rank 0 first, in double. With
 * reversed set, the same in the opposite order, to show that the order is observable. */
static void reference_mean(float *want, size_t n, uint64_t seed, int size, bool reversed) {
    double *acc = xmalloc(n * sizeof *acc);
    float *x = xmalloc(n * sizeof *x);
    for (int k = 0; k < size; k++) {
        rank_floats(x, n, seed, reversed ? size - 1 - k : k);
        for (size_t i = 0; i < n; i++) acc[i] = k == 0 ? (double)x[i] : acc[i] + x[i];
    }
    for (size_t i = 0; i < n; i++) want[i] = (float)(acc[i] * (1.0 / size));
    free(x);
    free(acc);
}

static size_t first_difference(const void *a, const void *b, size_t n, size_t elem_bytes) {
    for (size_t i = 0; i < n; i++)
        if (memcmp((const char *)a + i * elem_bytes, (const char *)b + i * elem_bytes, elem_bytes)) return i;
    return n;
}

/* ------------------------------------------------------------------------------------------------ */
/* Workers: one MPI rank each */

static void worker_world(void) {
    int rank = dist_rank(), size = dist_world_size();
    const char *launched = getenv("OMPI_COMM_WORLD_SIZE");
    EXPECT(launched && atoi(launched) == size, "world size %d, mpirun says %s", size, launched ? launched : "nothing");
    EXPECT(rank >= 0 && rank < size, "rank %d of %d", rank, size);
    EXPECT(dist_is_root() == (rank == 0), "rank %d: is_root %d", rank, dist_is_root());
    EXPECT(dist_local_size() == size && dist_local_rank() == rank, "one machine: local rank %d of %d, rank %d of %d",
           dist_local_rank(), dist_local_size(), rank, size);
    EXPECT(strcmp(dist_backend_name(), "mpi") == 0, "backend %s", dist_backend_name());
    dist_barrier();
}

static void worker_allreduce_mean(void) {
    /* Sizes below one chunk alignment, odd ones, and one over two segments of the blocking call (1M). */
    static const size_t sizes[] = {1, 3, 16, 47, 1000, 65541, (1u << 20) + 12345};
    const int rank = dist_rank(), size = dist_world_size();
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        const size_t n = sizes[s];
        const uint64_t seed = 100 + s;
        float *buf = xmalloc(n * sizeof *buf), *want = xmalloc(n * sizeof *want);
        rank_floats(buf, n, seed, rank);
        reference_mean(want, n, seed, size, false);
        dist_allreduce_mean_floats(buf, n);
        size_t i = first_difference(buf, want, n, sizeof(float));
        EXPECT(i == n, "rank %d of %d, %zu floats: element %zu is %.9g, the rank-ordered mean is %.9g", rank, size, n, i,
               i < n ? (double)buf[i] : 0.0, i < n ? (double)want[i] : 0.0);
        Error err;
        EXPECT(dist_verify_identical(buf, n, "the mean", &err) == 0, "%zu floats: %s", n, err.message);
        if (s + 1 == sizeof sizes / sizeof sizes[0] && size > 2) {
            /* The test can tell orders apart: the reverse order gives other bits for some elements. */
            reference_mean(want, n, seed, size, true);
            size_t n_differ = 0;
            for (size_t k = 0; k < n; k++) n_differ += memcmp(&buf[k], &want[k], sizeof(float)) != 0;
            EXPECT(n_differ > 0, "the reverse order gives the same %zu floats: the test cannot see the order", n);
        }
        free(buf);
        free(want);
    }
}

/* Cheap order-sensitive data for long buffers: integers scaled by 2^-20 .. 2^20. */
static float cheap_float(size_t i, int rank) {
    uint32_t h = (uint32_t)i * 2654435761u + (uint32_t)rank * 40503u;
    return ldexpf((float)(h >> 16) - 32768.0f, (int)((i + 7 * (size_t)rank) % 41) - 20);
}

/* More segments (of 2^20) than the blocking all-reduce keeps in flight (4), so its slots are reused. */
static void worker_allreduce_many_segments(void) {
    const size_t n = (5u << 20) + 333;
    const int rank = dist_rank(), size = dist_world_size();
    float *buf = xmalloc(n * sizeof *buf), *want = xmalloc(n * sizeof *want);
    for (size_t i = 0; i < n; i++) {
        double acc = cheap_float(i, 0);
        for (int k = 1; k < size; k++) acc += cheap_float(i, k);
        want[i] = (float)(acc * (1.0 / size));
        buf[i] = cheap_float(i, rank);
    }
    dist_allreduce_mean_floats(buf, n);
    size_t i = first_difference(buf, want, n, sizeof(float));
    EXPECT(i == n, "rank %d of %d, %zu floats: element %zu is %.9g, the rank-ordered mean is %.9g", rank, size, n, i,
           i < n ? (double)buf[i] : 0.0, i < n ? (double)want[i] : 0.0);
    free(buf);
    free(want);
}

static void worker_allreduce_sum_doubles(void) {
    static const size_t sizes[] = {1, 5, 100, 3001};
    const int rank = dist_rank(), size = dist_world_size();
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        const size_t n = sizes[s];
        const uint64_t seed = 200 + s;
        double *buf = xmalloc(n * sizeof *buf), *want = xmalloc(n * sizeof *want), *x = xmalloc(n * sizeof *x);
        for (int k = 0; k < size; k++) {
            rank_doubles(x, n, seed, k);
            for (size_t i = 0; i < n; i++) want[i] = k == 0 ? x[i] : want[i] + x[i];
        }
        rank_doubles(buf, n, seed, rank);
        dist_allreduce_sum_doubles(buf, n);
        size_t i = first_difference(buf, want, n, sizeof(double));
        EXPECT(i == n, "rank %d of %d, %zu doubles: element %zu is %.17g, the rank-ordered sum is %.17g", rank, size, n, i,
               i < n ? buf[i] : 0.0, i < n ? want[i] : 0.0);
        free(buf);
        free(want);
        free(x);
    }
}

static void worker_broadcast(void) {
    const int rank = dist_rank(), size = dist_world_size(), root = size - 1;
    const size_t n = 100003;
    float *buf = xmalloc(n * sizeof *buf), *want = xmalloc(n * sizeof *want);
    rank_floats(buf, n, 300, rank);
    rank_floats(want, n, 300, root);
    dist_broadcast_floats(buf, n, root);
    EXPECT(memcmp(buf, want, n * sizeof *buf) == 0, "rank %d: broadcast from rank %d differs", rank, root);
    free(buf);
    free(want);
}

static void worker_verify_identical(void) {
    const int rank = dist_rank(), size = dist_world_size();
    const size_t n = 5000;
    float *buf = xmalloc(n * sizeof *buf);
    rank_floats(buf, n, 400, 0);
    Error err;
    EXPECT(dist_verify_identical(buf, n, "the weights", &err) == 0, "rank %d: identical buffers: %s", rank, err.message);
    if (rank == 1) buf[n / 2] = nextafterf(buf[n / 2], INFINITY);
    int rc = dist_verify_identical(buf, n, "the weights", &err);
    EXPECT(rc == -1 && strstr(err.message, "the weights differs between ranks") &&
               strstr(err.message, "1 rank(s) differ from rank 0 (1)"),
           "rank %d of %d: one bit changed on rank 1: rc %d, %s", rank, size, rc, rc ? err.message : "");
    free(buf);
}

/* Buckets started in opposite orders on neighbouring ranks, a blocking all-reduce while they are in
 * flight, completion by test and by wait, and a second step through the same buckets: the result must
 * be the blocking all-reduce's, bit for bit. */
static void worker_buckets(void) {
    enum { N_BUCKETS = 4 };
    static const size_t bounds[N_BUCKETS + 1] = {0, 3, 1000, 150000, 300007};
    const size_t n = bounds[N_BUCKETS];
    const int rank = dist_rank(), size = dist_world_size();
    float *buf = xmalloc(n * sizeof *buf), *want = xmalloc(n * sizeof *want);
    DistBucket *buckets[N_BUCKETS];
    for (int b = 0; b < N_BUCKETS; b++) buckets[b] = dist_bucket_init(buf + bounds[b], bounds[b + 1] - bounds[b]);
    for (uint64_t step = 0; step < 2; step++) {
        const uint64_t seed = 500 + step;
        rank_floats(buf, n, seed, rank);
        reference_mean(want, n, seed, size, false);
        for (int k = 0; k < N_BUCKETS; k++) {
            dist_allreduce_start(buckets[rank % 2 ? N_BUCKETS - 1 - k : k]);
            dist_progress();
            if (k == 1) {
                double metrics[2] = {rank, 1};
                dist_allreduce_sum_doubles(metrics, 2);
                EXPECT(metrics[0] == size * (size - 1) / 2.0 && metrics[1] == size,
                       "rank %d: sum of doubles with buckets in flight: %g %g", rank, metrics[0], metrics[1]);
            }
        }
        while (!dist_allreduce_test(buckets[0])) continue;
        for (int b = N_BUCKETS - 1; b >= 1; b--) dist_allreduce_wait(buckets[b]);
        EXPECT(dist_allreduce_test(buckets[2]), "a finished bucket tests as unfinished");
        size_t i = first_difference(buf, want, n, sizeof(float));
        EXPECT(i == n, "rank %d of %d, step %d: bucketed element %zu is %.9g, the rank-ordered mean is %.9g", rank, size,
               (int)step, i, i < n ? (double)buf[i] : 0.0, i < n ? (double)want[i] : 0.0);
    }
    for (int b = 0; b < N_BUCKETS; b++) dist_bucket_free(buckets[b]);
    free(buf);
    free(want);
}

/* Rank 1 fails in the way `how` names while rank 0 waits for it in an all-reduce that never completes.
 * The line "rank 1 fails at T" gives the parent the moment of the failure (a monotonic clock, shared
 * by the processes of one machine). */
static int worker_fail(const char *how) {
    dist_barrier();
    if (dist_rank() == 1) {
        printf("rank 1 fails at %.6f\n", time_now());
        fflush(stdout);
        if (strcmp(how, "check") == 0) CHECK(0, "deliberate failure on rank %d", dist_rank());
        if (strcmp(how, "kill") == 0) raise(SIGKILL);
        if (strcmp(how, "exit") == 0) exit(1);
        if (strcmp(how, "abort") == 0) dist_abort(2, "cannot read data/x.png: truncated");
    }
    float x[64] = {0};
    dist_allreduce_mean_floats(x, 64);
    printf("rank %d: unreachable: the job went on after rank 1 failed\n", dist_rank());
    dist_finalize();
    return 3;
}

static int worker_main(int argc, char **argv, const char *scenario) {
    dist_init(&argc, &argv);
    threads_set(1); /* the ranks share two cores */
    if (strcmp(scenario, "collectives") != 0) return worker_fail(scenario);
    RUN(worker_world);
    RUN(worker_allreduce_mean);
    RUN(worker_allreduce_many_segments);
    RUN(worker_allreduce_sum_doubles);
    RUN(worker_broadcast);
    RUN(worker_verify_identical);
    RUN(worker_buckets);
    printf("worker rank %d of %d done\n", dist_rank(), dist_world_size());
    dist_finalize();
    return harness_finish();
}

/* ------------------------------------------------------------------------------------------------ */
/* Launching workers */

typedef struct Launch {
    int status;     /* exit status of mpirun; -1 when it was killed at the time limit */
    double end;     /* time_now() when it ended */
    char output[1 << 16]; /* stdout and stderr of mpirun and the workers */
} Launch;

static const char *self_path(void) {
    static char path[4096];
    ssize_t n = readlink("/proc/self/exe", path, sizeof path - 1);
    CHECK(n > 0, "cannot read /proc/self/exe");
    path[n] = '\0';
    return path;
}

/* Runs `mpirun ... this-executable --worker scenario` on n_ranks ranks, for at most limit seconds. */
static void launch_workers(Launch *l, int n_ranks, const char *scenario, double limit) {
    char np[16];
    snprintf(np, sizeof np, "%d", n_ranks);
    /* One machine: started by fork (plm isolated: mpirun's default needs ssh even then), shared memory
     * only, no binding to cores (containers often refuse it), and no single-copy transfers
     * (process_vm_readv, which container seccomp profiles forbid). */
    const char *args[32] = {"mpirun", "--oversubscribe", "-np", np, "--bind-to", "none", "--mca", "plm", "isolated",
                            "--mca", "pml", "ob1", "--mca", "btl", "self,vader",
                            "--mca", "btl_vader_single_copy_mechanism", "none"};
    int k = 18;
    if (geteuid() == 0) args[k++] = "--allow-run-as-root";
    args[k++] = self_path();
    args[k++] = "--worker";
    args[k++] = scenario;
    args[k] = NULL;

    int fds[2];
    CHECK(pipe(fds) == 0, "pipe failed");
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    CHECK(pid >= 0, "fork failed");
    if (pid == 0) {
        setpgid(0, 0);
        dup2(fds[1], STDOUT_FILENO);
        dup2(fds[1], STDERR_FILENO);
        close(fds[0]);
        close(fds[1]);
#ifdef __SANITIZE_ADDRESS__
        /* Open MPI's libraries keep allocations from MPI_Init until exit: tests/lsan-mpi.supp names only
         * them, and full stack unwinding lets LeakSanitizer see those libraries in the stacks. */
        char cwd[2048], options[4096];
        CHECK(getcwd(cwd, sizeof cwd), "cannot read the working folder");
        snprintf(options, sizeof options, "suppressions=%s/tests/lsan-mpi.supp:print_suppressions=0", cwd);
        setenv("LSAN_OPTIONS", options, 1);
        const char *asan = getenv("ASAN_OPTIONS");
        snprintf(options, sizeof options, "%s%sfast_unwind_on_malloc=0", asan ? asan : "", asan && *asan ? ":" : "");
        setenv("ASAN_OPTIONS", options, 1);
#endif
        execvp(args[0], (char *const *)args);
        fprintf(stderr, "cannot run mpirun: install openmpi-bin (scripts/install-deps)\n");
        _exit(127);
    }
    close(fds[1]);
    const double start = time_now();
    size_t used = 0;
    bool killed = false;
    for (;;) {
        double left = limit - (time_now() - start);
        if (left <= 0 && !killed) {
            kill(-pid, SIGKILL);
            killed = true;
        }
        struct pollfd p = {.fd = fds[0], .events = POLLIN};
        int ready = poll(&p, 1, killed ? 1000 : (int)(left * 1000) + 1);
        if (ready <= 0) {
            if (killed) break;
            continue;
        }
        char chunk[4096];
        ssize_t got = read(fds[0], chunk, sizeof chunk);
        if (got <= 0) break;
        size_t keep = (size_t)got < sizeof l->output - 1 - used ? (size_t)got : sizeof l->output - 1 - used;
        memcpy(l->output + used, chunk, keep);
        used += keep;
    }
    l->output[used] = '\0';
    close(fds[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    l->end = time_now();
    l->status = killed ? -1 : WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static void print_output(const Launch *l) {
    printf("  mpirun output:\n");
    for (const char *line = l->output; *line;) {
        const char *end = strchr(line, '\n');
        int len = end ? (int)(end - line) : (int)strlen(line);
        printf("  | %.*s\n", len, line);
        line += len + (end != NULL);
    }
}

static bool skip_without_mpi(void) {
    if (strcmp(dist_backend_name(), "mpi") == 0) return false;
    printf("  skipped: built without MPI\n");
    return true;
}

static void run_collectives(int n_ranks) {
    if (skip_without_mpi()) return;
    Launch *l = xcalloc(1, sizeof *l);
    const double start = time_now();
    launch_workers(l, n_ranks, "collectives", 120);
    bool all_done = true;
    for (int r = 0; r < n_ranks; r++) {
        char line[64];
        snprintf(line, sizeof line, "worker rank %d of %d done", r, n_ranks);
        all_done = all_done && strstr(l->output, line);
    }
    EXPECT(l->status == 0 && all_done, "%d ranks: mpirun ended with status %d%s", n_ranks, l->status,
           all_done ? "" : ", and not every rank finished");
    if (l->status != 0 || !all_done) print_output(l);
    else printf("  %d ranks: every check passed on every rank (%.1f s with mpirun's start)\n", n_ranks, l->end - start);
    free(l);
}

static void test_two_ranks_collectives(void) { run_collectives(2); }
static void test_three_ranks_collectives(void) { run_collectives(3); }

/* Rank 1 fails; the job must end non-zero within 30 s of it, with `expected` in its output. */
static void run_failure(const char *how, const char *expected, const char *expected2) {
    if (skip_without_mpi()) return;
    Launch *l = xcalloc(1, sizeof *l);
    launch_workers(l, 2, how, 60);
    const char *mark = strstr(l->output, "rank 1 fails at ");
    double failed_at = mark ? atof(mark + strlen("rank 1 fails at ")) : 0;
    double seconds = l->end - failed_at;
    bool ok = l->status > 0 && mark && seconds < 30 && strstr(l->output, expected) &&
              (!expected2 || strstr(l->output, expected2)) && !strstr(l->output, "unreachable");
    EXPECT(ok, "rank 1 %s: mpirun status %d (-1: still running at the time limit), %.1f s after the failure; "
               "expected a non-zero status within 30 s and \"%s\"%s%s in the output",
           how, l->status, mark ? seconds : -1.0, expected, expected2 ? " and " : "", expected2 ? expected2 : "");
    if (!ok) print_output(l);
    else printf("  rank 1 %s: the job ended %.2f s later, mpirun status %d\n", how, seconds, l->status);
    free(l);
}

static void test_check_failure_ends_job(void) {
    run_failure("check", "diffuse: rank 1 of 2: CHECK failed", "deliberate failure on rank 1");
}

/* mpirun names the dead rank in its own words; only the status and the time are ours to promise (its
 * message is sometimes lost to an internal "out of resource" of its help system). */
static void test_killed_rank_ends_job(void) { run_failure("kill", "", NULL); }

static void test_failed_exit_ends_job(void) { run_failure("exit", "exited with non-zero status", NULL); }

/* What the CLI does with an error on one rank: the message names it, every rank ends at once. */
static void test_abort_ends_job(void) {
    run_failure("abort", "diffuse: rank 1 of 2: cannot read data/x.png: truncated", NULL);
}

/* ------------------------------------------------------------------------------------------------ */
/* A world of one process (what a plain start gives with either backend) */

static void test_world_of_one(void) {
    EXPECT(dist_rank() == 0 && dist_world_size() == 1 && dist_is_root(), "rank %d of %d", dist_rank(),
           dist_world_size());
    EXPECT(dist_local_rank() == 0 && dist_local_size() == 1, "local rank %d of %d", dist_local_rank(),
           dist_local_size());
    dist_barrier();

    const size_t n = 1001;
    float *buf = xmalloc(n * sizeof *buf), *want = xmalloc(n * sizeof *want);
    rank_floats(buf, n, 1, 0);
    memcpy(want, buf, n * sizeof *buf);
    dist_allreduce_mean_floats(buf, n);
    EXPECT(memcmp(buf, want, n * sizeof *buf) == 0, "the mean over one rank changed the buffer");
    dist_allreduce_mean_floats_unordered(buf, n);
    EXPECT(memcmp(buf, want, n * sizeof *buf) == 0, "the library mean over one rank changed the buffer");
    dist_broadcast_floats(buf, n, 0);
    EXPECT(memcmp(buf, want, n * sizeof *buf) == 0, "a broadcast in a world of one changed the buffer");
    Error err;
    EXPECT(dist_verify_identical(buf, n, "x", &err) == 0, "one rank is always identical to itself");

    double d[3] = {1.5, -2.25, 1e300}, dwant[3] = {1.5, -2.25, 1e300};
    dist_allreduce_sum_doubles(d, 3);
    EXPECT(memcmp(d, dwant, sizeof d) == 0, "the sum over one rank changed the doubles");

    DistBucket *a = dist_bucket_init(buf, 10), *b = dist_bucket_init(buf + 10, n - 10);
    dist_allreduce_start(a);
    dist_allreduce_start(b);
    dist_progress();
    EXPECT(dist_allreduce_test(a), "a bucket in a world of one is done at once");
    dist_allreduce_wait(b);
    dist_allreduce_start(a); /* again, after its test */
    dist_allreduce_wait(a);
    EXPECT(memcmp(buf, want, n * sizeof *buf) == 0, "buckets in a world of one changed the buffer");
    dist_bucket_free(a);
    dist_bucket_free(b);
    free(buf);
    free(want);
}

static void start_bucket_twice(void *ctx) {
    (void)ctx;
    float x[4] = {0};
    DistBucket *b = dist_bucket_init(x, 4);
    dist_allreduce_start(b);
    dist_allreduce_start(b);
}

static void free_bucket_in_flight(void *ctx) {
    (void)ctx;
    float x[4] = {0};
    DistBucket *b = dist_bucket_init(x, 4);
    dist_allreduce_start(b);
    dist_bucket_free(b);
}

static void broadcast_from_rank_one(void *ctx) {
    (void)ctx;
    float x[4] = {0};
    dist_broadcast_floats(x, 4, 1);
}

static void test_misuse_is_caught(void) {
    expect_check_failure("a bucket started twice", start_bucket_twice, NULL, "bucket started twice");
    expect_check_failure("a bucket freed in flight", free_bucket_in_flight, NULL, "still in flight");
    expect_check_failure("a broadcast root outside the world", broadcast_from_rank_one, NULL, "root 1 outside");
}

static void test_abort_exits_with_code(void) {
    fflush(stdout);
    pid_t pid = fork();
    CHECK(pid >= 0, "fork failed");
    if (pid == 0) {
        if (!freopen("/dev/null", "w", stderr)) _exit(99);
        dist_abort(7, "deliberate");
    }
    int status = 0;
    waitpid(pid, &status, 0);
    EXPECT(WIFEXITED(status) && WEXITSTATUS(status) == 7, "dist_abort(7) ended the process with status 0x%x", status);
}

int main(int argc, char **argv) {
    if (argc == 3 && strcmp(argv[1], "--worker") == 0) return worker_main(argc, argv, argv[2]);
    dist_init(&argc, &argv);
    printf("backend: %s\n", dist_backend_name());
    RUN(test_world_of_one);
    RUN(test_misuse_is_caught);
    RUN(test_abort_exits_with_code);
    RUN(test_two_ranks_collectives);
    RUN(test_three_ranks_collectives);
    RUN(test_check_failure_ends_job);
    RUN(test_killed_rank_ends_job);
    RUN(test_failed_exit_ends_job);
    RUN(test_abort_ends_job);
    dist_finalize();
    return harness_finish();
}
