/* Running the diffuse program from a test, as a user would: `cli_run("train --data ...")` runs
 * BUILD/diffuse with those arguments through the shell and captures its exit status, stdout and stderr.
 * The binary is found beside the tests folder (BUILD/tests/test_x -> BUILD/diffuse). */
#ifndef DIFFUSE_TEST_CLI_H
#define DIFFUSE_TEST_CLI_H

#include <stdbool.h>

#include "core/check.h"

typedef struct CliRun {
    int status; /* exit status, -1 when killed by a signal */
    char out[65536];
    char err[16384];
    int err_lines;
} CliRun;

/* Finds the binary from the test's argv[0]; false (and a printed hint) when it is not built. */
bool cli_init(const char *argv0);
/* Runs `diffuse <args>` (args formatted like printf; trusted test strings). The result stays valid until
 * the next call. */
const CliRun *cli_run(const char *fmt, ...) DIFFUSE_PRINTF(1, 2);
/* The same under `mpirun -np n_ranks` (one machine, shared memory; the flags a container needs). */
const CliRun *cli_run_ranks(int n_ranks, const char *fmt, ...) DIFFUSE_PRINTF(2, 3);
/* Whether this build trains over MPI (else multi-rank tests report a skip). */
bool cli_have_mpi(void);
/* Exit status 0, and stdout containing expected_out when not NULL. */
bool cli_expect_success(const char *args, const char *expected_out);
/* Exit status 1 and exactly one line on stderr, containing expected_err. */
bool cli_expect_failure(const char *args, const char *expected_err);

#endif
