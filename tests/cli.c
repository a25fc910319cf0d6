/* Running the diffuse program from tests (see cli.h). */
#define _POSIX_C_SOURCE 200809L
#include "cli.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "dist/dist.h"
#include "harness.h"

static char diffuse_path[1024];

bool cli_init(const char *argv0) {
    snprintf(diffuse_path, sizeof diffuse_path, "%s", argv0);
    char *slash = strrchr(diffuse_path, '/');
    if (slash) *slash = '\0';
    slash = strrchr(diffuse_path, '/');
    if (slash) snprintf(slash + 1, sizeof diffuse_path - (size_t)(slash + 1 - diffuse_path), "diffuse");
    else snprintf(diffuse_path, sizeof diffuse_path, "build/diffuse");
    struct stat st;
    if (stat(diffuse_path, &st) == 0) return true;
    printf("%s not found: build it first (make %s)\n", diffuse_path, diffuse_path);
    return false;
}

static void slurp(const char *path, char *buf, size_t buf_bytes) {
    buf[0] = '\0';
    FILE *f = fopen(path, "rb");
    if (!f) return;
    size_t n = fread(buf, 1, buf_bytes - 1, f);
    buf[n] = '\0';
    fclose(f);
}

bool cli_have_mpi(void) { return strcmp(dist_backend_name(), "mpi") == 0; }

/* One machine: processes started by fork (plm isolated: mpirun's default wants ssh even then), shared
 * memory without the kernel's direct-copy path, no core binding (containers often forbid both). */
static const char *mpirun_prefix(int n_ranks) {
    static char prefix[512];
    /* Under the sanitizers, Open MPI's own allocations from MPI_Init to exit are not ours to report
     * (tests/lsan-mpi.supp names only its libraries; full unwinding lets LeakSanitizer see them). */
#ifdef __SANITIZE_ADDRESS__
    const char *env = "LSAN_OPTIONS=suppressions=tests/lsan-mpi.supp:print_suppressions=0 "
                      "ASAN_OPTIONS=fast_unwind_on_malloc=0 ";
#else
    const char *env = "";
#endif
    snprintf(prefix, sizeof prefix,
             "%smpirun --oversubscribe -np %d --bind-to none --mca plm isolated --mca pml ob1 --mca btl self,vader "
             "--mca btl_vader_single_copy_mechanism none%s ",
             env, n_ranks, geteuid() == 0 ? " --allow-run-as-root" : "");
    return prefix;
}

static const CliRun *run_command(int n_ranks, const char *fmt, va_list ap) {
    static CliRun r;
    char args[4096], out_path[600], err_path[600], command[7000];
    vsnprintf(args, sizeof args, fmt, ap);
    snprintf(out_path, sizeof out_path, "%s", harness_tmp_path("cli-stdout"));
    snprintf(err_path, sizeof err_path, "%s", harness_tmp_path("cli-stderr"));
    snprintf(command, sizeof command, "%s%s %s >%s 2>%s", n_ranks > 1 ? mpirun_prefix(n_ranks) : "", diffuse_path,
             args, out_path, err_path);
    int status = system(command);
    r.status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    slurp(out_path, r.out, sizeof r.out);
    slurp(err_path, r.err, sizeof r.err);
    r.err_lines = 0;
    for (const char *p = r.err; *p; p++) r.err_lines += *p == '\n';
    return &r;
}

const CliRun *cli_run(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    const CliRun *r = run_command(1, fmt, ap);
    va_end(ap);
    return r;
}

const CliRun *cli_run_ranks(int n_ranks, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    const CliRun *r = run_command(n_ranks, fmt, ap);
    va_end(ap);
    return r;
}

bool cli_expect_success(const char *args, const char *expected_out) {
    const CliRun *r = cli_run("%s", args);
    bool ok = r->status == 0 && (!expected_out || strstr(r->out, expected_out));
    EXPECT(r->status == 0, "diffuse %s: exit %d, stderr: %s", args, r->status, r->err);
    if (expected_out) EXPECT(strstr(r->out, expected_out), "diffuse %s: output lacks '%s':\n%s", args, expected_out, r->out);
    return ok;
}

bool cli_expect_failure(const char *args, const char *expected_err) {
    const CliRun *r = cli_run("%s", args);
    bool ok = r->status == 1 && r->err_lines == 1 && strstr(r->err, expected_err);
    EXPECT(r->status == 1, "diffuse %s: exit %d, want 1", args, r->status);
    EXPECT(r->err_lines == 1, "diffuse %s: %d lines on stderr:\n%s", args, r->err_lines, r->err);
    EXPECT(strstr(r->err, expected_err), "diffuse %s: stderr lacks '%s': %s", args, expected_err, r->err);
    return ok;
}
