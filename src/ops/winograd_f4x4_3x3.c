/* Winograd F(4x4, 3x3) transforms in fp32 (winograd_fp32_transforms.h), points 0, +-1, +-2 and infinity:
 *   B^T = [4 0 -5 0 1 0; 0 -4 -4 1 1 0; 0 4 -4 -1 1 0; 0 -2 -1 2 1 0; 0 2 -1 -2 1 0; 0 4 0 -5 0 1]
 *   G   = [1/4 0 0; -1/6 -1/6 -1/6; -1/6 1/6 -1/6; 1/24 1/12 1/6; 1/24 -1/12 1/6; 0 0 1]
 *   A^T = [1 1 1 1 1 0; 0 1 -1 2 -2 0; 0 1 1 4 4 0; 0 1 -1 8 -8 1] */
#include "ops/winograd_fp32_transforms.h"

#if defined(__AVX512F__)
#include <immintrin.h>

/* G g G^T (6x6) of sixteen kernels g, one per lane, gathered from base + lane * step + (tap k or 8 - k). */
static inline __attribute__((always_inline)) void transform16(__m512 out[36], const float *base, __m512i lanes,
                                                             bool reversed) {
    __m512 g[9], t[6][3];
#pragma GCC unroll 9
    for (int k = 0; k < 9; k++) g[k] = _mm512_i32gather_ps(lanes, base + (reversed ? 8 - k : k), 4);
    const __m512 quarter = _mm512_set1_ps(1.0f / 4), sixth = _mm512_set1_ps(1.0f / 6),
                 twelfth = _mm512_set1_ps(1.0f / 12), twentyfourth = _mm512_set1_ps(1.0f / 24);
#pragma GCC unroll 3
    for (int c = 0; c < 3; c++) { /* G g: column c */
        const __m512 g0 = g[c], g1 = g[3 + c], g2 = g[6 + c];
        const __m512 outer = _mm512_add_ps(g0, g2);
        const __m512 a = _mm512_fmadd_ps(g0, twentyfourth, _mm512_mul_ps(g2, sixth));
        t[0][c] = _mm512_mul_ps(g0, quarter);
        t[1][c] = _mm512_mul_ps(_mm512_add_ps(outer, g1), _mm512_set1_ps(-1.0f / 6));
        t[2][c] = _mm512_mul_ps(_mm512_sub_ps(outer, g1), _mm512_set1_ps(-1.0f / 6));
        t[3][c] = _mm512_fmadd_ps(g1, twelfth, a);
        t[4][c] = _mm512_fnmadd_ps(g1, twelfth, a);
        t[5][c] = g2;
    }
#pragma GCC unroll 6
    for (int r = 0; r < 6; r++) { /* (G g) G^T: row r */
        const __m512 g0 = t[r][0], g1 = t[r][1], g2 = t[r][2];
        const __m512 outer = _mm512_add_ps(g0, g2);
        const __m512 a = _mm512_fmadd_ps(g0, twentyfourth, _mm512_mul_ps(g2, sixth));
        out[6 * r + 0] = _mm512_mul_ps(g0, quarter);
        out[6 * r + 1] = _mm512_mul_ps(_mm512_add_ps(outer, g1), _mm512_set1_ps(-1.0f / 6));
        out[6 * r + 2] = _mm512_mul_ps(_mm512_sub_ps(outer, g1), _mm512_set1_ps(-1.0f / 6));
        out[6 * r + 3] = _mm512_fmadd_ps(g1, twelfth, a);
        out[6 * r + 4] = _mm512_fnmadd_ps(g1, twelfth, a);
        out[6 * r + 5] = g2;
    }
}

/* U for every pair (a: output, b: input): forward, g(a, b) = weight[a][b]; flipped, weight[b][a] reversed. */
static void transform_weights(float *u, const float *weight, size_t co, size_t ci, bool flipped) {
    const size_t outs = flipped ? ci : co, ins = flipped ? co : ci;
    const size_t a_step = flipped ? 9 : ci * 9, b_step = flipped ? ci * 9 : 9;
    const __m512i lanes = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                             _mm512_set1_epi32((int)a_step));
#pragma omp parallel for schedule(static)
    for (size_t b = 0; b < ins; b++)
        for (size_t a = 0; a < outs; a += 16) {
            __m512 w[36];
            transform16(w, weight + a * a_step + b * b_step, lanes, flipped);
#pragma GCC unroll 36
            for (size_t x = 0; x < 36; x++) _mm512_storeu_ps(u + (x * ins + b) * outs + a, w[x]);
        }
}

