/* The diffuse program's sampling and data commands, run as a user runs them: `diffuse sample` on a run
 * folder written by `diffuse init --pipeline` and on the fixture model folder (PNG grid, one PNG per image,
 * trajectory, noise file, three samplers), `diffuse prepare` on a small image folder (the packed file
 * reopens), `diffuse eval` on it (numbers printed), and bad input to each: exit status 1, exactly one line
 * on stderr, and no output file left behind. */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "core/alloc.h"
#include "data/dataset.h"
#include "data/image_decode.h"
#include "cli.h"
#include "harness.h"
#include "io/png_write.h"
#include "pipeline/noise_file.h"

static char run_dir[600], tiny[] = "tests/fixtures/model_tiny";

static bool expect_success(const char *args, const char *expected_out) { return cli_expect_success(args, expected_out); }

static bool exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

/* Exit status 1, one line on stderr containing `expected`, and `no_file` (when not NULL) not created. */
static void expect_failure(const char *args, const char *expected, const char *no_file) {
    cli_expect_failure(args, expected);
    if (no_file) EXPECT(!exists(no_file), "diffuse %s: left %s behind", args, no_file);
}

/* The decoded size of a PNG file, or 0 x 0. */
static void png_size(const char *path, size_t *h, size_t *w, size_t *c) {
    DecodedImage img;
    Error err;
    *h = *w = *c = 0;
    if (image_decode_file(&img, path, &err)) {
        EXPECT(0, "%s", err.message);
        return;
    }
    *h = img.height, *w = img.width, *c = img.channels;
    image_decode_free(&img);
}

static size_t count_files(const char *dir, const char *suffix) {
    DIR *d = opendir(dir);
    if (!d) return 0;
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t len = strlen(e->d_name), s = strlen(suffix);
        n += len > s && strcmp(e->d_name + len - s, suffix) == 0;
    }
    closedir(d);
    return n;
}

/* ------------------------------------------------------------------------------------------------ */

static void test_sample_outputs(void) {
    char args[4096], grid[600], out_dir[600], traj[600];
    snprintf(grid, sizeof grid, "%s", harness_tmp_path("grid.png"));
    snprintf(out_dir, sizeof out_dir, "%s", harness_tmp_path("images"));
    snprintf(traj, sizeof traj, "%s", harness_tmp_path("trajectory.png"));
    snprintf(args, sizeof args, "sample %s -o %s -n 5 --steps 4 --out-dir %s --trajectory %s --batch 2", run_dir,
             grid, out_dir, traj);
    expect_success(args, "5 images 8x8, ddpm 4 steps, seed 0");
    size_t h, w, c;
    /* 5 images of 8x8 in 3 columns and 2 rows, 2-pixel gaps. */
    png_size(grid, &h, &w, &c);
    EXPECT(h == 2 * 8 + 3 * 2 && w == 3 * 8 + 4 * 2 && c == 3, "grid %zux%zux%zu", h, w, c);
    EXPECT(count_files(out_dir, ".png") == 5, "%zu PNG files in --out-dir", count_files(out_dir, ".png"));
    char first[700];
    snprintf(first, sizeof first, "%s/00004.png", out_dir);
    png_size(first, &h, &w, &c);
    EXPECT(h == 8 && w == 8 && c == 3, "one image %zux%zux%zu", h, w, c);
    /* Trajectory: 4 images (rows) x 5 frames (x_T and the 4 steps). */
    png_size(traj, &h, &w, &c);
    EXPECT(h == 4 * 8 + 5 * 2 && w == 5 * 8 + 6 * 2, "trajectory %zux%zu", h, w);

    /* The other samplers, a class-conditional bare folder, grid columns. */
    snprintf(args, sizeof args, "sample %s -o %s -n 3 --sampler ddim --steps 3 --eta 0.5", run_dir, grid);
    expect_success(args, "ddim 3 steps (eta > 0)");
    snprintf(args, sizeof args, "sample %s -o %s -n 3 --sampler dpm++ --steps 3 --cols 3", run_dir, grid);
    expect_success(args, "dpm++ 3 steps");
    png_size(grid, &h, &w, &c);
    EXPECT(h == 8 + 2 * 2 && w == 3 * 8 + 4 * 2, "one-row grid %zux%zu", h, w);
    snprintf(args, sizeof args, "sample %s -o %s -n 2 --steps 2 --class 2", tiny, grid);
    expect_success(args, "2 images 8x8, ddpm 2 steps");
    snprintf(args, sizeof args, "sample --help");
    expect_success(args, "-o, --output FILE");
}

