/* The sampling pipeline layer: PNG writing (single images and grids decode back to the same pixels),
 * DDPMPipeline's conversion to 8 bits against diffusers' formula (fixture), image generation (the same
 * images whatever the batch size, noise keyed by the global image index, class labels, trajectories),
 * explicit noise from a noise file reproducing a hand-driven sampler_run, run folders (writing, resolving,
 * EMA weights, scheduler configs converted as diffusers' from_config does) and evaluation. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/alloc.h"
#include "core/threads.h"
#include "data/image_decode.h"
#include "harness.h"
#include "io/model_folder.h"
#include "io/png_write.h"
#include "pipeline/evaluate.h"
#include "pipeline/generate.h"
#include "pipeline/noise_file.h"
#include "pipeline/pipeline_folder.h"

/* ------------------------------------------------------------------------------------------------ */
/* Models */

/* The class-conditional fixture model (3 classes, 8x8 RGB). */
static void load_tiny(UNet *net) {
    PipelineSource src;
    Error err;
    CHECK(pipeline_source_resolve(&src, "tests/fixtures/model_tiny", NULL, &err) == 0, "%s", err.message);
    CHECK(pipeline_source_load_unet(net, &src, &err) == 0, "%s", err.message);
}

/* An unconditional 8x8 RGB model with random weights. */
static void init_unconditional(UNet *net, uint64_t seed) {
    UNetConfig cfg;
    Error err;
    CHECK(model_config_load(&cfg, "tests/fixtures/unet_ddpm.json", &err) == 0, "%s", err.message);
    CHECK(unet_init(net, &cfg, false, &err) == 0, "%s", err.message);
    unet_init_weights(net, seed);
}

static bool floats_equal(const float *a, const float *b, size_t n) { return memcmp(a, b, n * sizeof(float)) == 0; }

/* ------------------------------------------------------------------------------------------------ */
/* PNG */

static void test_png_single_roundtrip(void) {
    for (size_t c = 1; c <= 3; c += 2) {
        size_t h = 5, w = 7;
        uint8_t pixels[5 * 7 * 3];
        for (size_t i = 0; i < h * w * c; i++) pixels[i] = (uint8_t)(i * 37 + c);
        Error err;
        const char *path = harness_tmp_path("single.png");
        EXPECT(png_write(path, pixels, h, w, c, &err) == 0, "%s", err.message);
        DecodedImage img;
        EXPECT(image_decode_file(&img, path, &err) == 0, "%s", err.message);
        EXPECT(img.height == h && img.width == w && img.channels == c, "decoded %zux%zux%zu", img.height, img.width,
               img.channels);
        EXPECT(memcmp(img.pixels, pixels, h * w * c) == 0, "pixels differ after a round trip (%zu channels)", c);
        image_decode_free(&img);
    }
    Error err;
    uint8_t *png;
    size_t n;
    EXPECT(png_encode(&png, &n, (uint8_t[4]){0}, 2, 2, 2, &err) == -1 && strstr(err.message, "2 channels"),
           "two channels refused: %s", err.message);
    EXPECT(png_write(harness_tmp_path("no/such/dir/x.png"), (uint8_t[1]){0}, 1, 1, 1, &err) == -1 &&
               strstr(err.message, "cannot create"),
           "unwritable path: %s", err.message);
}

