/* Image generation from a UNet with a diffusers sampler (see generate.h). Batches run one after another;
 * each batch is one sampler_run over the images it holds, with noise keyed by their global indices. */
#include "pipeline/generate.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "io/png_write.h"
#include "ops/conv2d.h"

/* ------------------------------------------------------------------------------------------------ */
/* The UNet as a DiffusionModelFn */

void unet_denoiser_init(UNetDenoiser *d, UNet *net, size_t height, size_t width) {
    *d = (UNetDenoiser){.net = net, .height = height, .width = width};
}

void unet_denoiser_free(UNetDenoiser *d) {
    free(d->timesteps);
    *d = (UNetDenoiser){0};
}

int unet_denoiser_fn(void *ctx, const float *x_t, const int64_t *timesteps, size_t n, float *out, Error *err) {
    UNetDenoiser *d = ctx;
    UNet *net = d->net;
    CHECK(n > 0, "unet_denoiser_fn: empty batch");
    CHECK((net->layout.config.num_class_embeds > 0) == (d->class_labels != NULL),
          "unet_denoiser_fn: a model with %d classes needs class labels exactly when it has classes",
          net->layout.config.num_class_embeds);
    if (n > d->timesteps_capacity) {
        d->timesteps = xrealloc(d->timesteps, n * sizeof(float));
        d->timesteps_capacity = n;
    }
    for (size_t i = 0; i < n; i++) d->timesteps[i] = (float)timesteps[i];
    if ((net->batch != n || net->height != d->height || net->width != d->width) &&
        unet_plan(net, n, d->height, d->width, err))
        return -1;
    unet_forward(net, out, x_t, d->timesteps, d->class_labels, NULL);
    return 0;
}

/* ------------------------------------------------------------------------------------------------ */
/* Options */

size_t generate_default_steps(SamplerKind kind, size_t num_train_timesteps) {
    size_t steps = kind == SAMPLER_DDPM ? 1000 : kind == SAMPLER_DDIM ? 50 : 20;
    return steps < num_train_timesteps ? steps : num_train_timesteps;
}

size_t generate_trajectory_step(size_t frame, size_t n_frames, size_t n_steps) {
    CHECK(n_frames >= 2 && frame < n_frames, "trajectory frame %zu of %zu", frame, n_frames);
    /* round(frame * n_steps / (n_frames - 1)) in integers, halves up */
    return (2 * frame * n_steps + (n_frames - 1)) / (2 * (n_frames - 1));
}

static void resolved_size(const UNet *net, const GenerateOptions *opt, size_t *h, size_t *w) {
    const UNetConfig *cfg = &net->layout.config;
    *h = opt->height ? opt->height : (size_t)(cfg->sample_height > 0 ? cfg->sample_height : 0);
    *w = opt->width ? opt->width : (size_t)(cfg->sample_width > 0 ? cfg->sample_width : 0);
}

static size_t resolved_steps(const SchedulerConfig *scheduler, const GenerateOptions *opt) {
    return opt->num_inference_steps ? opt->num_inference_steps
                                    : generate_default_steps(scheduler->kind, scheduler->schedule.num_train_timesteps);
}