static void test_sample_same_images_any_batch(void) {
    char args[4096], a[600], b[600];
    snprintf(a, sizeof a, "%s", harness_tmp_path("batch_all"));
    snprintf(b, sizeof b, "%s", harness_tmp_path("batch_one"));
    snprintf(args, sizeof args, "sample %s --out-dir %s -n 3 --steps 3 --seed 7", run_dir, a);
    expect_success(args, NULL);
    snprintf(args, sizeof args, "sample %s --out-dir %s -n 3 --steps 3 --seed 7 --batch 1", run_dir, b);
    expect_success(args, NULL);
    size_t same = 0;
    for (int i = 0; i < 3; i++) {
        char pa[700], pb[700];
        snprintf(pa, sizeof pa, "%s/%05d.png", a, i);
        snprintf(pb, sizeof pb, "%s/%05d.png", b, i);
        DecodedImage ia, ib;
        Error err;
        if (image_decode_file(&ia, pa, &err) || image_decode_file(&ib, pb, &err)) {
            EXPECT(0, "%s", err.message);
            return;
        }
        size_t n = ia.height * ia.width * ia.channels, differ = 0;
        for (size_t k = 0; k < n; k++) differ += abs((int)ia.pixels[k] - (int)ib.pixels[k]) > 1;
        same += differ == 0;
        image_decode_free(&ia);
        image_decode_free(&ib);
    }
    EXPECT(same == 3, "%zu of 3 images agree within one level between --batch 3 and --batch 1", same);
}

static void test_sample_noise_file(void) {
    size_t n = 2, steps = 3, D = 8 * 8 * 3;
    NoiseFile nf = {.n_images = n, .height = 8, .width = 8, .channels = 3, .n_steps = steps};
    nf.x_T = alloc_floats(n * D);
    nf.noise = alloc_floats(steps * n * D);
    fill_normal(nf.x_T, n * D, 1);
    fill_normal(nf.noise, steps * n * D, 2);
    char noise[600], grid[600], args[2048];
    snprintf(noise, sizeof noise, "%s", harness_tmp_path("noise.safetensors"));
    snprintf(grid, sizeof grid, "%s", harness_tmp_path("noise_grid.png"));
    Error err;
    EXPECT(noise_file_write(noise, &nf, &err) == 0, "%s", err.message);
    snprintf(args, sizeof args, "sample %s -o %s -n 2 --steps 3 --noise %s", run_dir, grid, noise);
    expect_success(args, "noise from file");
    remove(grid);
    snprintf(args, sizeof args, "sample %s -o %s -n 3 --steps 3 --noise %s", run_dir, grid, noise);
    expect_failure(args, "holds noise for 2 images, fewer than -n 3 (pass -n 2)", grid);
    snprintf(args, sizeof args, "sample %s -o %s -n 2 --steps 5 --noise %s", run_dir, grid, noise);
    expect_failure(args, "draws noise at step 4 of 5, but the noise holds 3 steps", grid);
    snprintf(args, sizeof args, "sample %s -o %s -n 2 --noise %s", tiny, grid, "tests/fixtures/model_tiny/config.json");
    expect_failure(args, "config.json", grid);
    noise_file_free(&nf);
}