static void test_png_grid_layout(void) {
    /* 5 RGB images of 3x4 in a near-square grid: 3 columns, 2 rows, a 2-pixel gap of level 255. */
    size_t n = 5, h = 3, w = 4, c = 3, gap = 2;
    uint8_t images[5 * 3 * 4 * 3];
    for (size_t i = 0; i < sizeof images; i++) images[i] = (uint8_t)((i * 7) % 200);
    PngGrid grid = {.n_images = n, .height = h, .width = w, .channels = c, .gap = gap, .background = 255};
    size_t out_h, out_w;
    PngGrid g = grid;
    png_grid_size(&g, &out_h, &out_w);
    EXPECT(g.n_cols == 3 && out_h == 2 * h + 3 * gap && out_w == 3 * w + 4 * gap, "grid %zu cols, %zux%zu", g.n_cols,
           out_h, out_w);
    Error err;
    const char *path = harness_tmp_path("grid.png");
    EXPECT(png_write_grid(path, &grid, images, &err) == 0, "%s", err.message);
    DecodedImage img;
    EXPECT(image_decode_file(&img, path, &err) == 0, "%s", err.message);
    EXPECT(img.height == out_h && img.width == out_w && img.channels == c, "decoded %zux%zux%zu", img.height,
           img.width, img.channels);
    size_t bad = 0, background = 0;
    for (size_t y = 0; y < out_h && img.pixels; y++) {
        for (size_t x = 0; x < out_w; x++) {
            size_t row = y < gap ? SIZE_MAX : (y - gap) / (h + gap), col = x < gap ? SIZE_MAX : (x - gap) / (w + gap);
            size_t yy = y < gap ? 0 : (y - gap) % (h + gap), xx = x < gap ? 0 : (x - gap) % (w + gap);
            size_t i = row * 3 + col;
            bool inside = row != SIZE_MAX && col != SIZE_MAX && yy < h && xx < w && i < n;
            for (size_t k = 0; k < c; k++) {
                uint8_t got = img.pixels[(y * out_w + x) * c + k];
                uint8_t want = inside ? images[((i * h + yy) * w + xx) * c + k] : 255;
                bad += got != want;
                background += !inside;
            }
        }
    }
    EXPECT(bad == 0, "%zu grid pixels differ from the images and the gap", bad);
    EXPECT(background > (size_t)(w * h * c), "the empty sixth cell and the gaps are background (%zu values)",
           background);
    image_decode_free(&img);
}

/* ------------------------------------------------------------------------------------------------ */
/* Conversion to 8 bits */

static void test_uint8_matches_diffusers(void) {
    Fixture *fx = fixture_open("pipeline");
    const SafeTensorInfo *t = safetensors_find(&fx->st, "uint8.x");
    CHECK(t, "uint8.x missing");
    size_t n = t->numel;
    float *x = fixture_floats(fx, "uint8.x", n), *unit_want = fixture_floats(fx, "uint8.unit", n);
    float *levels_want = fixture_floats(fx, "uint8.levels", n);
    float *unit = xmalloc(n * sizeof(float));
    uint8_t *levels = xmalloc(n);
    generate_to_unit(unit, x, n);
    generate_to_uint8(levels, x, n);
    EXPECT(floats_equal(unit, unit_want, n), "(x / 2 + 0.5).clamp(0, 1) differs from torch");
    size_t bad = 0, first = n;
    for (size_t i = 0; i < n; i++)
        if (levels[i] != (uint8_t)levels_want[i]) bad++, first = first < n ? first : i;
    EXPECT(bad == 0, "%zu of %zu levels differ from numpy_to_pil (first x = %.9g: %u, want %u)", bad, n,
           first < n ? x[first] : 0.0, first < n ? levels[first] : 0, first < n ? (unsigned)levels_want[first] : 0);
    uint8_t nan_level;
    generate_to_uint8(&nan_level, (float[1]){NAN}, 1);
    EXPECT(nan_level == 0, "NaN -> %u", nan_level);
    free(unit);
    free(levels);
    free(x);
    free(unit_want);
    free(levels_want);
    fixture_close(fx);
}

/* ------------------------------------------------------------------------------------------------ */
/* Generation */

/* Image i does not depend on the batch it is sampled in, up to float rounding: the time-embedding linear
 * layer runs as one sgemm over the batch, and oneDNN's sgemm rounds a row differently for different row
 * counts (about 1e-7 relative per call). Runs with the same batch size are identical bit for bit. */
#define BATCH_TOLERANCE 1e-4

