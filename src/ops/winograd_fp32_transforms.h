/* The transforms of our fp32 Winograd convolutions F(4x4, r x r) (conv2d_winograd_fp32.c runs the chunks,
 * products and threads): for r = 3, 3x3 kernels (winograd_f4x4_3x3.c: 6x6 patches, 36 terms), for r = 2,
 * 2x2 kernels (winograd_f4x4_2x2.c: 5x5 patches, 25 terms), the upsamplers' phases (upsample_conv.c).
 * Sixteen channels at a time with AVX-512; channels-last activations; the tiles of winograd_tiles.h.
 *
 * A chunk's buffers hold term x of tile t (counted from `first`) at x * stride + t * width, width the
 * channels transformed:
 *   inputs:  V = B^T d B of input channels [c0, c1) (width c1 - c0), padding and the image's outside read
 *            as zeros;
 *   outputs: out (+)= A^T M A (+ bias; NULL: none) of all g.outs channels, cut at the image's last row and
 *            column;
 *   grads:   Z = A dY A^T of output-gradient channels [o0, o1) (width o1 - o0), zeros past the image.
 * weights: U (terms x ins x outs) = G g G^T for every pair, g(a, b) = weight[a][b] (a < co output, b < ci
 * input channels) or, flipped (for backward-data: ins = co, outs = ci), weight[b][a] turned by 180 degrees.
 * kernel_gradients: dweight (Co, Ci, r, r) += G^T dU G for input channel i and block b's output channels,
 * dU the sum of `parts` partials of b's shape, `part` floats apart, in order. */
#ifndef DIFFUSE_OPS_WINOGRAD_FP32_TRANSFORMS_H
#define DIFFUSE_OPS_WINOGRAD_FP32_TRANSFORMS_H

#include <stdbool.h>
#include <stddef.h>

#include "ops/winograd_tiles.h"

/* A block of dU: input channels [i0, i1) by output channels [o0, o1) of the whole (ci x co), each of its
 * terms (i1 - i0) x (o1 - o0). */
typedef struct WeightBlock {
    size_t i0, i1, o0, o1;
} WeightBlock;

typedef struct WinogradTransforms {
    size_t r, terms;
    void (*inputs)(float *v, size_t stride, const float *in, TileGeometry g, size_t c0, size_t c1, size_t first,
                   size_t count);
    void (*outputs)(float *out, bool accumulate, const float *bias, const float *m, size_t stride, TileGeometry g,
                    size_t first, size_t count);
    void (*grads)(float *z, size_t stride, const float *dout, TileGeometry g, size_t o0, size_t o1, size_t first,
                  size_t count);
    void (*weights)(float *u, const float *weight, size_t co, size_t ci, bool flipped);
    void (*kernel_gradients)(float *dweight, size_t ci, const float *du, size_t parts, size_t part, WeightBlock b,
                             size_t i);
} WinogradTransforms;

#if defined(__AVX512F__)
extern const WinogradTransforms winograd_f4x4_3x3, winograd_f4x4_2x2;

/* The one-dimensional transforms of each file, inlined into the chunk loops. */
#define WINOGRAD_INLINE static inline __attribute__((always_inline))

#include <immintrin.h>

/* A dY's rows for the points 0, 1, -1, 2 and -2: four output gradients (a cubic's coefficients) evaluated
 * there. F(4x4, 3x3) takes all five, F(4x4, 2x2) the first four; each then adds infinity's (d[3]). */
WINOGRAD_INLINE void winograd_a_points(__m512 z[5], const __m512 d[4]) {
    const __m512 p = _mm512_add_ps(d[0], d[2]), q = _mm512_add_ps(d[1], d[3]);
    const __m512 r = _mm512_fmadd_ps(_mm512_set1_ps(4), d[2], d[0]);
    const __m512 s = _mm512_fmadd_ps(_mm512_set1_ps(8), d[3], _mm512_add_ps(d[1], d[1]));
    z[0] = d[0];
    z[1] = _mm512_add_ps(p, q);
    z[2] = _mm512_sub_ps(p, q);
    z[3] = _mm512_add_ps(r, s);
    z[4] = _mm512_sub_ps(r, s);
}
#endif

#endif