static void test_sample_bad_input(void) {
    char args[4096], grid[600];
    snprintf(grid, sizeof grid, "%s", harness_tmp_path("never.png"));
    snprintf(args, sizeof args, "sample %s -o %s", harness_tmp_path("no-such-run"), grid);
    expect_failure(args, "no such model folder", grid);
    snprintf(args, sizeof args, "sample %s -o %s --bogus 1", run_dir, grid);
    expect_failure(args, "unknown option '--bogus'", grid);
    snprintf(args, sizeof args, "sample %s -o %s -x", run_dir, grid);
    expect_failure(args, "unknown option '-x'", grid);
    snprintf(args, sizeof args, "sample %s -o %s --steps abc", run_dir, grid);
    expect_failure(args, "--steps expects a whole number, got 'abc'", grid);
    snprintf(args, sizeof args, "sample %s -o %s --steps 0", run_dir, grid);
    expect_failure(args, "--steps must be >= 1", grid);
    snprintf(args, sizeof args, "sample %s -o %s --steps 1001", run_dir, grid);
    expect_failure(args, "1001 steps exceed the scheduler's 1000 training timesteps", grid);
    snprintf(args, sizeof args, "sample %s -o %s -n abc", run_dir, grid);
    expect_failure(args, "--images expects a whole number, got 'abc'", grid);
    snprintf(args, sizeof args, "sample %s -o %s -n 0", run_dir, grid);
    expect_failure(args, "must be >= 1", grid);
    snprintf(args, sizeof args, "sample %s -o %s --sampler foo", run_dir, grid);
    expect_failure(args, "unknown sampler 'foo' (supported: ddpm, ddim, dpm++)", grid);
    snprintf(args, sizeof args, "sample %s -o %s --eta 0.5", run_dir, grid);
    expect_failure(args, "--eta applies to --sampler ddim only", grid);
    snprintf(args, sizeof args, "sample %s -o %s --eta x", run_dir, grid);
    expect_failure(args, "--eta expects a number, got 'x'", grid);
    snprintf(args, sizeof args, "sample %s", run_dir);
    expect_failure(args, "nothing to write", NULL);
    snprintf(args, sizeof args, "sample %s -o %s", run_dir, harness_tmp_path("no/such/dir/x.png"));
    expect_failure(args, "does not exist", NULL);
    snprintf(args, sizeof args, "sample %s -o %s", run_dir, harness_tmp_dir());
    expect_failure(args, "is a folder", NULL);
    snprintf(args, sizeof args, "sample %s --out-dir %s/grid.png/x", run_dir, harness_tmp_dir());
    expect_failure(args, "is not a folder", NULL);
    snprintf(args, sizeof args, "sample %s -o %s --class 0", run_dir, grid);
    expect_failure(args, "the model is unconditional", grid);
    snprintf(args, sizeof args, "sample %s -o %s --class 3", tiny, grid);
    expect_failure(args, "class 3 is out of range: the model has classes 0 .. 2", grid);
    snprintf(args, sizeof args, "sample %s -o %s --class -1", tiny, grid);
    expect_failure(args, "--class must be >= 0", grid);
    snprintf(args, sizeof args, "sample %s -o %s --ema", run_dir, grid);
    expect_failure(args, "no unet_ema/config.json", grid);
    snprintf(args, sizeof args, "sample %s -o %s --ema", tiny, grid);
    expect_failure(args, "--ema needs a run folder", grid);
    snprintf(args, sizeof args, "sample %s -o %s --scheduler-config %s", run_dir, grid, harness_tmp_path("nope.json"));
    expect_failure(args, "no such scheduler config file", grid);
    snprintf(args, sizeof args, "sample %s -o %s --size 9", run_dir, grid);
    expect_failure(args, "not divisible by 2", grid);
    expect_failure("sample", "missing arguments", NULL);
}

/* ------------------------------------------------------------------------------------------------ */
/* prepare and eval */

static char folder[600], packed[600];

/* An image folder of 6 RGB PNGs of 12x10 in two classes. */
static void make_image_folder(void) {
    snprintf(folder, sizeof folder, "%s", harness_tmp_path("imgs"));
    snprintf(packed, sizeof packed, "%s", harness_tmp_path("data.packed"));
    const char *classes[] = {"cat", "dog"};
    for (int k = 0; k < 2; k++) {
        char dir[700];
        snprintf(dir, sizeof dir, "%s/%s", folder, classes[k]);
        CHECK(mkdir(folder, 0777) == 0 || exists(folder), "mkdir %s", folder);
        CHECK(mkdir(dir, 0777) == 0, "mkdir %s", dir);
        for (int i = 0; i < 3; i++) {
            uint8_t px[12 * 10 * 3];
            for (size_t j = 0; j < sizeof px; j++) px[j] = (uint8_t)((j * 31 + (size_t)i * 70 + (size_t)k * 128) & 255);
            char path[800];
            Error err;
            snprintf(path, sizeof path, "%s/%d.png", dir, i);
            CHECK(png_write(path, px, 12, 10, 3, &err) == 0, "%s", err.message);
        }
    }
}