static void test_images_independent_of_batch(void) {
    UNet net;
    init_unconditional(&net, 11);
    SchedulerConfig sched = scheduler_config_default(SAMPLER_DDPM);
    size_t D = 8 * 8 * 3, n = 5;
    float *all = alloc_floats(n * D), *split = alloc_floats(n * D), *tail = alloc_floats(2 * D);
    Error err;
    GenerateOptions opt = {.n_images = n, .num_inference_steps = 8, .seed = 3, .class_label = -1};
    EXPECT(generate_images(all, &net, &sched, &opt, &err) == 0, "%s", err.message);
    EXPECT(expect_all_finite("images", all, n * D), "finite");
    EXPECT(max_abs(all, n * D) > 0.05, "the images are not all zero");
    EXPECT(generate_images(split, &net, &sched, &opt, &err) == 0 && floats_equal(split, all, n * D),
           "the same options give the same images bit for bit");
    for (size_t batch = 1; batch <= 3; batch++) {
        opt.batch_size = batch;
        EXPECT(generate_images(split, &net, &sched, &opt, &err) == 0, "%s", err.message);
        char what[64];
        snprintf(what, sizeof what, "batches of %zu", batch);
        expect_close(what, split, all, n * D, BATCH_TOLERANCE, 0);
    }
    /* Images 3 and 4 alone, keyed by their global index. */
    GenerateOptions later = {.n_images = 2, .num_inference_steps = 8, .seed = 3, .first_image = 3, .class_label = -1};
    EXPECT(generate_images(tail, &net, &sched, &later, &err) == 0, "%s", err.message);
    expect_close("images 3..4 generated on their own", tail, all + 3 * D, 2 * D, BATCH_TOLERANCE, 0);
    /* Another seed, other images. */
    opt.seed = 4;
    EXPECT(generate_images(split, &net, &sched, &opt, &err) == 0, "%s", err.message);
    EXPECT(max_abs(split, D) > 0 && fabs(split[0] - all[0]) + fabs(split[D] - all[D]) > 1e-3,
           "seed 4 gives other images than seed 3");
    alloc_free(all);
    alloc_free(split);
    alloc_free(tail);
    unet_free(&net);
}

static void test_class_labels(void) {
    UNet net;
    load_tiny(&net);
    SchedulerConfig sched = scheduler_config_default(SAMPLER_DDIM);
    size_t D = 8 * 8 * 3, n = 4;
    float *cycled = alloc_floats(n * D), *fixed = alloc_floats(n * D), *one = alloc_floats(D);
    Error err;
    GenerateOptions opt = {.n_images = n, .num_inference_steps = 4, .seed = 1, .class_label = -1, .batch_size = 3};
    EXPECT(generate_images(cycled, &net, &sched, &opt, &err) == 0, "%s", err.message);
    /* Image 3 gets class 3 mod 3 = 0: the same as image 3 generated with --class 0. */
    GenerateOptions single = {.n_images = 1, .num_inference_steps = 4, .seed = 1, .first_image = 3, .class_label = 0};
    EXPECT(generate_images(one, &net, &sched, &single, &err) == 0, "%s", err.message);
    expect_close("image 3 has class 0", one, cycled + 3 * D, D, BATCH_TOLERANCE, 0);
    opt.class_label = 2;
    EXPECT(generate_images(fixed, &net, &sched, &opt, &err) == 0, "%s", err.message);
    EXPECT(floats_equal(fixed + 2 * D, cycled + 2 * D, D), "image 2 has class 2 either way");
    EXPECT(!floats_equal(fixed, cycled, D), "image 0 differs between class 0 and class 2");
    opt.class_label = 3;
    EXPECT(generate_images(fixed, &net, &sched, &opt, &err) == -1 && strstr(err.message, "classes 0 .. 2"),
           "class 3 out of range: %s", err.message);
    alloc_free(cycled);
    alloc_free(fixed);
    alloc_free(one);
    unet_free(&net);
}

static void test_validation_errors(void) {
    UNet net;
    init_unconditional(&net, 2);
    SchedulerConfig sched = scheduler_config_default(SAMPLER_DDPM);
    Error err;
    GenerateOptions opt = {.n_images = 2, .num_inference_steps = 4, .class_label = 0};
    EXPECT(generate_validate(&net, &sched, &opt, &err) == -1 && strstr(err.message, "unconditional"),
           "class on an unconditional model: %s", err.message);
    opt.class_label = -1;
    opt.num_inference_steps = 1001;
    EXPECT(generate_validate(&net, &sched, &opt, &err) == -1 && strstr(err.message, "1001 steps exceed"),
           "too many steps: %s", err.message);
    opt.num_inference_steps = 4;
    opt.height = opt.width = 9;
    EXPECT(generate_validate(&net, &sched, &opt, &err) == -1 && strstr(err.message, "not divisible by 2"),
           "odd size: %s", err.message);
    opt.height = opt.width = 0;
    NoiseFile nf = {.n_images = 1, .height = 8, .width = 8, .channels = 3};
    opt.noise = &nf;
    EXPECT(generate_validate(&net, &sched, &opt, &err) == -1 && strstr(err.message, "holds 1 images"),
           "noise for too few images: %s", err.message);
    nf.n_images = 2, nf.channels = 1;
    EXPECT(generate_validate(&net, &sched, &opt, &err) == -1 && strstr(err.message, "8x8x1"),
           "noise of the wrong shape: %s", err.message);
    EXPECT(generate_default_steps(SAMPLER_DDPM, 1000) == 1000 && generate_default_steps(SAMPLER_DDIM, 1000) == 50 &&
               generate_default_steps(SAMPLER_DPM_SOLVER, 1000) == 20 && generate_default_steps(SAMPLER_DDPM, 100) == 100,
           "default steps");
    unet_free(&net);
}

