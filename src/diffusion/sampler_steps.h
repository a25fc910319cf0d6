/* Helpers shared by the step implementations (sampler_ddpm.c, sampler_ddim.c, sampler_dpm.c); not part of
 * the library's interface. */
#ifndef DIFFUSE_SAMPLER_STEPS_H
#define DIFFUSE_SAMPLER_STEPS_H

#include <stddef.h>

#include "diffusion/sampler.h"

/* Where element j (0 .. sample_numel-1) of sample i reads its model output: with a learned variance the
 * output has 2C channels per position (channels-last), C mean channels first, the variance channels C
 * later. */
static inline size_t step_model_index(const StepBuffers *b, int learned, size_t i, size_t j) {
    if (!learned) return i * b->sample_numel + j;
    size_t C = b->n_channels, position = j / C, c = j % C;
    return i * 2 * b->sample_numel + position * 2 * C + c;
}

/* Clamps x to [-r, r] (torch.clamp: a NaN stays NaN). */
static inline double step_clip(double x, double r) { return x < -r ? -r : x > r ? r : x; }

#endif
