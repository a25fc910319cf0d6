/* The diffuse program's model commands, run as a user would: `diffuse info` on presets, config files
 * and folders (parameter counts as diffusers computes them), `init` and `convert`, and bad input (unknown
 * model, option, command, malformed values and files) ending with exit status 1 and exactly one line on
 * stderr. The binary is found beside the tests folder: BUILD/tests/test_cli_info -> BUILD/diffuse (or the
 * path given as the first argument). */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "core/alloc.h"
#include "harness.h"

static char diffuse_path[1024];

typedef struct Run {
    int status;
    char out[16384];
    char err[4096];
    int err_lines;
} Run;

static void slurp(const char *path, char *buf, size_t buf_bytes) {
    buf[0] = '\0';
    FILE *f = fopen(path, "rb");
    if (!f) return;
    size_t n = fread(buf, 1, buf_bytes - 1, f);
    buf[n] = '\0';
    fclose(f);
}

/* Runs `diffuse <args>` through the shell; args are trusted test strings. */
static Run run(const char *args) {
    static Run r;
    char out_path[600], err_path[600], command[4096];
    snprintf(out_path, sizeof out_path, "%s", harness_tmp_path("stdout"));
    snprintf(err_path, sizeof err_path, "%s", harness_tmp_path("stderr"));
    snprintf(command, sizeof command, "%s %s >%s 2>%s", diffuse_path, args, out_path, err_path);
    int status = system(command);
    r.status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    slurp(out_path, r.out, sizeof r.out);
    slurp(err_path, r.err, sizeof r.err);
    r.err_lines = 0;
    for (const char *p = r.err; *p; p++) r.err_lines += *p == '\n';
    return r;
}

static void expect_success(const char *args, const char *expected_out) {
    Run r = run(args);
    EXPECT(r.status == 0, "diffuse %s: exit %d, stderr: %s", args, r.status, r.err);
    if (expected_out) EXPECT(strstr(r.out, expected_out), "diffuse %s: output lacks '%s':\n%s", args, expected_out, r.out);
}

/* Exit status 1 and one line on stderr containing `expected`. */
static void expect_failure(const char *args, const char *expected) {
    Run r = run(args);
    EXPECT(r.status == 1, "diffuse %s: exit %d, want 1", args, r.status);
    EXPECT(r.err_lines == 1, "diffuse %s: %d lines on stderr:\n%s", args, r.err_lines, r.err);
    EXPECT(strstr(r.err, expected), "diffuse %s: stderr lacks '%s': %s", args, expected, r.err);
}

static void test_info_presets(void) {
    expect_success("info ddpm-cifar10", "35,746,307");
    expect_success("info default", "274,056,163");
    expect_success("info ddpm-celebahq-256", "113,673,219");
    expect_success("info fashion-mnist --batch 64", "699,633");
    expect_success("info ddpm-cifar10", "12.444 GFLOP per 32x32 image");
    expect_success("info ddpm-cifar10 --batch=1", "training at batch 1");
    expect_success("info default --size 32", "32x32 (--size)");
}

static void test_info_files(void) {
    expect_success("info tests/fixtures/model_tiny", "45,355");
    expect_success("info tests/fixtures/model_tiny_legacy", "some under legacy attention names");
    expect_success("info tests/fixtures/model_tiny_sharded", "in 4 files");
    expect_success("info tests/fixtures/model_tiny/config.json", "45,355");
}

static void test_help(void) {
    expect_success("--help", "info");
    expect_success("info --help", "--batch N");
    expect_success("init --help", "--seed N");
    Run r = run("");
    EXPECT(r.status == 1, "no arguments: exit %d", r.status);
}

