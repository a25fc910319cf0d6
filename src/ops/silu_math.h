/* SiLU and its derivative, shared by the activation op (act.c) and the fused GroupNorm + SiLU
 * (group_norm.c) so that both give the same bits: for one float in plain C (builds without AVX-512), and
 * for sixteen with AVX-512 intrinsics. See act.c for the method and its accuracy. */
#ifndef DIFFUSE_SILU_MATH_H
#define DIFFUSE_SILU_MATH_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

static inline float silu_float_from_bits(uint32_t bits) {
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

/* e^x for x <= 0; below -104 the result is 0, as e^-104 is under half the smallest subnormal. A NaN is
 * treated as -104 too, so the float-to-int conversion below stays defined; the callers' results are NaN
 * anyway, as they multiply by x. */
static inline float silu_exp_nonpositive(float x) {
    x = x >= -104.0f ? x : -104.0f;
    /* k = round(x / ln2) by the 1.5 * 2^23 trick: adding it leaves the integer part in the low mantissa. */
    const float shifter = 12582912.0f;
    float k = (x * 1.44269504088896341f + shifter) - shifter;
    /* ln2 = 0.693359375 (exact in 9 bits, so k * ln2_hi is exact) - 2.12194440e-4 */
    float r = (x - k * 0.693359375f) - k * -2.12194440e-4f;
    float p = 1.0f / 5040.0f;
    p = p * r + 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    /* 2^k with k in [-151, 0], as 2^k1 2^k2, both halves >= -126 and so normal floats. */
    int32_t ki = (int32_t)k, k1 = ki / 2, k2 = ki - k1;
    return p * silu_float_from_bits((uint32_t)(k1 + 127) << 23) * silu_float_from_bits((uint32_t)(k2 + 127) << 23);
}

/* x sigmoid(x), the sigmoid from e = e^-|x| so that nothing overflows. */
static inline float silu_value(float x) {
    float e = silu_exp_nonpositive(x < 0 ? x : -x);
    return x * ((x >= 0 ? 1.0f : e) / (1.0f + e));
}

/* d silu / dx = s + x s (1 - s), s = sigmoid(x), with s and 1 - s each from the side that keeps digits. */
static inline float silu_derivative(float x) {
    float e = silu_exp_nonpositive(x < 0 ? x : -x), inv = 1.0f / (1.0f + e);
    float s = x >= 0 ? inv : e * inv, s_neg = x >= 0 ? e * inv : inv;
    return s * (1.0f + x * s_neg);
}

/* ------------------------------------------------------------------------------------------------ */
/* Sixteen lanes at a time, for the AVX-512 loops of act.c and group_norm.c: the same reduction and
 * polynomial in fused multiply-adds, 2^k by scalef, and each quotient from a 14-bit reciprocal refined by
 * a Newton step and one correction of the quotient (Markstein), within an ulp of a division at a third of
 * its cost (a 512-bit division occupies its port for 10-16 cycles). Not the same bits as the scalar
 * functions above, which serve builds without AVX-512: on an AVX-512 build every SiLU uses these, so the
 * fused and plain ops still agree bit for bit. */
#if defined(__AVX512F__)
#include <immintrin.h>

#define SILU16_INLINE static inline __attribute__((always_inline))

/* The mask of the first min(n, 16) lanes, for the loops' last partial vector. */
SILU16_INLINE __mmask16 silu16_lanes(size_t n) { return n >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << n) - 1u); }

/* e^x for x <= 0 (a NaN gives e^-104, as above). */
SILU16_INLINE __m512 silu_exp_nonpositive16(__m512 x) {
    x = _mm512_max_ps(x, _mm512_set1_ps(-104.0f)); /* a NaN lane takes the second operand */
    __m512 k = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(k, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(k, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_fmadd_ps(_mm512_set1_ps(1.0f / 5040.0f), r, _mm512_set1_ps(1.0f / 720.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(p, k);
}

/* e = e^-|x|, d = 1 + e, inv ~ 1 / d and which lanes have x >= 0. */
typedef struct Silu16 {
    __m512 e, d, inv;
    __mmask16 nonnegative;
} Silu16;

SILU16_INLINE Silu16 silu16_parts(__m512 x) {
    Silu16 p;
    __m512 minus_abs = _mm512_castsi512_ps(_mm512_or_epi32(_mm512_castps_si512(x), _mm512_set1_epi32(INT32_MIN)));
    p.e = silu_exp_nonpositive16(minus_abs);
    p.d = _mm512_add_ps(_mm512_set1_ps(1.0f), p.e);
    __m512 y = _mm512_rcp14_ps(p.d);
    p.inv = _mm512_fmadd_ps(y, _mm512_fnmadd_ps(p.d, y, _mm512_set1_ps(1.0f)), y);
    p.nonnegative = _mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_GE_OQ);
    return p;
}

/* num / d, from inv ~ 1 / d: q = num inv, corrected by its residual num - d q. */
SILU16_INLINE __m512 silu16_quotient(const Silu16 *p, __m512 num) {
    __m512 q = _mm512_mul_ps(num, p->inv);
    return _mm512_fmadd_ps(p->inv, _mm512_fnmadd_ps(p->d, q, num), q);
}

SILU16_INLINE __m512 silu_value16(__m512 x) {
    Silu16 p = silu16_parts(x);
    __m512 s = silu16_quotient(&p, _mm512_mask_blend_ps(p.nonnegative, p.e, _mm512_set1_ps(1.0f)));
    return _mm512_mul_ps(x, s);
}

/* s = sigmoid(x) and 1 - s: the smaller one (<= 1/2) as e / d, the larger as 1 minus it, which cancels
 * nothing; one rounding more than a quotient each, well inside the gradient's tolerance. */
SILU16_INLINE __m512 silu_derivative16(__m512 x) {
    Silu16 p = silu16_parts(x);
    __m512 small = _mm512_mul_ps(p.e, p.inv), large = _mm512_sub_ps(_mm512_set1_ps(1.0f), small);
    __m512 s = _mm512_mask_blend_ps(p.nonnegative, small, large);
    __m512 s_neg = _mm512_mask_blend_ps(p.nonnegative, large, small);
    return _mm512_mul_ps(s, _mm512_fmadd_ps(x, s_neg, _mm512_set1_ps(1.0f)));
}
#endif

#endif
