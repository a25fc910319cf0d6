/* Training and sampling speed of the U-Net on synthetic data: one training step is what `diffuse train`
 * runs (q_sample -> forward -> MSE -> backward -> AdamW step), one sampling step a forward pass plus a
 * DDPM update on a model without gradients, planned for forward only, as `diffuse sample` runs it (the
 * training plan keeps every activation for backward: its forward was 5 % slower on fashion-mnist b64).
 * Prints one JSON line per measurement with the median seconds of several steps after a warm-up,
 * images/s, achieved GFLOP/s (conv + linear + attention matmuls as direct computation counts them,
 * training = 3x forward: an effective rate, since Winograd convolutions do fewer multiplies) and the peak
 * RSS of the process; tools/bench_pytorch.py measures diffusers on the same configuration and
 * scripts/bench-train prints the two side by side.
 *   build/bench/train --model ddpm-cifar10 --batch 16 [--steps 5] [--threads N] [--sample-only]
 *                     [--precision fp32|bf16] [--min-seconds S]
 * --steps is the least number of steps measured, --min-seconds the least time they take (more steps when
 * the warm-up step says they would take less).
 * Run one configuration per process: peak RSS is the process's. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "bench.h"
#include "core/alloc.h"
#include "core/rng.h"
#include "diffusion/objective.h"
#include "diffusion/schedule.h"
#include "io/model_folder.h"
#include "nn/unet.h"
#include "nn/unet_cost.h"
#include "ops/conv2d.h"
#include "ops/precision.h"
#include "optim/adamw.h"

typedef struct Bench {
    UNet net;
    Schedule schedule;
    size_t batch, numel;
    float *x0, *noise, *x_t, *pred, *dpred, *m, *v, *timesteps;
    int64_t *t;
    int *labels;
    long step;
} Bench;

static void train_step(void *ctx) {
    Bench *b = ctx;
    b->step++;
    objective_sample_timesteps(b->t, b->batch, &b->schedule, 1, (uint64_t)b->step, 0);
    objective_sample_noise(b->noise, b->batch, b->numel, 1, (uint64_t)b->step, 0);
    for (size_t i = 0; i < b->batch; i++) b->timesteps[i] = (float)b->t[i];
    objective_q_sample(b->x_t, b->x0, b->noise, b->t, b->batch, b->numel, &b->schedule);
    unet_zero_grads(&b->net);
    unet_forward(&b->net, b->pred, b->x_t, b->timesteps, b->labels, NULL);
    objective_loss_forward(b->pred, b->noise, NULL, b->batch, b->numel);
    memset(b->dpred, 0, b->batch * b->numel * sizeof(float));
    objective_loss_backward(b->dpred, b->pred, b->noise, NULL, b->batch, b->numel, 1.0);
    unet_backward(&b->net, NULL, b->dpred);
    adamw_step(b->net.params, b->net.grads, b->m, b->v, b->net.n_params, adamw_diffusers_defaults(), 1e-4f, b->step);
}

/* The model with the seed-1 weights, planned for b->batch images. */
static int net_init(Bench *b, const UNetConfig *cfg, bool with_grads, Error *err) {
    if (unet_init(&b->net, cfg, with_grads, err)) return -1;
    unet_init_weights(&b->net, 1);
    return unet_plan(&b->net, b->batch, (size_t)cfg->sample_height, (size_t)cfg->sample_width, err);
}

static void sample_step(void *ctx) {
    Bench *b = ctx;
    for (size_t i = 0; i < b->batch; i++) b->timesteps[i] = 500;
    unet_forward(&b->net, b->pred, b->x_t, b->timesteps, b->labels, NULL);
    /* The DDPM update is a few elementwise passes: x = a x + c eps + sigma z. */
    for (size_t i = 0; i < b->batch * b->numel; i++) b->x_t[i] = 0.99f * b->x_t[i] - 0.01f * b->pred[i];
}

