/* Resampling of channels-last images by 2 in each direction: the U-Net's up and down steps around their
 * convolutions (https://pytorch.org/docs/stable/generated/torch.nn.functional.interpolate.html,
 * https://pytorch.org/docs/stable/generated/torch.nn.functional.avg_pool2d.html).
 *
 *   upsample_nearest2x:  out[n, y, x, c] = inp[n, y / 2, x / 2, c]
 *                        dinp[n, y, x, c] += sum over the 2 x 2 block dout[n, 2y + i, 2x + j, c]
 *   avg_pool2x:          out[n, y, x, c] = (sum over i, j in {0, 1} of inp[n, 2y + i, 2x + j, c]) / 4
 *                        dinp[n, 2y + i, 2x + j, c] += dout[n, y, x, c] / 4
 *
 * Buffers: upsample inp, dinp (N, H, W, C) and out, dout (N, 2H, 2W, C); avg_pool inp, dinp (N, H, W, C)
 * with H, W even and out, dout (N, H/2, W/2, C). The pool adds its four values in PyTorch's order (row by
 * row) and scales by the exact 1/4, so its forward matches PyTorch bit for bit.
 * Each call runs in parallel over output rows, which no two threads share. */
#include "ops/resample.h"

#include <string.h>

#include "core/check.h"

/* Large enough that waking the thread team pays off. */
#define RESAMPLE_PARALLEL_ELEMS 32768

void upsample_nearest2x_forward(Tensor out, Tensor inp) {
    EXPECT_NDIM(inp, "inp", 4);
    const size_t n = inp.shape[0], h = inp.shape[1], w = inp.shape[2], c = inp.shape[3];
    EXPECT_SHAPE(out, "out", n, 2 * h, 2 * w, c);
#pragma omp parallel for schedule(static) if (tensor_numel(out) >= RESAMPLE_PARALLEL_ELEMS)
    for (size_t ny = 0; ny < n * h; ny++) {
        const float *src = inp.data + ny * w * c;
        float *top = out.data + ny * 2 * (2 * w * c), *bottom = top + 2 * w * c;
        for (size_t x = 0; x < w; x++) {
            memcpy(top + 2 * x * c, src + x * c, c * sizeof(float));
            memcpy(top + (2 * x + 1) * c, src + x * c, c * sizeof(float));
        }
        memcpy(bottom, top, 2 * w * c * sizeof(float));
    }
}

void upsample_nearest2x_backward(Tensor dinp, Tensor dout) {
    EXPECT_NDIM(dinp, "dinp", 4);
    const size_t n = dinp.shape[0], h = dinp.shape[1], w = dinp.shape[2], c = dinp.shape[3];
    EXPECT_SHAPE(dout, "dout", n, 2 * h, 2 * w, c);
#pragma omp parallel for schedule(static) if (tensor_numel(dout) >= RESAMPLE_PARALLEL_ELEMS)
    for (size_t ny = 0; ny < n * h; ny++) {
        float *dst = dinp.data + ny * w * c;
        const float *top = dout.data + ny * 2 * (2 * w * c), *bottom = top + 2 * w * c;
        for (size_t x = 0; x < w; x++) {
            const float *t0 = top + 2 * x * c, *t1 = t0 + c, *b0 = bottom + 2 * x * c, *b1 = b0 + c;
            float *d = dst + x * c;
            /* out[2y + i, 2x + j] = inp[y, x] for the four (i, j) */
#pragma omp simd
            for (size_t k = 0; k < c; k++) d[k] += ((t0[k] + t1[k]) + b0[k]) + b1[k];
        }
    }
}

void avg_pool2x_forward(Tensor out, Tensor inp) {
    EXPECT_NDIM(inp, "inp", 4);
    const size_t n = inp.shape[0], h = inp.shape[1], w = inp.shape[2], c = inp.shape[3];
    CHECK(h % 2 == 0 && w % 2 == 0, "%s: inp is %zu x %zu pixels; 2x2 pooling needs an even height and width",
          __func__, h, w);
    EXPECT_SHAPE(out, "out", n, h / 2, w / 2, c);
#pragma omp parallel for schedule(static) if (tensor_numel(inp) >= RESAMPLE_PARALLEL_ELEMS)
    for (size_t ny = 0; ny < n * (h / 2); ny++) {
        const float *top = inp.data + ny * 2 * (w * c), *bottom = top + w * c;
        float *dst = out.data + ny * (w / 2) * c;
        for (size_t x = 0; x < w / 2; x++) {
            const float *t0 = top + 2 * x * c, *t1 = t0 + c, *b0 = bottom + 2 * x * c, *b1 = b0 + c;
            float *d = dst + x * c;
#pragma omp simd
            for (size_t k = 0; k < c; k++) d[k] = (((t0[k] + t1[k]) + b0[k]) + b1[k]) * 0.25f;
        }
    }
}

void avg_pool2x_backward(Tensor dinp, Tensor dout) {
    EXPECT_NDIM(dinp, "dinp", 4);
    const size_t n = dinp.shape[0], h = dinp.shape[1], w = dinp.shape[2], c = dinp.shape[3];
    CHECK(h % 2 == 0 && w % 2 == 0, "%s: dinp is %zu x %zu pixels; 2x2 pooling needs an even height and width",
          __func__, h, w);
    EXPECT_SHAPE(dout, "dout", n, h / 2, w / 2, c);
#pragma omp parallel for schedule(static) if (tensor_numel(dinp) >= RESAMPLE_PARALLEL_ELEMS)
    for (size_t ny = 0; ny < n * (h / 2); ny++) {
        float *top = dinp.data + ny * 2 * (w * c), *bottom = top + w * c;
        const float *src = dout.data + ny * (w / 2) * c;
        for (size_t x = 0; x < w / 2; x++) {
            float *t0 = top + 2 * x * c, *t1 = t0 + c, *b0 = bottom + 2 * x * c, *b1 = b0 + c;
            const float *s = src + x * c;
            /* out = (t0 + t1 + b0 + b1) / 4 */
#pragma omp simd
            for (size_t k = 0; k < c; k++) {
                float g = s[k] * 0.25f;
                t0[k] += g, t1[k] += g, b0[k] += g, b1[k] += g;
            }
        }
    }
}