int generate_validate(const UNet *net, const SchedulerConfig *scheduler, const GenerateOptions *opt, Error *err) {
    const UNetConfig *cfg = &net->layout.config;
    if (opt->n_images == 0) return error_set(err, "the number of images must be at least 1");
    size_t h, w;
    resolved_size(net, opt, &h, &w);
    if (h == 0 || w == 0) return error_set(err, "the model's config has no sample_size; give the image size");
    if (unet_config_check_image_size(cfg, h, w, err)) return -1;
    size_t factor = (size_t)1 << (cfg->n_blocks - 1);
    if (h % factor || w % factor)
        return error_set(err, "image size %zux%zu is not divisible by %zu (2^(levels - 1) of this model)", h, w, factor);
    size_t c = (size_t)cfg->in_channels;
    bool learned = scheduler->variance_type == VARIANCE_LEARNED_RANGE;
    if ((size_t)cfg->out_channels != c && !(learned && (size_t)cfg->out_channels == 2 * c))
        return error_set(err, "the model predicts %d channels for %zu input channels; sampling needs as many%s",
                         cfg->out_channels, c, learned ? " (or twice as many with learned_range variance)" : "");
    if (learned && scheduler->kind == SAMPLER_DDIM)
        return error_set(err, "DDIM cannot sample a model that predicts its variance (learned_range); use ddpm or dpm++");
    if (c != 1 && c != 3) return error_set(err, "the model has %zu channels; images need 1 (grey) or 3 (RGB)", c);
    if (cfg->num_class_embeds == 0 && opt->class_label != -1)
        return error_set(err, "the model is unconditional (no num_class_embeds); a class label cannot be given");
    if (cfg->num_class_embeds > 0 && (opt->class_label < -1 || opt->class_label >= cfg->num_class_embeds))
        return error_set(err, "class %d is out of range: the model has classes 0 .. %d", opt->class_label,
                         cfg->num_class_embeds - 1);
    size_t steps = resolved_steps(scheduler, opt), T = scheduler->schedule.num_train_timesteps;
    if (steps > T) return error_set(err, "%zu steps exceed the scheduler's %zu training timesteps", steps, T);
    if (!(opt->eta >= 0) || !isfinite(opt->eta)) return error_set(err, "eta %g must be a finite number >= 0", opt->eta);
    if (opt->noise) {
        const NoiseFile *nf = opt->noise;
        if (nf->height != h || nf->width != w || nf->channels != c)
            return error_set(err, "the noise is %zux%zux%zu (H, W, C) but the model samples %zux%zux%zu", nf->height,
                             nf->width, nf->channels, h, w, c);
        if (nf->n_images < opt->n_images)
            return error_set(err, "the noise holds %zu images, fewer than the %zu requested", nf->n_images,
                             opt->n_images);
    }
    if (opt->trajectory) {
        if (opt->trajectory_images == 0 || opt->trajectory_images > opt->n_images)
            return error_set(err, "trajectory of %zu images out of %zu", opt->trajectory_images, opt->n_images);
        if (opt->trajectory_frames < 2 || opt->trajectory_frames > steps + 1)
            return error_set(err, "a trajectory of %zu steps has 2 .. %zu frames, not %zu", steps, steps + 1,
                             opt->trajectory_frames);
    }
    return 0;
}

/* ------------------------------------------------------------------------------------------------ */
/* Generation */

/* What the per-step callback needs: the batch being sampled and where its trajectory frames go. */
typedef struct StepCtx {
    const GenerateOptions *opt;
    const float *x;          /* the batch's samples, updated in place by the sampler */
    size_t batch_first, batch_images, sample_numel;
    size_t n_steps;
    GenerateProgress progress;
} StepCtx;

static void capture_frames(const StepCtx *c, size_t steps_done) {
    const GenerateOptions *opt = c->opt;
    if (!opt->trajectory) return;
    size_t D = c->sample_numel, F = opt->trajectory_frames;
    for (size_t f = 0; f < F; f++) {
        if (generate_trajectory_step(f, F, c->n_steps) != steps_done) continue;
        for (size_t i = 0; i < c->batch_images; i++) {
            size_t image = c->batch_first + i;
            if (image >= opt->trajectory_images) break;
            memcpy(opt->trajectory + (image * F + f) * D, c->x + i * D, D * sizeof(float));
        }
    }
}

static void on_step(void *ctx, size_t step, size_t n_steps) {
    StepCtx *c = ctx;
    capture_frames(c, step + 1);
    if (c->opt->progress) {
        c->progress.step = step + 1;
        c->progress.n_steps = n_steps;
        c->opt->progress(c->opt->progress_ctx, &c->progress);
    }
}

