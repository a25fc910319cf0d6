/* Gradient-norm clipping (see grad_clip.h). */
#include "optim/grad_clip.h"

#include <math.h>

#include "optim/reduce.h"

double grad_clip_norm(float *grads, size_t n, double max_norm) {
    double norm = sqrt(reduce_sum_squares(grads, n));
    double coef = max_norm / (norm + 1e-6);
    if (coef < 1.0) {
        const float scale = (float)coef;
#pragma omp parallel for simd schedule(static)
        for (size_t i = 0; i < n; i++) grads[i] *= scale;
    }
    return norm;
}
