/* Image generation from a UNet: what DDPMPipeline (and DDIMPipeline, or DDPMPipeline with a DPM-Solver++
 * scheduler) does, as a library the CLI's `diffuse sample` and the trainer's periodic sample grids share.
 *
 *   x_T ~ N(0, I); for each sampler step: eps = UNet(x_t, t[, class]); x = scheduler.step(eps, t, x)
 *   image = (x / 2 + 0.5).clamp(0, 1); uint8 = round(image * 255)        (pipeline_ddpm.py, numpy_to_pil)
 *
 * Noise. Image i's initial noise and step noise are keyed by (seed, first_image + i) (sampler.h), so image
 * i is the same whatever the batch size, and images 16..31 of one seed extend a grid of images 0..15.
 * Explicit noise (a NoiseFile) replaces the generator, to reproduce another tool's samples.
 *
 * Images are channels-last (N, H, W, C) floats, in the model's space ([-1, 1] for a trained model). */
#ifndef DIFFUSE_PIPELINE_GENERATE_H
#define DIFFUSE_PIPELINE_GENERATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "diffusion/sampler.h"
#include "diffusion/scheduler_config.h"
#include "nn/unet.h"
#include "pipeline/noise_file.h"

/* ---- the UNet as the samplers' and the likelihood's model callback ---- */

/* A DiffusionModelFn over a UNet: timesteps become floats (as UNet2DModel's time projection takes them),
 * class labels come from `class_labels`, and the UNet is (re)planned whenever a call brings another batch
 * size, so a run of equal batches plans once. */
typedef struct UNetDenoiser {
    UNet *net;
    size_t height, width;
    const int *class_labels; /* labels of the n images of the next call; NULL for an unconditional model */
    float *timesteps;        /* scratch */
    size_t timesteps_capacity;
} UNetDenoiser;

void unet_denoiser_init(UNetDenoiser *d, UNet *net, size_t height, size_t width);
void unet_denoiser_free(UNetDenoiser *d);
/* The DiffusionModelFn; ctx is a UNetDenoiser. */
int unet_denoiser_fn(void *ctx, const float *x_t, const int64_t *timesteps, size_t n, float *out, Error *err);

/* ---- generation ---- */

/* Reported after every sampler step. */
typedef struct GenerateProgress {
    size_t images_done, n_images; /* images finished before the current batch, of all */
    size_t batch_images;          /* images in the current batch */
    size_t step, n_steps;         /* steps done in the current batch */
} GenerateProgress;

typedef struct GenerateOptions {
    size_t n_images;
    size_t batch_size;          /* images per model call; 0: all at once */
    size_t height, width;       /* 0: the model's sample_size */
    size_t num_inference_steps; /* 0: generate_default_steps */
    double eta;                 /* DDIM only: 0 deterministic .. 1 */
    uint64_t seed;
    size_t first_image;         /* global index of image 0: the noise key */
    /* Class-conditional models: -1 gives image i the class (first_image + i) mod num_class_embeds, so a grid
     * shows every class; >= 0 gives every image that class. Must be -1 for an unconditional model. */
    int class_label;
    /* Explicit noise instead of the seed: images 0 .. n_images-1 of the file (which may hold more); its
     * steps must cover every step that draws noise. NULL: the generator. */
    const NoiseFile *noise;
    /* The trajectory: when not NULL, receives (trajectory_images, trajectory_frames, H, W, C) values: for
     * each of the first trajectory_images images, x_t after generate_trajectory_step(f, ...) steps, frame 0
     * being x_T and the last frame x_0. trajectory_frames must not exceed n_steps + 1. */
    float *trajectory;
    size_t trajectory_images, trajectory_frames;
    void (*progress)(void *ctx, const GenerateProgress *p);
    void *progress_ctx;
} GenerateOptions;

/* Default steps per sampler, as diffusers' pipelines default them: 1000 for DDPM (DDPMPipeline), 50 for
 * DDIM (DDIMPipeline), 20 for DPM-Solver++ (its usual setting); at most num_train_timesteps. */
size_t generate_default_steps(SamplerKind kind, size_t num_train_timesteps);

/* The number of steps done before trajectory frame f of n_frames over an n_steps run: evenly spaced,
 * rounded, 0 for the first frame and n_steps for the last. */
size_t generate_trajectory_step(size_t frame, size_t n_frames, size_t n_steps);

/* Checks that opt fits net and scheduler (sizes, class label, steps, eta, the noise file's shape and step
 * count, output channels: the model's out_channels must be in_channels, or twice that for a learned-range
 * variance under DDPM or DPM-Solver++), with a message saying what to change. */
int generate_validate(const UNet *net, const SchedulerConfig *scheduler, const GenerateOptions *opt, Error *err);

/* images (n_images, H, W, C) = the samples. Validates first (generate_validate). -1 with an Error when the
 * options do not fit or the model fails. */
int generate_images(float *images, UNet *net, const SchedulerConfig *scheduler, const GenerateOptions *opt,
                    Error *err);

/* ---- output ---- */

/* DDPMPipeline's output in float32: (x / 2 + 0.5) clamped to [0, 1] (NaN stays NaN). */
void generate_to_unit(float *out, const float *x, size_t n);
/* diffusers' numpy_to_pil after that: (v * 255).round().astype("uint8") in float32, ties to even; a NaN
 * becomes 0. */
void generate_to_uint8(uint8_t *out, const float *x, size_t n);

/* Writes n images (n, H, W, C floats in model space, C 1 or 3) as one grid PNG, n_cols per row (0: near
 * square), with a 2-pixel white gap. */
int generate_write_grid(const char *path, const float *images, size_t n, size_t height, size_t width,
                        size_t channels, size_t n_cols, Error *err);
/* Writes image i as dir/<prefix><first_index + i, 5 digits>.png, for i < n. The folder must exist. */
int generate_write_images(const char *dir, const char *prefix, size_t first_index, const float *images, size_t n,
                          size_t height, size_t width, size_t channels, Error *err);

#endif