int generate_images(float *images, UNet *net, const SchedulerConfig *scheduler, const GenerateOptions *opt,
                    Error *err) {
    if (generate_validate(net, scheduler, opt, err)) return -1;
    const UNetConfig *cfg = &net->layout.config;
    size_t h, w;
    resolved_size(net, opt, &h, &w);
    size_t c = (size_t)cfg->in_channels, D = h * w * c, n = opt->n_images;
    SamplerOptions so = {.num_inference_steps = resolved_steps(scheduler, opt), .eta = opt->eta, .n_channels = c};
    Sampler sm;
    if (sampler_init(&sm, scheduler, &so, err)) return -1;
    if (opt->noise) {
        for (size_t i = 0; i < sm.n_steps; i++) {
            if (sampler_step_needs_noise(&sm, i) && i >= opt->noise->n_steps) {
                int rc = error_set(err, "the %s sampler draws noise at step %zu of %zu, but the noise holds %zu steps",
                                   sampler_kind_name(scheduler->kind), i + 1, sm.n_steps, opt->noise->n_steps);
                sampler_free(&sm);
                return rc;
            }
        }
    }
    size_t batch = opt->batch_size && opt->batch_size < n ? opt->batch_size : n;
    int *labels = cfg->num_class_embeds > 0 ? xmalloc(batch * sizeof(int)) : NULL;
    UNetDenoiser den;
    unet_denoiser_init(&den, net, h, w);
    den.class_labels = labels;
    int rc = 0;
    conv2d_hold_weights(true); /* the weights stay as they are until the last step */
    for (size_t first = 0; first < n && !rc; first += batch) {
        size_t nb = n - first < batch ? n - first : batch;
        float *x = images + first * D;
        NoiseSource noise;
        if (opt->noise) {
            const NoiseFile *nf = opt->noise;
            memcpy(x, nf->x_T + first * D, nb * D * sizeof(float));
            /* Step k of this batch: the file's step k, from the batch's first image on. */
            noise = nf->n_steps ? noise_source_buffers(nf->noise + first * D, nf->n_steps, nf->n_images * D)
                                : noise_source_rng(opt->seed, opt->first_image + first);
        } else {
            sampler_initial_noise(x, nb, D, opt->seed, opt->first_image + first);
            noise = noise_source_rng(opt->seed, opt->first_image + first);
        }
        for (size_t i = 0; labels && i < nb; i++)
            labels[i] = opt->class_label >= 0 ? opt->class_label
                                              : (int)((opt->first_image + first + i) % (size_t)cfg->num_class_embeds);
        StepCtx ctx = {
            .opt = opt, .x = x, .batch_first = first, .batch_images = nb, .sample_numel = D, .n_steps = sm.n_steps,
            .progress = {.images_done = first, .n_images = n, .batch_images = nb, .n_steps = sm.n_steps},
        };
        capture_frames(&ctx, 0);
        SamplerRun run = {
            .model = unet_denoiser_fn, .model_ctx = &den, .noise = &noise, .on_step = on_step, .on_step_ctx = &ctx,
        };
        rc = sampler_run(&sm, x, nb, D, &run, err);
    }
    conv2d_hold_weights(false);
    unet_denoiser_free(&den);
    free(labels);
    sampler_free(&sm);
    return rc;
}

/* ------------------------------------------------------------------------------------------------ */
/* Output */

void generate_to_unit(float *out, const float *x, size_t n) {
    for (size_t i = 0; i < n; i++) {
        float v = x[i] / 2.0f + 0.5f;
        out[i] = v < 0.0f ? 0.0f : v > 1.0f ? 1.0f : v; /* NaN fails both tests and stays NaN */
    }
}

void generate_to_uint8(uint8_t *out, const float *x, size_t n) {
    for (size_t i = 0; i < n; i++) {
        float v = x[i] / 2.0f + 0.5f;
        v = v < 0.0f ? 0.0f : v > 1.0f ? 1.0f : v;
        float level = nearbyintf(v * 255.0f); /* the default rounding mode: ties to even, as np.round */
        out[i] = isnan(level) ? 0 : (uint8_t)level;
    }
}

int generate_write_grid(const char *path, const float *images, size_t n, size_t height, size_t width,
                        size_t channels, size_t n_cols, Error *err) {
    size_t total = n * height * width * channels;
    uint8_t *pixels = xmalloc(total ? total : 1);
    generate_to_uint8(pixels, images, total);
    PngGrid grid = {.n_images = n, .height = height, .width = width, .channels = channels, .n_cols = n_cols,
                    .gap = 2, .background = 255};
    int rc = png_write_grid(path, &grid, pixels, err);
    free(pixels);
    return rc;
}

int generate_write_images(const char *dir, const char *prefix, size_t first_index, const float *images, size_t n,
                          size_t height, size_t width, size_t channels, Error *err) {
    size_t D = height * width * channels;
    uint8_t *pixels = xmalloc(D ? D : 1);
    int rc = 0;
    size_t len = strlen(dir);
    for (size_t i = 0; i < n && !rc; i++) {
        char path[4200];
        int k = snprintf(path, sizeof path, "%s%s%s%05zu.png", dir, len && dir[len - 1] == '/' ? "" : "/", prefix,
                         first_index + i);
        if (k < 0 || (size_t)k >= sizeof path) {
            rc = error_set(err, "%.200s...: path too long", dir);
            break;
        }
        generate_to_uint8(pixels, images + i * D, D);
        rc = png_write(path, pixels, height, width, channels, err);
    }
    free(pixels);
    return rc;
}
