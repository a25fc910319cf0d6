/* Dropout driven by the counter-based RNG: element i is kept when
 * rng_uniform(seed, stream, first_index + i) >= p, and kept values are scaled by 1 / (1 - p).
 * The mask is never stored: backward draws the same decisions again. Choosing first_index from the
 * sample's global index makes the mask independent of how a batch is split over ranks.
 * p = 0 is the identity; p in [0, 1). out may alias inp. */
#ifndef DIFFUSE_DROPOUT_H
#define DIFFUSE_DROPOUT_H

#include <stdint.h>

#include "core/tensor.h"

typedef struct DropoutParams {
    float p;
    uint64_t seed, stream, first_index;
} DropoutParams;

void dropout_forward(Tensor out, Tensor inp, DropoutParams p);
void dropout_backward(Tensor dinp, Tensor dout, DropoutParams p);

#endif
