/* Embeddings.
 * timestep_embedding: sinusoidal embedding of (possibly fractional) timesteps, as diffusers'
 *   get_timestep_embedding: half = dim / 2, exponent_i = -ln(max_period) * i / (half - downscale_freq_shift),
 *   arg_i = scale * t * exp(exponent_i); out = [sin(arg), cos(arg)], swapped to [cos, sin] when
 *   flip_sin_to_cos; an odd dim gets a zero last column. Computed in double, stored as float.
 *   timesteps: N values; out (N, dim), dim >= 1 (half - downscale_freq_shift must not be 0).
 *   Forward only: the time steps are not learned.
 * embedding: table lookup, as torch.nn.Embedding: out[n] = table[ids[n]]; ids CHECKed in [0, V).
 *   table (V, F), out (N, F). Backward accumulates dout rows into dtable. */
#ifndef DIFFUSE_EMBED_H
#define DIFFUSE_EMBED_H

#include <stdbool.h>

#include "core/tensor.h"

typedef struct TimestepEmbeddingParams {
    bool flip_sin_to_cos;
    double downscale_freq_shift;
    double scale;      /* diffusers default 1 */
    double max_period; /* diffusers default 10000 */
} TimestepEmbeddingParams;

/* diffusers' defaults for UNet2DModel: flip_sin_to_cos true, shift 0, scale 1, max_period 10000. */
TimestepEmbeddingParams timestep_embedding_defaults(void);

void timestep_embedding(Tensor out, const float *timesteps, TimestepEmbeddingParams p);

void embedding_forward(Tensor out, Tensor table, const int *ids);
void embedding_backward(Tensor dtable, Tensor dout, const int *ids);

#endif
