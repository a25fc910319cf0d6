/* conv2d reference path: plain loops, obviously correct, the yardstick the oneDNN path is tested against.
 *   forward   out[n,y,x,o]  = bias[o] + sum_{i,ky,kx} inp[n, y*s+ky-pt, x*s+kx-pl, i] * weight[o,i,ky,kx]
 *   backward  dinp[n,iy,ix,i]  += sum_{o,ky,kx} dout[n,y,x,o] * weight[o,i,ky,kx]  over (y, x) with y*s+ky-pt = iy, ...
 *             dweight[o,i,ky,kx] += sum_{n,y,x} dout[n,y,x,o] * inp[n, y*s+ky-pt, x*s+kx-pl, i]
 *             dbias[o]            += sum_{n,y,x} dout[n,y,x,o]
 * (torch.nn.functional.conv2d and its autograd; out-of-range input positions read zero.)
 * Shapes: inp (N, H, W, Ci), weight (Co, Ci, kH, kW), bias (Co), out (N, Ho, Wo, Co).
 *
 * Each loop nest keeps a contiguous channel axis innermost (weights are first copied into the order that
 * makes it so) and marks it `omp simd`, so it vectorises without reassociating any sum. Every output
 * element is owned by one thread and summed in a fixed order, so results do not depend on the thread
 * count, let alone on timing. */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "ops/conv2d_internal.h"

void conv2d_forward_reference(Tensor out, Tensor inp, Tensor weight, Tensor bias, Conv2dParams p) {
    Conv2dShape s = conv2d_check_forward(__func__, out, inp, weight, bias, p);
    const size_t ci = s.ci, co = s.co, kh = s.kh, kw = s.kw;
    /* weight (Co, Ci, kH, kW) -> w_hwio (kH, kW, Ci, Co): output channels innermost. */
    float *w_hwio = xmalloc(kh * kw * ci * co * sizeof(float));
    for (size_t o = 0; o < co; o++)
        for (size_t i = 0; i < ci; i++)
            for (size_t k = 0; k < kh * kw; k++) w_hwio[(k * ci + i) * co + o] = weight.data[(o * ci + i) * kh * kw + k];
    const float *x = inp.data, *b = bias.data;
    float *y = out.data;

#pragma omp parallel for collapse(2) schedule(static)
    for (size_t n = 0; n < s.n; n++) {
        for (size_t oy = 0; oy < s.ho; oy++) {
            for (size_t ox = 0; ox < s.wo; ox++) {
                float *restrict acc = y + ((n * s.ho + oy) * s.wo + ox) * co;
                for (size_t o = 0; o < co; o++) acc[o] = b ? b[o] : 0.0f;
                for (size_t ky = 0; ky < kh; ky++) {
                    ptrdiff_t iy = conv2d_in_index(oy, ky, p.stride, p.pad_top, s.h);
                    if (iy < 0) continue;
                    for (size_t kx = 0; kx < kw; kx++) {
                        ptrdiff_t ix = conv2d_in_index(ox, kx, p.stride, p.pad_left, s.w);
                        if (ix < 0) continue;
                        const float *xs = x + ((n * s.h + (size_t)iy) * s.w + (size_t)ix) * ci;
                        const float *wk = w_hwio + (ky * kw + kx) * ci * co;
                        for (size_t i = 0; i < ci; i++) {
                            const float xi = xs[i];
                            const float *restrict wi = wk + i * co;
#pragma omp simd
                            for (size_t o = 0; o < co; o++) acc[o] += xi * wi[o];
                        }
                    }
                }
            }
        }
    }
    free(w_hwio);
}

/* ------------------------------------------------------------------------------------------------ */

/* dbias[o] += sum over every position of dout[.., o], in double, position by position. */
static void backward_bias(float *dbias, const float *dout, size_t n_pos, size_t co) {
    double *acc = xcalloc(co, sizeof(double));
    for (size_t pos = 0; pos < n_pos; pos++) {
        const float *g = dout + pos * co;
#pragma omp simd
        for (size_t o = 0; o < co; o++) acc[o] += g[o];
    }
    for (size_t o = 0; o < co; o++) dbias[o] += (float)acc[o];
    free(acc);
}