static void test_trajectory(void) {
    EXPECT(generate_trajectory_step(0, 5, 10) == 0 && generate_trajectory_step(1, 5, 10) == 3 &&
               generate_trajectory_step(2, 5, 10) == 5 && generate_trajectory_step(4, 5, 10) == 10 &&
               generate_trajectory_step(1, 3, 3) == 2,
           "trajectory steps: %zu %zu %zu %zu %zu", generate_trajectory_step(0, 5, 10), generate_trajectory_step(1, 5, 10),
           generate_trajectory_step(2, 5, 10), generate_trajectory_step(4, 5, 10), generate_trajectory_step(1, 3, 3));
    UNet net;
    init_unconditional(&net, 5);
    SchedulerConfig sched = scheduler_config_default(SAMPLER_DDPM);
    size_t D = 8 * 8 * 3, n = 3, M = 2, F = 4;
    float *images = alloc_floats(n * D), *frames = alloc_floats(M * F * D), *x_T = alloc_floats(n * D);
    Error err;
    GenerateOptions opt = {.n_images = n, .batch_size = 1, .num_inference_steps = 6, .seed = 9, .class_label = -1,
                           .trajectory = frames, .trajectory_images = M, .trajectory_frames = F};
    EXPECT(generate_images(images, &net, &sched, &opt, &err) == 0, "%s", err.message);
    sampler_initial_noise(x_T, n, D, 9, 0);
    for (size_t i = 0; i < M; i++) {
        EXPECT(floats_equal(frames + (i * F) * D, x_T + i * D, D), "image %zu: frame 0 is x_T", i);
        EXPECT(floats_equal(frames + (i * F + F - 1) * D, images + i * D, D), "image %zu: the last frame is x_0", i);
        EXPECT(!floats_equal(frames + (i * F + 1) * D, x_T + i * D, D), "image %zu: frame 1 has moved", i);
    }
    EXPECT(generate_write_grid(harness_tmp_path("trajectory.png"), frames, M * F, 8, 8, 3, F, &err) == 0, "%s",
           err.message);
    DecodedImage img;
    EXPECT(image_decode_file(&img, harness_tmp_path("trajectory.png"), &err) == 0, "%s", err.message);
    EXPECT(img.height == M * 8 + (M + 1) * 2 && img.width == F * 8 + (F + 1) * 2, "trajectory grid %zux%zu",
           img.height, img.width);
    /* Pixel (0, 0) of the last frame of image 1, as 8 bits. */
    uint8_t want[3];
    generate_to_uint8(want, images + D, 3);
    size_t y = 2 + 1 * (8 + 2), x = 2 + (F - 1) * (8 + 2);
    EXPECT(img.pixels && memcmp(img.pixels + (y * img.width + x) * 3, want, 3) == 0, "trajectory pixel");
    image_decode_free(&img);
    opt.trajectory_frames = 8;
    EXPECT(generate_images(images, &net, &sched, &opt, &err) == -1 && strstr(err.message, "2 .. 7 frames"),
           "too many frames: %s", err.message);
    alloc_free(images);
    alloc_free(frames);
    alloc_free(x_T);
    unet_free(&net);
}

/* ------------------------------------------------------------------------------------------------ */
/* Explicit noise */