int main(int argc, char **argv) {
    const char *model = "ddpm-cifar10";
    int batch = 16, steps = 5, threads = 0, size = 0;
    double min_seconds = 0;
    bool sample_only = false;
    const char *precision_name = "fp32";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--model") && i + 1 < argc) model = argv[++i];
        else if (!strcmp(argv[i], "--batch") && i + 1 < argc) batch = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--steps") && i + 1 < argc) steps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--min-seconds") && i + 1 < argc) min_seconds = atof(argv[++i]);
        else if (!strcmp(argv[i], "--size") && i + 1 < argc) size = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--sample-only")) sample_only = true;
        else if (!strcmp(argv[i], "--precision") && i + 1 < argc) precision_name = argv[++i];
        else {
            fprintf(stderr,
                    "usage: %s [--model M] [--batch N] [--steps N] [--threads N] [--size N] [--sample-only]"
                    " [--precision fp32|bf16] [--min-seconds S]\n",
                    argv[0]);
            return 1;
        }
    }
    threads_set(threads);
    OpsPrecision precision;
    Error err;
    if (ops_precision_from_name(precision_name, &precision, &err)) {
        fprintf(stderr, "%s\n", err.message);
        return 1;
    }
    ops_set_precision(precision);
    UNetConfig cfg;
    ModelSource src;
    if (model_source_resolve(&src, &cfg, model, &err)) {
        fprintf(stderr, "%s\n", err.message);
        return 1;
    }
    if (size) cfg.sample_height = cfg.sample_width = size;
    Bench b = {.batch = (size_t)batch};
    ScheduleConfig schedule = schedule_config_default();
    if (net_init(&b, &cfg, !sample_only, &err) || schedule_init(&b.schedule, &schedule, &err)) {
        fprintf(stderr, "%s\n", err.message);
        return 1;
    }
    size_t h = (size_t)cfg.sample_height, w = (size_t)cfg.sample_width;
    b.numel = h * w * (size_t)cfg.in_channels;
    size_t n = b.batch * b.numel;
    b.x0 = alloc_floats(n), b.noise = alloc_floats(n), b.x_t = alloc_floats(n), b.pred = alloc_floats(n);
    b.dpred = alloc_floats(n), b.timesteps = alloc_floats(b.batch);
    b.t = xcalloc(b.batch, sizeof *b.t);
    if (cfg.num_class_embeds > 0) b.labels = xcalloc(b.batch, sizeof *b.labels);
    if (!sample_only) b.m = alloc_floats(b.net.n_params), b.v = alloc_floats(b.net.n_params);
    rng_fill_uniform(b.x0, n, 7, 0, 0);
    for (size_t i = 0; i < n; i++) b.x0[i] = 2 * b.x0[i] - 1;
    memcpy(b.x_t, b.x0, n * sizeof(float));

    UNetCost cost = unet_cost(&b.net.layout, (int)h, (int)w);
    double forward_flops = 2.0 * (double)unet_cost_total_macs(&cost) * (double)b.batch;
    char shape[128], args[256];
    const bool bf16 = precision == OPS_PRECISION_BF16;
    snprintf(shape, sizeof shape, "%s %zux%zu batch %zu%s", model, h, w, b.batch, bf16 ? " bf16" : "");
    snprintf(args, sizeof args, "{\"model\":\"%s\",\"size\":%zu,\"batch\":%zu,\"precision\":\"%s\"}", model, h,
             b.batch, ops_precision_name(precision));
    if (!sample_only) {
        double seconds = bench_median_seconds_over(train_step, &b, 1, steps, min_seconds);
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        printf("{\"op\":\"train_step\",\"shape\":\"%s\",\"args\":%s,\"threads\":%d,\"seconds\":%.6g,\"gflops\":%.4g,"
               "\"images_per_second\":%.4g,\"peak_rss_mb\":%.1f}\n",
               shape, args, threads_get(), seconds, 3 * forward_flops / seconds * 1e-9, (double)b.batch / seconds,
               (double)ru.ru_maxrss / 1024.0);
    }
    if (!sample_only) {
        unet_free(&b.net);
        if (net_init(&b, &cfg, false, &err)) {
            fprintf(stderr, "%s\n", err.message);
            return 1;
        }
    }
    conv2d_hold_weights(true); /* as `diffuse sample` does */
    double seconds = bench_median_seconds_over(sample_step, &b, 1, steps, min_seconds);
    conv2d_hold_weights(false);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("{\"op\":\"sample_step\",\"shape\":\"%s\",\"args\":%s,\"threads\":%d,\"seconds\":%.6g,\"gflops\":%.4g,"
           "\"images_per_second\":%.4g,\"peak_rss_mb\":%.1f}\n",
           shape, args, threads_get(), seconds, forward_flops / seconds * 1e-9, (double)b.batch / seconds,
           (double)ru.ru_maxrss / 1024.0);
    return 0;
}