static void test_prepare(void) {
    make_image_folder();
    char args[4096];
    snprintf(args, sizeof args, "prepare %s --output %s --resolution 8", folder, packed);
    expect_success(args, "6 images 8x8x3, labelled");
    Dataset ds;
    Error err;
    EXPECT(dataset_open(&ds, packed, &(DatasetOptions){0}, &err) == 0, "%s", err.message);
    EXPECT(ds.count == 6 && ds.height == 8 && ds.width == 8 && ds.channels == 3 && ds.n_classes == 2 && ds.labels &&
               ds.labels[5] == 1,
           "packed file reopens: %zu images %zux%zux%zu, %zu classes", ds.count, ds.height, ds.width, ds.channels,
           ds.n_classes);
    dataset_free(&ds);
    char grey[600];
    snprintf(grey, sizeof grey, "%s", harness_tmp_path("grey.packed"));
    snprintf(args, sizeof args, "prepare %s -o %s --resolution 4 --channels 1 --resize area", folder, grey);
    expect_success(args, "6 images 4x4x1");

    snprintf(args, sizeof args, "prepare %s/none -o %s", folder, grey);
    expect_failure(args, "none", NULL);
    snprintf(args, sizeof args, "prepare %s", folder);
    expect_failure(args, "no output file: give --output FILE", NULL);
    char never[600];
    snprintf(never, sizeof never, "%s", harness_tmp_path("never.packed"));
    snprintf(args, sizeof args, "prepare %s -o %s --channels 2", folder, never);
    expect_failure(args, "--channels must be 1 or 3", never);
    snprintf(args, sizeof args, "prepare %s -o %s --resize cubic", folder, never);
    expect_failure(args, "unknown --resize 'cubic'", never);
    snprintf(args, sizeof args, "prepare %s -o %s --resolution x", folder, never);
    expect_failure(args, "--resolution expects a whole number", never);
    snprintf(args, sizeof args, "prepare %s -o %s/no/dir/x.packed", folder, harness_tmp_dir());
    expect_failure(args, "does not exist", NULL);
}

/* The number after `label` in text, NAN when absent. */
static double number_after(const char *text, const char *label) {
    const char *p = strstr(text, label);
    return p ? strtod(p + strlen(label), NULL) : NAN;
}

static void test_eval(void) {
    char args[4096];
    snprintf(args, sizeof args, "eval %s %s --samples 4 --timesteps 2 --batch 3", run_dir, packed);
    const CliRun *r = cli_run("%s", args);
    EXPECT(r->status == 0, "diffuse %s: exit %d: %s", args, r->status, r->err);
    double loss = number_after(r->out, "loss "), bpd = number_after(r->out, "bits/dim ");
    EXPECT(isfinite(loss) && loss > 0 && isfinite(bpd) && bpd > 0, "loss %g, bits/dim %g in:\n%s", loss, bpd, r->out);
    EXPECT(strstr(r->out, "4 of 6 images, 8x8x3"), "data line:\n%s", r->out);
    snprintf(args, sizeof args, "eval %s %s --samples 4 --timesteps 2 --batch 1 --json", run_dir, packed);
    r = cli_run("%s", args);
    EXPECT(r->status == 0, "diffuse %s: exit %d: %s", args, r->status, r->err);
    double bpd_json = number_after(r->out, "\"bpd\": ");
    EXPECT(fabs(bpd_json - bpd) <= 1e-3 * bpd, "--json bpd %g vs %g (another batch size):\n%s", bpd_json, bpd, r->out);
    /* The image folder itself, resized from 12x10; the class-conditional model uses its labels. */
    snprintf(args, sizeof args, "eval %s %s --samples 3 --no-bpd", tiny, folder);
    expect_success(args, "loss ");

    snprintf(args, sizeof args, "eval %s %s/none", run_dir, folder);
    expect_failure(args, "none", NULL);
    snprintf(args, sizeof args, "eval %s/none %s", run_dir, packed);
    expect_failure(args, "no such model folder", NULL);
    snprintf(args, sizeof args, "eval %s %s --timesteps 2000", run_dir, packed);
    expect_failure(args, "--timesteps 2000 exceeds the schedule's 1000 timesteps", NULL);
    snprintf(args, sizeof args, "eval %s %s --batch 0", run_dir, packed);
    expect_failure(args, "--batch must be >= 1", NULL);
    snprintf(args, sizeof args, "eval %s", run_dir);
    expect_failure(args, "missing arguments", NULL);
}

int main(int argc, char **argv) {
    (void)argc;
    if (!cli_init(argv[0])) {
        printf("RESULT 0 1\n");
        return 1;
    }
    /* One thread: the results must not depend on it, and the test machine is shared. */
    setenv("OMP_NUM_THREADS", "1", 1);
    /* The run folder every sampling test uses: an unconditional 8x8 RGB model. */
    snprintf(run_dir, sizeof run_dir, "%s", harness_tmp_path("run"));
    char args[1024];
    snprintf(args, sizeof args, "init tests/fixtures/unet_ddpm.json %s --pipeline --seed 1", run_dir);
    if (!expect_success(args, "run folder")) return harness_finish();
    RUN(test_sample_outputs);
    RUN(test_sample_same_images_any_batch);
    RUN(test_sample_noise_file);
    RUN(test_sample_bad_input);
    RUN(test_prepare);
    RUN(test_eval);
    return harness_finish();
}