static void test_noise_file_reproduces_sampler_run(void) {
    UNet net;
    init_unconditional(&net, 21);
    size_t D = 8 * 8 * 3, n = 3, steps = 5;
    NoiseFile nf = {.n_images = 4, .height = 8, .width = 8, .channels = 3, .n_steps = steps};
    nf.x_T = alloc_floats(nf.n_images * D);
    nf.noise = alloc_floats(steps * nf.n_images * D);
    fill_normal(nf.x_T, nf.n_images * D, 100);
    fill_normal(nf.noise, steps * nf.n_images * D, 101);
    Error err;
    const char *path = harness_tmp_path("noise.safetensors");
    EXPECT(noise_file_write(path, &nf, &err) == 0, "%s", err.message);
    NoiseFile back;
    EXPECT(noise_file_read(&back, path, &err) == 0, "%s", err.message);
    EXPECT(back.n_images == 4 && back.height == 8 && back.width == 8 && back.channels == 3 && back.n_steps == steps &&
               floats_equal(back.x_T, nf.x_T, 4 * D) && floats_equal(back.noise, nf.noise, steps * 4 * D),
           "noise file round trip");

    for (int k = 0; k < 2; k++) {
        SamplerKind kind = k == 0 ? SAMPLER_DDPM : SAMPLER_DDIM;
        double eta = k == 0 ? 0.0 : 0.7;
        SchedulerConfig sched = scheduler_config_default(kind);
        /* By hand: images 0-1, then image 2, each a sampler_run with the file's buffers from its first image. */
        Sampler sm;
        EXPECT(sampler_init(&sm, &sched, &(SamplerOptions){.num_inference_steps = steps, .eta = eta}, &err) == 0,
               "%s", err.message);
        float *want = alloc_floats(n * D), *got = alloc_floats(n * D);
        memcpy(want, back.x_T, n * D * sizeof(float));
        UNetDenoiser den;
        unet_denoiser_init(&den, &net, 8, 8);
        for (size_t first = 0; first < n; first += 2) {
            size_t nb = n - first < 2 ? n - first : 2;
            NoiseSource src = noise_source_buffers(back.noise + first * D, back.n_steps, back.n_images * D);
            SamplerRun run = {.model = unet_denoiser_fn, .model_ctx = &den, .noise = &src};
            EXPECT(sampler_run(&sm, want + first * D, nb, D, &run, &err) == 0, "%s", err.message);
        }
        unet_denoiser_free(&den);
        sampler_free(&sm);
        /* Through generate_images, in batches of 2: the second batch reads the file from image 2 on. */
        GenerateOptions opt = {.n_images = n, .batch_size = 2, .num_inference_steps = steps, .eta = eta,
                               .class_label = -1, .noise = &back};
        EXPECT(generate_images(got, &net, &sched, &opt, &err) == 0, "%s", err.message);
        EXPECT(floats_equal(got, want, n * D), "%s with the file's noise differs from sampler_run",
               k == 0 ? "DDPM" : "DDIM eta 0.7");
        /* The file's noise matters: the generator's gives other images. */
        opt.noise = NULL;
        EXPECT(generate_images(got, &net, &sched, &opt, &err) == 0, "%s", err.message);
        EXPECT(!floats_equal(got, want, n * D), "the generator's noise differs from the file's");
        alloc_free(want);
        alloc_free(got);
    }
    /* A DDPM run of more steps than the file holds. */
    SchedulerConfig ddpm = scheduler_config_default(SAMPLER_DDPM);
    float *images = alloc_floats(n * D);
    GenerateOptions opt = {.n_images = n, .num_inference_steps = steps + 2, .class_label = -1, .noise = &back};
    EXPECT(generate_images(images, &net, &ddpm, &opt, &err) == -1 && strstr(err.message, "holds 5 steps"),
           "too few noise steps: %s", err.message);
    alloc_free(images);
    noise_file_free(&back);
    noise_file_free(&nf);
    unet_free(&net);
}