/* Parallel over input rows: each dinp element gathers the output positions that read it. */
static void backward_data(float *dinp, const float *dout, const float *weight, Conv2dShape s, Conv2dParams p) {
    const size_t ci = s.ci, co = s.co, kh = s.kh, kw = s.kw;
    /* weight (Co, Ci, kH, kW) -> w_hwoi (kH, kW, Co, Ci): input channels innermost. */
    float *w_hwoi = xmalloc(kh * kw * co * ci * sizeof(float));
    for (size_t o = 0; o < co; o++)
        for (size_t i = 0; i < ci; i++)
            for (size_t k = 0; k < kh * kw; k++) w_hwoi[(k * co + o) * ci + i] = weight[(o * ci + i) * kh * kw + k];

#pragma omp parallel
    {
        float *restrict acc = xmalloc(ci * sizeof(float));
#pragma omp for collapse(2) schedule(static)
        for (size_t n = 0; n < s.n; n++) {
            for (size_t iy = 0; iy < s.h; iy++) {
                for (size_t ix = 0; ix < s.w; ix++) {
                    memset(acc, 0, ci * sizeof(float));
                    for (size_t ky = 0; ky < kh; ky++) {
                        ptrdiff_t oy = conv2d_out_index(iy, ky, p.stride, p.pad_top, s.ho);
                        if (oy < 0) continue;
                        for (size_t kx = 0; kx < kw; kx++) {
                            ptrdiff_t ox = conv2d_out_index(ix, kx, p.stride, p.pad_left, s.wo);
                            if (ox < 0) continue;
                            const float *g = dout + ((n * s.ho + (size_t)oy) * s.wo + (size_t)ox) * co;
                            const float *wk = w_hwoi + (ky * kw + kx) * co * ci;
                            for (size_t o = 0; o < co; o++) {
                                const float go = g[o];
                                const float *restrict wo = wk + o * ci;
#pragma omp simd
                                for (size_t i = 0; i < ci; i++) acc[i] += go * wo[i];
                            }
                        }
                    }
                    float *restrict d = dinp + ((n * s.h + iy) * s.w + ix) * ci;
#pragma omp simd
                    for (size_t i = 0; i < ci; i++) d[i] += acc[i];
                }
            }
        }
        free(acc);
    }
    free(w_hwoi);
}

/* Parallel over blocks of output channels: each thread owns whole rows of dweight and sums them over
 * positions in the same order whatever the thread count. */
enum { BWD_WEIGHTS_BLOCK = 8 };

static void backward_weights(float *dweight, const float *dout, const float *inp, Conv2dShape s, Conv2dParams p) {
    const size_t ci = s.ci, co = s.co, kh = s.kh, kw = s.kw;
    const size_t n_blocks = (co + BWD_WEIGHTS_BLOCK - 1) / BWD_WEIGHTS_BLOCK;
#pragma omp parallel
    {
        /* acc (block, kH, kW, Ci): input channels innermost. */
        float *restrict acc = xmalloc(BWD_WEIGHTS_BLOCK * kh * kw * ci * sizeof(float));
#pragma omp for schedule(static)
        for (size_t blk = 0; blk < n_blocks; blk++) {
            const size_t o0 = blk * BWD_WEIGHTS_BLOCK;
            const size_t n_o = co - o0 < BWD_WEIGHTS_BLOCK ? co - o0 : BWD_WEIGHTS_BLOCK;
            memset(acc, 0, n_o * kh * kw * ci * sizeof(float));
            for (size_t n = 0; n < s.n; n++) {
                for (size_t oy = 0; oy < s.ho; oy++) {
                    for (size_t ox = 0; ox < s.wo; ox++) {
                        const float *g = dout + ((n * s.ho + oy) * s.wo + ox) * co + o0;
                        for (size_t ky = 0; ky < kh; ky++) {
                            ptrdiff_t iy = conv2d_in_index(oy, ky, p.stride, p.pad_top, s.h);
                            if (iy < 0) continue;
                            for (size_t kx = 0; kx < kw; kx++) {
                                ptrdiff_t ix = conv2d_in_index(ox, kx, p.stride, p.pad_left, s.w);
                                if (ix < 0) continue;
                                const float *restrict xs = inp + ((n * s.h + (size_t)iy) * s.w + (size_t)ix) * ci;
                                for (size_t j = 0; j < n_o; j++) {
                                    const float gj = g[j];
                                    float *restrict a = acc + ((j * kh + ky) * kw + kx) * ci;
#pragma omp simd
                                    for (size_t i = 0; i < ci; i++) a[i] += gj * xs[i];
                                }
                            }
                        }
                    }
                }
            }
            for (size_t j = 0; j < n_o; j++)
                for (size_t i = 0; i < ci; i++)
                    for (size_t k = 0; k < kh * kw; k++)
                        dweight[((o0 + j) * ci + i) * kh * kw + k] += acc[(j * kh * kw + k) * ci + i];
        }
        free(acc);
    }
}

void conv2d_backward_reference(Tensor dinp, Tensor dweight, Tensor dbias, Tensor dout, Tensor inp, Tensor weight,
                               Conv2dParams p) {
    Conv2dShape s = conv2d_check_backward(__func__, dinp, dweight, dbias, dout, inp, weight, p);
    if (!tensor_is_none(dbias)) backward_bias(dbias.data, dout.data, s.n * s.ho * s.wo, s.co);
    if (!tensor_is_none(dinp)) backward_data(dinp.data, dout.data, weight.data, s, p);
    if (!tensor_is_none(dweight)) backward_weights(dweight.data, dout.data, inp.data, s, p);
}
