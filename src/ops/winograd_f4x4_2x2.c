/* Winograd F(4x4, 2x2) transforms in fp32 (winograd_fp32_transforms.h), points 0, 1, -1, 2 and infinity
 * (derived as Lavin and Gray's wincnn does): 25 products per 4x4 tile where a 2x2 kernel takes 64. The
 * upsamplers' output phases are such convolutions (upsample_conv.c).
 *   B^T = [2 -1 -2 1 0; 0 -2 -1 1 0; 0 2 -3 1 0; 0 -1 0 1 0; 0 2 -1 -2 1]
 *   G   = [1/2 0; -1/2 -1/2; -1/6 1/6; 1/6 1/3; 0 1]
 *   A^T = [1 1 1 1 0; 0 1 -1 2 0; 0 1 1 4 0; 0 1 -1 8 1] */
#include "ops/winograd_fp32_transforms.h"

#if defined(__AVX512F__)
#include <immintrin.h>

#define F42_INLINE static inline __attribute__((always_inline))

/* G g (two to five) */
F42_INLINE void g5(__m512 u[5], __m512 g0, __m512 g1) {
    u[0] = _mm512_mul_ps(g0, _mm512_set1_ps(0.5f));
    u[1] = _mm512_mul_ps(_mm512_add_ps(g0, g1), _mm512_set1_ps(-0.5f));
    u[2] = _mm512_mul_ps(_mm512_sub_ps(g1, g0), _mm512_set1_ps(1.0f / 6));
    u[3] = _mm512_fmadd_ps(g1, _mm512_set1_ps(1.0f / 3), _mm512_mul_ps(g0, _mm512_set1_ps(1.0f / 6)));
    u[4] = g1;
}

/* U for every pair (a: output, b: input), sixteen kernels a at a time gathered tap by tap: forward,
 * g(a, b) = weight[a][b]; flipped, weight[b][a] with its taps reversed. */
static void transform_weights(float *u, const float *weight, size_t co, size_t ci, bool flipped) {
    const size_t outs = flipped ? ci : co, ins = flipped ? co : ci;
    const size_t a_step = flipped ? 4 : ci * 4, b_step = flipped ? ci * 4 : 4;
    const __m512i lanes = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                             _mm512_set1_epi32((int)a_step));
#pragma omp parallel for schedule(static)
    for (size_t b = 0; b < ins; b++)
        for (size_t a = 0; a < outs; a += 16) {
            const float *base = weight + a * a_step + b * b_step;
            __m512 g[4], t[2][5], w[5];
#pragma GCC unroll 4
            for (int k = 0; k < 4; k++) g[k] = _mm512_i32gather_ps(lanes, base + (flipped ? 3 - k : k), 4);
            g5(t[0], g[0], g[2]); /* G g: column 0, column 1 */
            g5(t[1], g[1], g[3]);
#pragma GCC unroll 5
            for (int r = 0; r < 5; r++) { /* (G g) G^T: row r */
                g5(w, t[0][r], t[1][r]);
#pragma GCC unroll 5
                for (int c = 0; c < 5; c++) _mm512_storeu_ps(u + ((size_t)(5 * r + c) * ins + b) * outs + a, w[c]);
            }
        }
}

/* B^T d (one column of five) */
F42_INLINE void bt5(__m512 t[5], const __m512 d[5]) {
    const __m512 two = _mm512_set1_ps(2);
    const __m512 s = _mm512_sub_ps(d[3], d[1]), p = _mm512_sub_ps(d[3], d[2]);
    t[0] = _mm512_fmadd_ps(two, _mm512_sub_ps(d[0], d[2]), s);
    t[1] = _mm512_fnmadd_ps(two, d[1], p);
    t[2] = _mm512_fmadd_ps(two, _mm512_sub_ps(d[1], d[2]), p);
    t[3] = s;
    t[4] = _mm512_fnmadd_ps(two, s, _mm512_sub_ps(d[4], d[2]));
}