static void test_noise_file_errors(void) {
    Error err;
    NoiseFile nf;
    float data[2 * 2 * 2 * 1 * 3] = {0};
    SafeTensorsEntry x = {.name = "x_T", .ndim = 4, .shape = {2, 2, 1, 3}, .data = data};
    SafeTensorsEntry wrong_steps = {.name = "noise", .ndim = 5, .shape = {1, 2, 1, 2, 3}, .data = data};
    SafeTensorsEntry extra = {.name = "x_t", .ndim = 1, .shape = {4}, .data = data};
    SafeTensorsEntry flat = {.name = "x_T", .ndim = 1, .shape = {12}, .data = data};
    const char *path = harness_tmp_path("bad_noise.safetensors");
    struct {
        SafeTensorsEntry entries[2];
        size_t n;
        const char *expected;
    } cases[] = {
        {{wrong_steps}, 1, "no \"x_T\" tensor"},
        {{x, extra}, 2, "unexpected tensor 'x_t'"},
        {{flat}, 1, "4 non-zero dimensions"},
        {{x, wrong_steps}, 2, "\"noise\" must be (steps, 2, 2, 1, 3)"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        CHECK(safetensors_write(path, cases[i].entries, cases[i].n, NULL, 0, &err) == 0, "%s", err.message);
        EXPECT(noise_file_read(&nf, path, &err) == -1 && strstr(err.message, cases[i].expected) &&
                   strstr(err.message, "bad_noise.safetensors"),
               "case %zu: %s", i, err.message);
    }
    EXPECT(noise_file_read(&nf, harness_tmp_path("missing.safetensors"), &err) == -1, "missing file");
}

/* ------------------------------------------------------------------------------------------------ */
/* Run folders and scheduler configs */

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    CHECK(f, "cannot write %s", path);
    fputs(text, f);
    fclose(f);
}

static void test_run_folder(void) {
    UNet net;
    init_unconditional(&net, 31);
    float *ema = alloc_floats(net.n_params);
    for (size_t i = 0; i < net.n_params; i++) ema[i] = 0.5f * net.params[i];
    SchedulerConfig sched = scheduler_config_default(SAMPLER_DDPM);
    sched.variance_type = VARIANCE_FIXED_LARGE;
    Error err;
    char run[600];
    snprintf(run, sizeof run, "%s", harness_tmp_path("run"));
    EXPECT(pipeline_folder_save(run, &net, ema, &sched, &err) == 0, "%s", err.message);

    PipelineSource src;
    EXPECT(pipeline_source_resolve(&src, run, NULL, &err) == 0, "%s", err.message);
    EXPECT(src.is_pipeline && strstr(src.model_dir, "run/unet") && strstr(src.scheduler_path, "scheduler_config.json"),
           "resolved %s, %s", src.model_dir, src.scheduler_path);
    SchedulerConfig back;
    EXPECT(pipeline_source_scheduler(&back, &src, SAMPLER_DDPM, &err) == 0 && back.variance_type == VARIANCE_FIXED_LARGE,
           "scheduler read back");
    UNet loaded;
    EXPECT(pipeline_source_load_unet(&loaded, &src, &err) == 0, "%s", err.message);
    EXPECT(loaded.n_params == net.n_params && floats_equal(loaded.params, net.params, net.n_params), "unet/ weights");
    unet_free(&loaded);
    EXPECT(pipeline_source_resolve(&src, run, &(PipelineSourceOptions){.ema = true}, &err) == 0, "%s", err.message);
    EXPECT(pipeline_source_load_unet(&loaded, &src, &err) == 0, "%s", err.message);
    EXPECT(floats_equal(loaded.params, ema, net.n_params), "unet_ema/ weights");
    unet_free(&loaded);

    char path[700], text[1024];
    snprintf(path, sizeof path, "%s/model_index.json", run);
    FILE *f = fopen(path, "r");
    size_t len = f ? fread(text, 1, sizeof text - 1, f) : 0;
    text[len] = '\0';
    if (f) fclose(f);
    EXPECT(strstr(text, "\"_class_name\": \"DDPMPipeline\"") && strstr(text, "\"DDPMScheduler\"") &&
               strstr(text, "\"UNet2DModel\""),
           "model_index.json: %s", text);

    /* Bare folders, and what is missing. */
    EXPECT(pipeline_source_resolve(&src, "tests/fixtures/model_tiny", NULL, &err) == 0 && !src.is_pipeline &&
               src.scheduler_path[0] == '\0',
           "a bare model folder");
    EXPECT(pipeline_source_resolve(&src, "tests/fixtures/model_tiny", &(PipelineSourceOptions){.ema = true}, &err) == -1 &&
               strstr(err.message, "--ema needs a run folder"),
           "--ema on a bare folder: %s", err.message);
    EXPECT(pipeline_source_resolve(&src, harness_tmp_path("nothing"), NULL, &err) == -1 &&
               strstr(err.message, "no such model folder"),
           "missing folder: %s", err.message);
    EXPECT(pipeline_source_resolve(&src, "tests/fixtures/model_tiny/config.json", NULL, &err) == -1 &&
               strstr(err.message, "is a file"),
           "a file: %s", err.message);
    char plain[700];
    snprintf(plain, sizeof plain, "%s", harness_tmp_path("run_without_ema"));
    EXPECT(pipeline_folder_save(plain, &net, NULL, &sched, &err) == 0, "%s", err.message);
    EXPECT(pipeline_source_resolve(&src, plain, &(PipelineSourceOptions){.ema = true}, &err) == -1 &&
               strstr(err.message, "no unet_ema/"),
           "--ema without EMA weights: %s", err.message);
    alloc_free(ema);
    unet_free(&net);
}