/* B^T d (one column of six) */
static inline __attribute__((always_inline)) void bt6(__m512 t[6], const __m512 d[6]) {
    const __m512 four = _mm512_set1_ps(4), five = _mm512_set1_ps(5), two = _mm512_set1_ps(2);
    const __m512 p = _mm512_fnmadd_ps(four, d[2], d[4]), q = _mm512_fnmadd_ps(four, d[1], d[3]);
    const __m512 r = _mm512_sub_ps(d[4], d[2]), s = _mm512_sub_ps(d[3], d[1]);
    t[0] = _mm512_fmadd_ps(four, d[0], _mm512_fnmadd_ps(five, d[2], d[4]));
    t[1] = _mm512_add_ps(p, q);
    t[2] = _mm512_sub_ps(p, q);
    t[3] = _mm512_fmadd_ps(two, s, r);
    t[4] = _mm512_fnmadd_ps(two, s, r);
    t[5] = _mm512_fmadd_ps(four, d[1], _mm512_fnmadd_ps(five, d[3], d[5]));
}

/* A^T m (six to four) */
static inline __attribute__((always_inline)) void at6(__m512 y[4], const __m512 m[6]) {
    const __m512 a = _mm512_add_ps(m[1], m[2]), b = _mm512_sub_ps(m[1], m[2]);
    const __m512 c = _mm512_add_ps(m[3], m[4]), d = _mm512_sub_ps(m[3], m[4]);
    y[0] = _mm512_add_ps(_mm512_add_ps(m[0], a), c);
    y[1] = _mm512_fmadd_ps(_mm512_set1_ps(2), d, b);
    y[2] = _mm512_fmadd_ps(_mm512_set1_ps(4), c, a);
    y[3] = _mm512_add_ps(_mm512_fmadd_ps(_mm512_set1_ps(8), d, b), m[5]);
}

/* V of the chunk's tiles (padding read as zeros through masked loads). */
static void transform_chunk_inputs(float *v, size_t stride, const float *in, TileGeometry g, size_t c0, size_t c1,
                                   size_t first, size_t count) {
    const size_t width = c1 - c0;
    for (size_t t = 0; t < count; t++) {
        const TileOrigin o = tile_origin(g, first + t);
        size_t at[6][6];
        __mmask16 inside[6][6];
        for (int i = 0; i < 6; i++)
            for (int j = 0; j < 6; j++) inside[i][j] = tile_patch_position(g, o, i, j, &at[i][j]) ? 0xFFFF : 0;
        for (size_t c = c0; c < c1; c += 16) {
            __m512 cols[6][6]; /* B^T d: [row of result][column of patch] */
#pragma GCC unroll 6
            for (int j = 0; j < 6; j++) {
                __m512 d[6], t6[6];
#pragma GCC unroll 6
                for (int i = 0; i < 6; i++) d[i] = _mm512_maskz_loadu_ps(inside[i][j], in + at[i][j] + c);
                bt6(t6, d);
#pragma GCC unroll 6
                for (int i = 0; i < 6; i++) cols[i][j] = t6[i];
            }
#pragma GCC unroll 6
            for (int i = 0; i < 6; i++) {
                __m512 t6[6];
                bt6(t6, cols[i]);
#pragma GCC unroll 6
                for (int j = 0; j < 6; j++)
                    _mm512_storeu_ps(v + (size_t)(6 * i + j) * stride + t * width + c - c0, t6[j]);
            }
        }
    }
}

/* out (+)= A^T M A (+ bias) for the chunk's tiles. */
static void transform_chunk_outputs(float *out, bool accumulate, const float *bias, const float *m, size_t stride,
                                    TileGeometry g, size_t first, size_t count) {
    for (size_t t = 0; t < count; t++) {
        const TileOrigin at = tile_origin(g, first + t);
        for (size_t o = 0; o < g.outs; o += 16) {
            __m512 rows[4][6]; /* A^T M: [row of result][column] */
#pragma GCC unroll 6
            for (int j = 0; j < 6; j++) {
                __m512 col[6], y[4];
#pragma GCC unroll 6
                for (int i = 0; i < 6; i++) col[i] = _mm512_loadu_ps(m + (size_t)(6 * i + j) * stride + t * g.outs + o);
                at6(y, col);
#pragma GCC unroll 4
                for (int i = 0; i < 4; i++) rows[i][j] = y[i];
            }
            const __m512 b = bias ? _mm512_loadu_ps(bias + o) : _mm512_setzero_ps();
#pragma GCC unroll 4
            for (size_t i = 0; i < 4; i++) {
                if (at.y + i >= g.h) break;
                __m512 y[4];
                at6(y, rows[i]);
#pragma GCC unroll 4
                for (size_t j = 0; j < 4; j++) {
                    if (at.x + j >= g.w) break;
                    float *dst = out + ((at.n * g.h + at.y + i) * g.w + at.x + j) * g.outs + o;
                    const __m512 r = _mm512_add_ps(y[j], b);
                    _mm512_storeu_ps(dst, accumulate ? _mm512_add_ps(_mm512_loadu_ps(dst), r) : r);
                }
            }
        }
    }
}