/* A^T m (five to four) */
F42_INLINE void at5(__m512 y[4], const __m512 m[5]) {
    const __m512 a = _mm512_add_ps(m[1], m[2]), b = _mm512_sub_ps(m[1], m[2]);
    y[0] = _mm512_add_ps(_mm512_add_ps(m[0], a), m[3]);
    y[1] = _mm512_fmadd_ps(_mm512_set1_ps(2), m[3], b);
    y[2] = _mm512_fmadd_ps(_mm512_set1_ps(4), m[3], a);
    y[3] = _mm512_add_ps(_mm512_fmadd_ps(_mm512_set1_ps(8), m[3], b), m[4]);
}

/* V of the chunk's tiles (padding read as zeros through masked loads). */
static void transform_chunk_inputs(float *v, size_t stride, const float *in, TileGeometry g, size_t c0, size_t c1,
                                   size_t first, size_t count) {
    const size_t width = c1 - c0;
    for (size_t t = 0; t < count; t++) {
        const TileOrigin o = tile_origin(g, first + t);
        size_t at[5][5];
        __mmask16 inside[5][5];
        for (int i = 0; i < 5; i++)
            for (int j = 0; j < 5; j++) inside[i][j] = tile_patch_position(g, o, i, j, &at[i][j]) ? 0xFFFF : 0;
        for (size_t c = c0; c < c1; c += 16) {
            __m512 cols[5][5]; /* B^T d: [row of result][column of patch] */
#pragma GCC unroll 5
            for (int j = 0; j < 5; j++) {
                __m512 d[5], t5[5];
#pragma GCC unroll 5
                for (int i = 0; i < 5; i++) d[i] = _mm512_maskz_loadu_ps(inside[i][j], in + at[i][j] + c);
                bt5(t5, d);
#pragma GCC unroll 5
                for (int i = 0; i < 5; i++) cols[i][j] = t5[i];
            }
#pragma GCC unroll 5
            for (int i = 0; i < 5; i++) {
                __m512 t5[5];
                bt5(t5, cols[i]);
#pragma GCC unroll 5
                for (int j = 0; j < 5; j++)
                    _mm512_storeu_ps(v + (size_t)(5 * i + j) * stride + t * width + c - c0, t5[j]);
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
            __m512 rows[4][5]; /* A^T M: [row of result][column] */
#pragma GCC unroll 5
            for (int j = 0; j < 5; j++) {
                __m512 col[5], y[4];
#pragma GCC unroll 5
                for (int i = 0; i < 5; i++) col[i] = _mm512_loadu_ps(m + (size_t)(5 * i + j) * stride + t * g.outs + o);
                at5(y, col);
#pragma GCC unroll 4
                for (int i = 0; i < 4; i++) rows[i][j] = y[i];
            }
            const __m512 b = bias ? _mm512_loadu_ps(bias + o) : _mm512_setzero_ps();
#pragma GCC unroll 4
            for (size_t i = 0; i < 4; i++) {
                if (at.y + i >= g.h) break;
                __m512 y[4];
                at5(y, rows[i]);
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

/* A dY (four to five) */
F42_INLINE void a5(__m512 z[5], const __m512 d[4]) {
    const __m512 p = _mm512_add_ps(d[0], d[2]), q = _mm512_add_ps(d[1], d[3]);
    const __m512 r = _mm512_fmadd_ps(_mm512_set1_ps(4), d[2], d[0]);
    const __m512 s = _mm512_fmadd_ps(_mm512_set1_ps(8), d[3], _mm512_add_ps(d[1], d[1]));
    z[0] = d[0];
    z[1] = _mm512_add_ps(p, q);
    z[2] = _mm512_sub_ps(p, q);
    z[3] = _mm512_add_ps(r, s);
    z[4] = d[3];
}

/* Z of the chunk's tiles. */
static void transform_chunk_grads(float *z, size_t stride, const float *dout, TileGeometry g, size_t o0, size_t o1,
                                  size_t first, size_t count) {
    const size_t width = o1 - o0;
    for (size_t t = 0; t < count; t++) {
        const TileOrigin at = tile_origin(g, first + t);
        for (size_t o = o0; o < o1; o += 16) {
            __m512 rows[5][4]; /* A dY: [row of result][column] */
#pragma GCC unroll 4
            for (size_t j = 0; j < 4; j++) {
                __m512 col[4], y[5];
#pragma GCC unroll 4
                for (size_t i = 0; i < 4; i++)
                    col[i] = at.y + i < g.h && at.x + j < g.w
                                 ? _mm512_loadu_ps(dout + ((at.n * g.h + at.y + i) * g.w + at.x + j) * g.outs + o)
                                 : _mm512_setzero_ps();
                a5(y, col);
#pragma GCC unroll 5
                for (int i = 0; i < 5; i++) rows[i][j] = y[i];
            }
#pragma GCC unroll 5
            for (int i = 0; i < 5; i++) {
                __m512 y[5];
                a5(y, rows[i]);
#pragma GCC unroll 5
                for (int j = 0; j < 5; j++)
                    _mm512_storeu_ps(z + (size_t)(5 * i + j) * stride + t * width + o - o0, y[j]);
            }
        }
    }
}

/* G^T m (five to two) */
F42_INLINE void gt5(__m512 k[2], const __m512 m[5]) {
    const __m512 half = _mm512_set1_ps(0.5f), sixth = _mm512_set1_ps(1.0f / 6);
    k[0] = _mm512_fmadd_ps(half, _mm512_sub_ps(m[0], m[1]), _mm512_mul_ps(sixth, _mm512_sub_ps(m[3], m[2])));
    k[1] = _mm512_fnmadd_ps(half, m[1],
                            _mm512_fmadd_ps(sixth, m[2], _mm512_fmadd_ps(_mm512_set1_ps(1.0f / 3), m[3], m[4])));
}

/* dweight += G^T dU G, sixteen output channels at a time. */
static void add_kernel_gradients(float *dweight, size_t ci, const float *du, size_t parts, size_t part, WeightBlock b,
                                 size_t i) {
    const __m512i lanes = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                             _mm512_set1_epi32((int)(ci * 4)));
    const size_t ins = b.i1 - b.i0, outs = b.o1 - b.o0;
    for (size_t o = b.o0; o < b.o1; o += 16) {
        __m512 t[2][5]; /* G^T dU */
#pragma GCC unroll 5
        for (int c = 0; c < 5; c++) {
            __m512 m[5], k[2];
#pragma GCC unroll 5
            for (int r = 0; r < 5; r++) {
                const float *at = du + ((size_t)(5 * r + c) * ins + i - b.i0) * outs + o - b.o0;
                m[r] = _mm512_loadu_ps(at);
                for (size_t p = 1; p < parts; p++) m[r] = _mm512_add_ps(m[r], _mm512_loadu_ps(at + p * part));
            }
            gt5(k, m);
            t[0][c] = k[0], t[1][c] = k[1];
        }
        float *base = dweight + (o * ci + i) * 4;
#pragma GCC unroll 2
        for (int r = 0; r < 2; r++) { /* (G^T dU) G */
            __m512 k[2];
            gt5(k, t[r]);
#pragma GCC unroll 2
            for (int c = 0; c < 2; c++) {
                float *at = base + 2 * r + c;
                _mm512_i32scatter_ps(at, lanes, _mm512_add_ps(_mm512_i32gather_ps(lanes, at, 4), k[c]), 4);
            }
        }
    }
}

const WinogradTransforms winograd_f4x4_2x2 = {2, 25, transform_chunk_inputs, transform_chunk_outputs,
                                              transform_chunk_grads, transform_weights, add_kernel_gradients};
#endif