/* The options each class ends up with when diffusers' Class.from_config reads a file (checked with
 * diffusers 0.42.1: DPMSolverMultistepScheduler.from_config(DDPMScheduler.from_pretrained(dir).config)). */
static void test_scheduler_from_config(void) {
    Error err;
    char saved_ddpm[600], sparse_ddpm[600], learned[600];
    snprintf(saved_ddpm, sizeof saved_ddpm, "%s", harness_tmp_path("saved_ddpm.json"));
    snprintf(sparse_ddpm, sizeof sparse_ddpm, "%s", harness_tmp_path("sparse_ddpm.json"));
    snprintf(learned, sizeof learned, "%s", harness_tmp_path("learned.json"));
    /* What DDPMScheduler().save_pretrained writes: every key, spacing "leading". */
    SchedulerConfig ddpm = scheduler_config_default(SAMPLER_DDPM);
    ddpm.clip_sample = false;
    EXPECT(scheduler_config_write(&ddpm, saved_ddpm, &err) == 0, "%s", err.message);
    write_text(sparse_ddpm, "{\"_class_name\": \"DDPMScheduler\", \"num_train_timesteps\": 500, \"clip_sample\": false}");
    write_text(learned, "{\"_class_name\": \"DDPMScheduler\", \"variance_type\": \"learned_range\"}");

    SchedulerConfig c;
    EXPECT(scheduler_config_read_as(&c, saved_ddpm, SAMPLER_DPM_SOLVER, &err) == 0, "%s", err.message);
    EXPECT(c.kind == SAMPLER_DPM_SOLVER && c.timestep_spacing == TIMESTEP_SPACING_LEADING &&
               c.variance_type != VARIANCE_LEARNED_RANGE && c.solver_order == 2,
           "DPM-Solver from a saved DDPM config keeps leading spacing, no variance channels");
    scheduler_config_free(&c);
    EXPECT(scheduler_config_read_as(&c, sparse_ddpm, SAMPLER_DPM_SOLVER, &err) == 0, "%s", err.message);
    EXPECT(c.timestep_spacing == TIMESTEP_SPACING_LINSPACE && c.schedule.num_train_timesteps == 500,
           "DPM-Solver from a file without timestep_spacing: its own linspace");
    scheduler_config_free(&c);
    EXPECT(scheduler_config_read_as(&c, saved_ddpm, SAMPLER_DDIM, &err) == 0, "%s", err.message);
    EXPECT(c.kind == SAMPLER_DDIM && !c.clip_sample && c.set_alpha_to_one &&
               c.timestep_spacing == TIMESTEP_SPACING_LEADING,
           "DDIM from DDPM: clip_sample carries, set_alpha_to_one its default");
    scheduler_config_free(&c);
    EXPECT(scheduler_config_read_as(&c, learned, SAMPLER_DPM_SOLVER, &err) == 0 &&
               c.variance_type == VARIANCE_LEARNED_RANGE,
           "learned_range carries to DPM-Solver");
    scheduler_config_free(&c);
    EXPECT(scheduler_config_read_as(&c, learned, SAMPLER_DDIM, &err) == 0, "DDIM ignores DDPM's variance_type: %s",
           err.message);
    scheduler_config_free(&c);
    /* A bare model folder: from_config of a default DDPMScheduler gives each class its defaults. */
    PipelineSource src;
    EXPECT(pipeline_source_resolve(&src, "tests/fixtures/model_tiny", NULL, &err) == 0, "%s", err.message);
    EXPECT(pipeline_source_scheduler(&c, &src, SAMPLER_DPM_SOLVER, &err) == 0 &&
               c.timestep_spacing == TIMESTEP_SPACING_LINSPACE && c.schedule.num_train_timesteps == 1000,
           "bare folder: DPM-Solver defaults");
    scheduler_config_free(&c);
    EXPECT(pipeline_source_resolve(&src, "tests/fixtures/model_tiny",
                                   &(PipelineSourceOptions){.scheduler_config = sparse_ddpm}, &err) == 0 &&
               pipeline_source_scheduler(&c, &src, SAMPLER_DDPM, &err) == 0 && c.schedule.num_train_timesteps == 500,
           "an explicit scheduler config: %s", err.message);
    scheduler_config_free(&c);
}

