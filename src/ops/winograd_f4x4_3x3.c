/* Winograd F(4x4, 3x3) transforms in fp32 (winograd_fp32_transforms.h), points 0, +-1, +-2 and infinity:
 *   B^T = [4 0 -5 0 1 0; 0 -4 -4 1 1 0; 0 4 -4 -1 1 0; 0 -2 -1 2 1 0; 0 2 -1 -2 1 0; 0 4 0 -5 0 1]
 *   G   = [1/4 0 0; -1/6 -1/6 -1/6; -1/6 1/6 -1/6; 1/24 1/12 1/6; 1/24 -1/12 1/6; 0 0 1]
 *   A^T = [1 1 1 1 1 0; 0 1 -1 2 -2 0; 0 1 1 4 4 0; 0 1 -1 8 -8 1]
 * The one-dimensional transforms; the chunks' loops are winograd_fp32_transforms.inc's. */
#include "ops/winograd_fp32_transforms.h"

#if defined(__AVX512F__)

/* G g (three to six): g's taps g[0], g[s], g[2 s] */
WINOGRAD_INLINE void g6(__m512 u[6], const __m512 *g, int s) {
    const __m512 g0 = g[0], g1 = g[s], g2 = g[2 * s];
    const __m512 outer = _mm512_add_ps(g0, g2);
    const __m512 a = _mm512_fmadd_ps(g0, _mm512_set1_ps(1.0f / 24), _mm512_mul_ps(g2, _mm512_set1_ps(1.0f / 6)));
    const __m512 twelfth = _mm512_set1_ps(1.0f / 12);
    u[0] = _mm512_mul_ps(g0, _mm512_set1_ps(1.0f / 4));
    u[1] = _mm512_mul_ps(_mm512_add_ps(outer, g1), _mm512_set1_ps(-1.0f / 6));
    u[2] = _mm512_mul_ps(_mm512_sub_ps(outer, g1), _mm512_set1_ps(-1.0f / 6));
    u[3] = _mm512_fmadd_ps(g1, twelfth, a);
    u[4] = _mm512_fnmadd_ps(g1, twelfth, a);
    u[5] = g2;
}

/* B^T d (one column of six) */
WINOGRAD_INLINE void bt6(__m512 t[6], const __m512 d[6]) {
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
WINOGRAD_INLINE void at6(__m512 y[4], const __m512 m[6]) {
    const __m512 a = _mm512_add_ps(m[1], m[2]), b = _mm512_sub_ps(m[1], m[2]);
    const __m512 c = _mm512_add_ps(m[3], m[4]), d = _mm512_sub_ps(m[3], m[4]);
    y[0] = _mm512_add_ps(_mm512_add_ps(m[0], a), c);
    y[1] = _mm512_fmadd_ps(_mm512_set1_ps(2), d, b);
    y[2] = _mm512_fmadd_ps(_mm512_set1_ps(4), c, a);
    y[3] = _mm512_add_ps(_mm512_fmadd_ps(_mm512_set1_ps(8), d, b), m[5]);
}

/* A dY (four to six) */
WINOGRAD_INLINE void a6(__m512 z[6], const __m512 d[4]) {
    winograd_a_points(z, d);
    z[5] = d[3];
}

/* G^T m (six to three) */
WINOGRAD_INLINE void gt6(__m512 k[3], const __m512 m[6]) {
    const __m512 sum12 = _mm512_add_ps(m[1], m[2]), sum34 = _mm512_add_ps(m[3], m[4]);
    const __m512 sixth = _mm512_set1_ps(1.0f / 6);
    const __m512 inner = _mm512_mul_ps(_mm512_set1_ps(-1.0f / 6), sum12);
    k[0] = _mm512_fmadd_ps(_mm512_set1_ps(1.0f / 4), m[0], _mm512_fmadd_ps(_mm512_set1_ps(1.0f / 24), sum34, inner));
    k[1] = _mm512_fmadd_ps(_mm512_set1_ps(1.0f / 12), _mm512_sub_ps(m[3], m[4]),
                           _mm512_mul_ps(sixth, _mm512_sub_ps(m[2], m[1])));
    k[2] = _mm512_fmadd_ps(sixth, _mm512_sub_ps(sum34, sum12), m[5]);
}

#define R 3
#define G1 g6
#define BT1 bt6
#define AT1 at6
#define A1 a6
#define GT1 gt6
#include "ops/winograd_fp32_transforms.inc"

const WinogradTransforms winograd_f4x4_3x3 = {3, 36, transform_chunk_inputs, transform_chunk_outputs,
                                              transform_chunk_grads, transform_weights, add_kernel_gradients};
#endif