/* A dY (four to six) */
static inline __attribute__((always_inline)) void a6(__m512 z[6], const __m512 d[4]) {
    const __m512 p = _mm512_add_ps(d[0], d[2]), q = _mm512_add_ps(d[1], d[3]);
    const __m512 r = _mm512_fmadd_ps(_mm512_set1_ps(4), d[2], d[0]);
    const __m512 s = _mm512_fmadd_ps(_mm512_set1_ps(8), d[3], _mm512_add_ps(d[1], d[1]));
    z[0] = d[0];
    z[1] = _mm512_add_ps(p, q);
    z[2] = _mm512_sub_ps(p, q);
    z[3] = _mm512_add_ps(r, s);
    z[4] = _mm512_sub_ps(r, s);
    z[5] = d[3];
}

/* Z of the chunk's tiles. */
static void transform_chunk_grads(float *z, size_t stride, const float *dout, TileGeometry g, size_t o0, size_t o1,
                                  size_t first, size_t count) {
    const size_t width = o1 - o0;
    for (size_t t = 0; t < count; t++) {
        const TileOrigin at = tile_origin(g, first + t);
        for (size_t o = o0; o < o1; o += 16) {
            __m512 rows[6][4]; /* A dY: [row of result][column] */
#pragma GCC unroll 4
            for (size_t j = 0; j < 4; j++) {
                __m512 col[4], y[6];
#pragma GCC unroll 4
                for (size_t i = 0; i < 4; i++)
                    col[i] = at.y + i < g.h && at.x + j < g.w
                                 ? _mm512_loadu_ps(dout + ((at.n * g.h + at.y + i) * g.w + at.x + j) * g.outs + o)
                                 : _mm512_setzero_ps();
                a6(y, col);
#pragma GCC unroll 6
                for (int i = 0; i < 6; i++) rows[i][j] = y[i];
            }
#pragma GCC unroll 6
            for (int i = 0; i < 6; i++) {
                __m512 y[6];
                a6(y, rows[i]);
#pragma GCC unroll 6
                for (int j = 0; j < 6; j++)
                    _mm512_storeu_ps(z + (size_t)(6 * i + j) * stride + t * width + o - o0, y[j]);
            }
        }
    }
}

/* G^T m (six to three) */
static inline __attribute__((always_inline)) void gt6(__m512 k[3], const __m512 m[6]) {
    const __m512 sum12 = _mm512_add_ps(m[1], m[2]), sum34 = _mm512_add_ps(m[3], m[4]);
    const __m512 sixth = _mm512_set1_ps(1.0f / 6);
    const __m512 inner = _mm512_mul_ps(_mm512_set1_ps(-1.0f / 6), sum12);
    k[0] = _mm512_fmadd_ps(_mm512_set1_ps(1.0f / 4), m[0], _mm512_fmadd_ps(_mm512_set1_ps(1.0f / 24), sum34, inner));
    k[1] = _mm512_fmadd_ps(_mm512_set1_ps(1.0f / 12), _mm512_sub_ps(m[3], m[4]),
                           _mm512_mul_ps(sixth, _mm512_sub_ps(m[2], m[1])));
    k[2] = _mm512_fmadd_ps(sixth, _mm512_sub_ps(sum34, sum12), m[5]);
}

/* dweight += G^T dU G, sixteen output channels at a time. */
static void add_kernel_gradients(float *dweight, size_t ci, const float *du, size_t parts, size_t part, WeightBlock b,
                                 size_t i) {
    const __m512i lanes = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                             _mm512_set1_epi32((int)(ci * 9)));
    const size_t ins = b.i1 - b.i0, outs = b.o1 - b.o0;
    for (size_t o = b.o0; o < b.o1; o += 16) {
        __m512 t[3][6]; /* G^T dU */
#pragma GCC unroll 6
        for (int c = 0; c < 6; c++) {
            __m512 m[6], k[3];
#pragma GCC unroll 6
            for (int r = 0; r < 6; r++) {
                const float *at = du + ((size_t)(6 * r + c) * ins + i - b.i0) * outs + o - b.o0;
                m[r] = _mm512_loadu_ps(at);
                for (size_t p = 1; p < parts; p++) m[r] = _mm512_add_ps(m[r], _mm512_loadu_ps(at + p * part));
            }
            gt6(k, m);
#pragma GCC unroll 3
            for (int r = 0; r < 3; r++) t[r][c] = k[r];
        }
        float *base = dweight + (o * ci + i) * 9;
#pragma GCC unroll 3
        for (int r = 0; r < 3; r++) { /* (G^T dU) G */
            __m512 k[3];
            gt6(k, t[r]);
#pragma GCC unroll 3
            for (int c = 0; c < 3; c++) {
                float *at = base + 3 * r + c;
                _mm512_i32scatter_ps(at, lanes, _mm512_add_ps(_mm512_i32gather_ps(lanes, at, 4), k[c]), 4);
            }
        }
    }
}

const WinogradTransforms winograd_f4x4_3x3 = {3, 36, transform_chunk_inputs, transform_chunk_outputs,
                                              transform_chunk_grads, transform_weights, add_kernel_gradients};
#endif