/* ------------------------------------------------------------------------------------------------ */
/* Evaluation */

static void make_dataset(Dataset *ds, size_t count, bool labels) {
    CHECK(dataset_alloc(ds, "test images", count, 8, 8, 3, labels, NULL) == 0, "dataset_alloc");
    for (size_t i = 0; i < count * 8 * 8 * 3; i++) ds->owned_pixels[i] = (uint8_t)((i * 2654435761u) >> 24);
    for (size_t i = 0; labels && i < count; i++) ds->labels[i] = (int)(i % 3);
    if (labels) dataset_set_class_names(ds, (const char *const[]){"a", "b", "c"}, 3);
}

static void test_evaluate(void) {
    UNet net;
    init_unconditional(&net, 41);
    SchedulerConfig sched = scheduler_config_default(SAMPLER_DDPM);
    Dataset ds;
    make_dataset(&ds, 7, false);
    Error err;
    EvaluateResult a, b;
    EvaluateOptions opt = {.n_images = 5, .batch_size = 5, .seed = 2, .n_timesteps = 3};
    EXPECT(evaluate_model(&a, &net, &sched, &ds, &opt, &err) == 0, "%s", err.message);
    opt.batch_size = 2;
    EXPECT(evaluate_model(&b, &net, &sched, &ds, &opt, &err) == 0, "%s", err.message);
    EXPECT(a.n_images == 5 && isfinite(a.loss_mean) && a.loss_mean > 0 && a.loss_std_error > 0 &&
               isfinite(a.bpd_mean) && a.bpd_mean > 0 && a.bpd_std_error > 0 && a.prior_bpd_mean > 0,
           "loss %g +- %g, bpd %g +- %g, prior %g", a.loss_mean, a.loss_std_error, a.bpd_mean, a.bpd_std_error,
           a.prior_bpd_mean);
    EXPECT(fabs(a.loss_mean - b.loss_mean) <= 1e-5 * a.loss_mean && fabs(a.bpd_mean - b.bpd_mean) <= 1e-5 * a.bpd_mean,
           "batch size changes the results: loss %.9g / %.9g, bpd %.9g / %.9g", a.loss_mean, b.loss_mean, a.bpd_mean,
           b.bpd_mean);
    /* The loss of a random model is about the variance of its output plus that of ε (1). */
    EXPECT(a.loss_mean > 0.5 && a.loss_mean < 20, "loss %g of a random model", a.loss_mean);
    opt.skip_bpd = true;
    EXPECT(evaluate_model(&b, &net, &sched, &ds, &opt, &err) == 0 && b.bpd_mean == 0 &&
               fabs(b.loss_mean - a.loss_mean) <= 1e-6 * a.loss_mean,
           "loss only: %g", b.loss_mean);
    unet_free(&net);
    dataset_free(&ds);

    /* A class-conditional model needs labels. */
    load_tiny(&net);
    make_dataset(&ds, 4, false);
    EXPECT(evaluate_model(&a, &net, &sched, &ds, &opt, &err) == -1 && strstr(err.message, "no labels"),
           "unlabelled data: %s", err.message);
    dataset_free(&ds);
    make_dataset(&ds, 4, true);
    EXPECT(evaluate_model(&a, &net, &sched, &ds, &opt, &err) == 0 && isfinite(a.loss_mean), "%s", err.message);
    dataset_free(&ds);
    unet_free(&net);
}

int main(void) {
    threads_set(1);
    RUN(test_png_single_roundtrip);
    RUN(test_png_grid_layout);
    RUN(test_uint8_matches_diffusers);
    RUN(test_images_independent_of_batch);
    RUN(test_class_labels);
    RUN(test_validation_errors);
    RUN(test_trajectory);
    RUN(test_noise_file_reproduces_sampler_run);
    RUN(test_noise_file_errors);
    RUN(test_run_folder);
    RUN(test_scheduler_from_config);
    RUN(test_evaluate);
    return harness_finish();
}
