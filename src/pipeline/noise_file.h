/* Explicit sampling noise, and the file that carries it (`diffuse sample --noise FILE`), so that diffuse and
 * another tool (diffusers, given the same numbers) can be compared sample for sample.
 *
 * The file is safetensors with F32 tensors, channels-last like every image buffer in diffuse:
 *   "x_T"    (N, H, W, C)         the initial noise of N images
 *   "noise"  (S, N, H, W, C)      optional: the standard normal noise of sampler step k (k = 0 .. S-1, in the
 *                                 order the steps run, from x_T towards x_0), used by the steps that draw
 *                                 noise (DDPM at t > 0, DDIM with eta > 0) and ignored by the others; a
 *                                 deterministic sampler (DDIM with eta 0, DPM-Solver++) needs none.
 * diffusers works in (N, C, H, W): tools/compare_diffusers_pipeline.py permutes (0, 2, 3, 1) to write it.
 * Any other tensor in the file is an error, so a misspelt name is not silently ignored. */
#ifndef DIFFUSE_PIPELINE_NOISE_FILE_H
#define DIFFUSE_PIPELINE_NOISE_FILE_H

#include <stddef.h>

#include "core/error.h"

#define NOISE_FILE_X_T "x_T"
#define NOISE_FILE_STEPS "noise"

typedef struct NoiseFile {
    size_t n_images, height, width, channels;
    float *x_T;     /* (n_images, height, width, channels) */
    float *noise;   /* (n_steps, n_images, height, width, channels), or NULL when n_steps is 0 */
    size_t n_steps;
} NoiseFile;

/* Reads and checks the file (names, dtypes, shapes that agree with each other). */
int noise_file_read(NoiseFile *nf, const char *path, Error *err);
void noise_file_free(NoiseFile *nf);
/* Writes nf atomically (x_T, and noise when n_steps > 0). */
int noise_file_write(const char *path, const NoiseFile *nf, Error *err);

#endif