static void test_bad_input(void) {
    expect_failure("info no-such-model", "'no-such-model' is not a file or folder");
    expect_failure("info ddpm-cifar10 --batch abc", "--batch expects a whole number, got 'abc'");
    expect_failure("info ddpm-cifar10 --batch 0", "--batch must be >= 1");
    expect_failure("info ddpm-cifar10 --batch", "--batch needs a value");
    expect_failure("info ddpm-cifar10 --bogus 3", "unknown option '--bogus'");
    expect_failure("info ddpm-cifar10 -x", "unknown option '-x'");
    expect_failure("info", "missing arguments");
    expect_failure("info ddpm-cifar10 default", "unexpected argument 'default'");
    expect_failure("info ddpm-cifar10 --size 20", "size 20x20 is not divisible by 8");
    expect_failure("frobnicate", "unknown command 'frobnicate'");
    expect_failure("convert ddpm-cifar10 x", "not a model folder");

    char bad[600];
    snprintf(bad, sizeof bad, "%s", harness_tmp_path("bad_config.json"));
    FILE *f = fopen(bad, "w");
    CHECK(f, "cannot write %s", bad);
    fputs("{\"act_fn\": \"gelu\",\n \"in_channels\": 3}\n", f);
    fclose(f);
    char args[1400];
    snprintf(args, sizeof args, "info %s", bad);
    expect_failure(args, "bad_config.json: field 'act_fn' = \"gelu\" is not supported");

    /* A config without sample_size needs --size. */
    char no_size[600];
    snprintf(no_size, sizeof no_size, "%s", harness_tmp_path("no_size.json"));
    f = fopen(no_size, "w");
    CHECK(f, "cannot write %s", no_size);
    fputs("{\"block_out_channels\": [32, 64], \"down_block_types\": [\"DownBlock2D\", \"AttnDownBlock2D\"],"
          " \"up_block_types\": [\"AttnUpBlock2D\", \"UpBlock2D\"]}", f);
    fclose(f);
    snprintf(args, sizeof args, "info %s", no_size);
    expect_failure(args, "has no sample_size; give the image size with --size");
    snprintf(args, sizeof args, "info %s --size 16", no_size);
    expect_success(args, "MFLOP per 16x16 image");
}

static void test_init_and_convert(void) {
    char args[2048], folder[600], converted[600];
    snprintf(folder, sizeof folder, "%s", harness_tmp_path("fm"));
    snprintf(converted, sizeof converted, "%s", harness_tmp_path("converted"));
    snprintf(args, sizeof args, "init fashion-mnist %s --seed 3", folder);
    expect_success(args, "699633 parameters, seed 3");
    snprintf(args, sizeof args, "info %s", folder);
    expect_success(args, "214 tensors in 1 file (F32 214, F16 0, BF16 0), all match the config");
    snprintf(args, sizeof args, "convert tests/fixtures/model_tiny_f16 %s", converted);
    expect_success(args, "145 tensors (0 F32, 145 F16, 0 BF16, 0 legacy names) written as F32");
    snprintf(args, sizeof args, "info %s", converted);
    expect_success(args, "(F32 145, F16 0, BF16 0)");
    char file[600];
    snprintf(file, sizeof file, "%s", harness_tmp_path("a_file"));
    FILE *f = fopen(file, "w");
    CHECK(f, "cannot create %s", file);
    fclose(f);
    snprintf(args, sizeof args, "convert %s %s", converted, file);
    expect_failure(args, "exists and is not a folder");
}

int main(int argc, char **argv) {
    if (argc > 1) snprintf(diffuse_path, sizeof diffuse_path, "%s", argv[1]);
    else {
        /* BUILD/tests/test_cli_info -> BUILD/diffuse */
        snprintf(diffuse_path, sizeof diffuse_path, "%s", argv[0]);
        char *slash = strrchr(diffuse_path, '/');
        if (slash) *slash = '\0';
        slash = strrchr(diffuse_path, '/');
        if (slash) snprintf(slash + 1, sizeof diffuse_path - (size_t)(slash + 1 - diffuse_path), "diffuse");
        else snprintf(diffuse_path, sizeof diffuse_path, "build/diffuse");
    }
    struct stat st;
    if (stat(diffuse_path, &st) != 0) {
        printf("%s not found: build it first (make %s)\n", diffuse_path, diffuse_path);
        printf("RESULT 0 1\n");
        return 1;
    }
    RUN(test_info_presets);
    RUN(test_info_files);
    RUN(test_help);
    RUN(test_bad_input);
    RUN(test_init_and_convert);
    return harness_finish();
}
