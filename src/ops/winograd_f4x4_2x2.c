/* Winograd F(4x4, 2x2) transforms in fp32 (winograd_fp32_transforms.h), points 0, 1, -1, 2 and infinity
 * (derived as Lavin and Gray's wincnn does): 25 products per 4x4 tile where a 2x2 kernel takes 64. The
 * upsamplers' output phases are such convolutions (upsample_conv.c).
 *   B^T = [2 -1 -2 1 0; 0 -2 -1 1 0; 0 2 -3 1 0; 0 -1 0 1 0; 0 2 -1 -2 1]
 *   G   = [1/2 0; -1/2 -1/2; -1/6 1/6; 1/6 1/3; 0 1]
 *   A^T = [1 1 1 1 0; 0 1 -1 2 0; 0 1 1 4 0; 0 1 -1 8 1]
 * The one-dimensional transforms; the chunks' loops are winograd_fp32_transforms.inc's. */
#include "ops/winograd_fp32_transforms.h"

#if defined(__AVX512F__)

/* G g (two to five): g's taps g[0], g[s] */
WINOGRAD_INLINE void g5(__m512 u[5], const __m512 *g, int s) {
    const __m512 g0 = g[0], g1 = g[s];
    u[0] = _mm512_mul_ps(g0, _mm512_set1_ps(0.5f));
    u[1] = _mm512_mul_ps(_mm512_add_ps(g0, g1), _mm512_set1_ps(-0.5f));
    u[2] = _mm512_mul_ps(_mm512_sub_ps(g1, g0), _mm512_set1_ps(1.0f / 6));
    u[3] = _mm512_fmadd_ps(g1, _mm512_set1_ps(1.0f / 3), _mm512_mul_ps(g0, _mm512_set1_ps(1.0f / 6)));
    u[4] = g1;
}

/* B^T d (one column of five) */
WINOGRAD_INLINE void bt5(__m512 t[5], const __m512 d[5]) {
    const __m512 two = _mm512_set1_ps(2);
    const __m512 s = _mm512_sub_ps(d[3], d[1]), p = _mm512_sub_ps(d[3], d[2]);
    t[0] = _mm512_fmadd_ps(two, _mm512_sub_ps(d[0], d[2]), s);
    t[1] = _mm512_fnmadd_ps(two, d[1], p);
    t[2] = _mm512_fmadd_ps(two, _mm512_sub_ps(d[1], d[2]), p);
    t[3] = s;
    t[4] = _mm512_fnmadd_ps(two, s, _mm512_sub_ps(d[4], d[2]));
}

/* A^T m (five to four) */
WINOGRAD_INLINE void at5(__m512 y[4], const __m512 m[5]) {
    const __m512 a = _mm512_add_ps(m[1], m[2]), b = _mm512_sub_ps(m[1], m[2]);
    y[0] = _mm512_add_ps(_mm512_add_ps(m[0], a), m[3]);
    y[1] = _mm512_fmadd_ps(_mm512_set1_ps(2), m[3], b);
    y[2] = _mm512_fmadd_ps(_mm512_set1_ps(4), m[3], a);
    y[3] = _mm512_add_ps(_mm512_fmadd_ps(_mm512_set1_ps(8), m[3], b), m[4]);
}

/* A dY (four to five) */
WINOGRAD_INLINE void a5(__m512 z[5], const __m512 d[4]) {
    winograd_a_points(z, d);
    z[4] = d[3];
}

/* G^T m (five to two) */
WINOGRAD_INLINE void gt5(__m512 k[2], const __m512 m[5]) {
    const __m512 half = _mm512_set1_ps(0.5f), sixth = _mm512_set1_ps(1.0f / 6);
    k[0] = _mm512_fmadd_ps(half, _mm512_sub_ps(m[0], m[1]), _mm512_mul_ps(sixth, _mm512_sub_ps(m[3], m[2])));
    k[1] = _mm512_fnmadd_ps(half, m[1],
                            _mm512_fmadd_ps(sixth, m[2], _mm512_fmadd_ps(_mm512_set1_ps(1.0f / 3), m[3], m[4])));
}

#define R 2
#define G1 g5
#define BT1 bt5
#define AT1 at5
#define A1 a5
#define GT1 gt5
#include "ops/winograd_fp32_transforms.inc"

const WinogradTransforms winograd_f4x4_2x2 = {2, 25, transform_chunk_inputs, transform_chunk_outputs,
                                              transform_chunk_grads, transform_weights, add_kernel_gradients};
#endif
