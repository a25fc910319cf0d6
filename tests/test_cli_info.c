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
#include "cli.h"
#include "harness.h"

static void expect_success(const char *args, const char *expected_out) { cli_expect_success(args, expected_out); }
static void expect_failure(const char *args, const char *expected) { cli_expect_failure(args, expected); }

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
    const CliRun *r = cli_run("%s", "");
    EXPECT(r->status == 1, "no arguments: exit %d", r->status);
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
    (void)argc;
    if (!cli_init(argv[0])) {
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
