/* Evaluation of a model on a data set (`diffuse eval`): the training loss and the variational bound in
 * bits per dimension, each as a mean over images with its standard error.
 *
 *   loss      L_simple: |model(x_t, t) - target|² / D at t ~ U{0 .. T-1} and ε ~ N(0, I), one draw per image
 *             (the target is ε, x_0 or v as the scheduler's prediction_type says; no SNR weighting)
 *   bits/dim  the bound of diffusion/likelihood.h with the scheduler's variance (fixed_small, fixed_large,
 *             learned_range) and its clip_sample, estimated from K timesteps per image or exact (K = 0)
 *
 * Which images: a permutation of the data set from the seed (so a subset mixes the classes of a folder
 * sorted by class), its first n_images. Draws are keyed by (seed, position in that order), so the
 * numbers do not depend on the batch size. The standard error is the spread of the per-image values over
 * √n: it covers both the choice of images and the Monte-Carlo draws. */
#ifndef DIFFUSE_PIPELINE_EVALUATE_H
#define DIFFUSE_PIPELINE_EVALUATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "data/dataset.h"
#include "diffusion/scheduler_config.h"
#include "nn/unet.h"

typedef struct EvaluateProgress {
    size_t model_calls_done, n_model_calls; /* forward passes of a batch, over the whole evaluation */
    size_t images_done, n_images;
} EvaluateProgress;

typedef struct EvaluateOptions {
    size_t n_images;    /* 0: the whole data set */
    size_t batch_size;  /* 0: 16 */
    uint64_t seed;
    size_t n_timesteps; /* K timesteps per image for bits/dim; 0: all T (exact, T forward passes per image) */
    bool skip_bpd;      /* the loss only */
    void (*progress)(void *ctx, const EvaluateProgress *p);
    void *progress_ctx;
} EvaluateOptions;

typedef struct EvaluateResult {
    size_t n_images;
    double loss_mean, loss_std_error;
    double bpd_mean, bpd_std_error;
    double bpd_mc_std_error; /* the part of the error from the timestep draws alone (0 when exact) */
    double prior_bpd_mean;   /* L_T */
    double decoder_bpd_mean; /* L_0 (exact evaluation only) */
} EvaluateResult;

/* ds must hold images of the model's in_channels at the evaluation size (dataset_open with that resolution
 * and channels); its labels feed a class-conditional model, which needs them. scheduler is the model's
 * DDPM config. */
int evaluate_model(EvaluateResult *r, UNet *net, const SchedulerConfig *scheduler, const Dataset *ds,
                   const EvaluateOptions *opt, Error *err);

#endif
