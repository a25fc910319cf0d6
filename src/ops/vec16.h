/* Sixteen-float vectors for the hand-vectorised kernels (attention), in two implementations with
 * identical arithmetic, so a kernel is written once and compiled for both:
 *   VecA / veca_*  AVX-512 intrinsics (only when the compiler targets AVX-512F, e.g. -march=native);
 *   VecP / vecp_*  portable C: a struct of 16 floats and per-lane loops using fmaf and rintf.
 * Every operation rounds the same way in both (fused multiply-add, round-to-nearest-even, the same
 * reduction tree), so the portable kernels reproduce the AVX-512 ones bit for bit and can be tested on
 * any machine. A lane count n (1..16) selects the first n lanes of partial loads and stores.
 *
 * exp2 is a range-reduced polynomial: x = k + r with k = rint(x), |r| <= 1/2, 2^r = 1 + r q(r) with q of
 * degree 5 fitted for minimax relative error on [-1/2, 1/2] (iteratively reweighted least squares, then
 * rounded to float), 2^k applied exactly (scalef). Relative error < 1.2e-7 (about one ulp) for results in
 * the normal range; x < -126 gives 0 (no subnormal results: see VEC16_EXP2_MIN), x > 200 gives inf, NaN
 * stays NaN. The attention kernels fold log2(e) into the softmax scale so that they need exp2 only. */
#ifndef DIFFUSE_VEC16_H
#define DIFFUSE_VEC16_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#if defined(__GNUC__)
#define VEC16_INLINE static inline __attribute__((always_inline))
#else
#define VEC16_INLINE static inline
#endif

/* 2^r on [-1/2, 1/2]: 1 + r (C1 + r (C2 + r (C3 + r (C4 + r (C5 + r C6))))). */
#define VEC16_EXP2_C1 0x1.62e430p-1f
#define VEC16_EXP2_C2 0x1.ebfbdcp-3f
#define VEC16_EXP2_C3 0x1.c6aee8p-5f
#define VEC16_EXP2_C4 0x1.3b2d4cp-7f
#define VEC16_EXP2_C5 0x1.5f3e54p-10f
#define VEC16_EXP2_C6 0x1.41fbbcp-13f
/* Inputs above VEC16_EXP2_LIMIT are clamped to it, which keeps 2^k finite in the exponent arithmetic. Below
 * VEC16_EXP2_MIN the result would be subnormal or zero, and it is zero: a subnormal result costs a
 * microcode assist of some 150 cycles on Intel cores, which made the softmax of rows ending in a partial
 * vector (its masked lanes are -inf) 3x slower (rows of 196 scores, 64 x 196: 6.6 against 2.2 us). */
#define VEC16_EXP2_LIMIT 200.0f
#define VEC16_EXP2_MIN -126.0f

/* 2^k for an integer k in [-126, 127], built from its bits. */
VEC16_INLINE float vec16_pow2i(int k) {
    uint32_t bits = (uint32_t)(k + 127) << 23;
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

/* The scalar exp2 both implementations compute (the portable one lane by lane). */
VEC16_INLINE float vec16_exp2(float x) {
    if (x != x) return x;
    if (x < VEC16_EXP2_MIN) return 0.0f;
    x = VEC16_EXP2_LIMIT < x ? VEC16_EXP2_LIMIT : x; /* as the vector code's min(LIMIT, x) */
    float k = rintf(x);
    float r = x - k;
    float p = fmaf(VEC16_EXP2_C6, r, VEC16_EXP2_C5);
    p = fmaf(p, r, VEC16_EXP2_C4);
    p = fmaf(p, r, VEC16_EXP2_C3);
    p = fmaf(p, r, VEC16_EXP2_C2);
    p = fmaf(p, r, VEC16_EXP2_C1);
    p = fmaf(p, r, 1.0f);
    /* p * 2^k rounded once, as scalef does: two exact power-of-two factors, each in the normal range;
     * only the last product can round (to inf). */
    int ki = (int)k, k1 = ki / 2, k2 = ki - k1;
    return p * vec16_pow2i(k1) * vec16_pow2i(k2);
}

/* ------------------------------------------------------------------------------------------------ */
/* Portable implementation */

typedef struct VecP {
    float f[16];
} VecP;

VEC16_INLINE VecP vecp_zero(void) { return (VecP){{0}}; }
VEC16_INLINE VecP vecp_set1(float x) {
    VecP r;
    for (int i = 0; i < 16; i++) r.f[i] = x;
    return r;
}
VEC16_INLINE VecP vecp_load(const float *p) {
    VecP r;
    memcpy(r.f, p, sizeof r.f);
    return r;
}
/* Lanes n..15 read as zero and are not touched in memory. */
VEC16_INLINE VecP vecp_load_n(const float *p, int n) {
    VecP r = {{0}};
    for (int i = 0; i < n; i++) r.f[i] = p[i];
    return r;
}
/* Lanes n..15 take the value fill. */
VEC16_INLINE VecP vecp_load_n_or(const float *p, int n, float fill) {
    VecP r;
    for (int i = 0; i < 16; i++) r.f[i] = i < n ? p[i] : fill;
    return r;
}
/* Lanes n..15 of x replaced by fill. */
VEC16_INLINE VecP vecp_fill_from(VecP x, int n, float fill) {
    for (int i = n; i < 16; i++) x.f[i] = fill;
    return x;
}
VEC16_INLINE void vecp_store(float *p, VecP x) { memcpy(p, x.f, sizeof x.f); }
VEC16_INLINE void vecp_store_n(float *p, VecP x, int n) {
    for (int i = 0; i < n; i++) p[i] = x.f[i];
}
VEC16_INLINE VecP vecp_add(VecP a, VecP b) {
    for (int i = 0; i < 16; i++) a.f[i] += b.f[i];
    return a;
}
VEC16_INLINE VecP vecp_sub(VecP a, VecP b) {
    for (int i = 0; i < 16; i++) a.f[i] -= b.f[i];
    return a;
}
VEC16_INLINE VecP vecp_mul(VecP a, VecP b) {
    for (int i = 0; i < 16; i++) a.f[i] *= b.f[i];
    return a;
}
/* a * b + c, rounded once. */
VEC16_INLINE VecP vecp_fma(VecP a, VecP b, VecP c) {
    for (int i = 0; i < 16; i++) c.f[i] = fmaf(a.f[i], b.f[i], c.f[i]);
    return c;
}
/* a > b ? a : b per lane (so a NaN in b propagates, as with the x86 max instruction). */
VEC16_INLINE VecP vecp_max(VecP a, VecP b) {
    for (int i = 0; i < 16; i++) a.f[i] = a.f[i] > b.f[i] ? a.f[i] : b.f[i];
    return a;
}
VEC16_INLINE VecP vecp_div(VecP a, VecP b) {
    for (int i = 0; i < 16; i++) a.f[i] /= b.f[i];
    return a;
}
/* The value, unchanged (the AVX-512 version keeps it in a register). */
VEC16_INLINE VecP vecp_pin(VecP x) { return x; }
VEC16_INLINE VecP vecp_exp2(VecP x) {
    for (int i = 0; i < 16; i++) x.f[i] = vec16_exp2(x.f[i]);
    return x;
}
/* dst = srcᵀ for 16 x 16 floats, row-major (pure data movement, the same in both implementations). */
VEC16_INLINE void vecp_transpose16(float *dst, const float *src) {
    for (int i = 0; i < 16; i++)
        for (int j = 0; j < 16; j++) dst[16 * j + i] = src[16 * i + j];
}
/* Sum and maximum of the lanes in a fixed tree: lanes i and i + 8, then i + 4, i + 2, i + 1. */
VEC16_INLINE float vecp_hsum(VecP x) {
    for (int w = 8; w >= 1; w /= 2)
        for (int i = 0; i < w; i++) x.f[i] += x.f[i + w];
    return x.f[0];
}
VEC16_INLINE float vecp_hmax(VecP x) {
    for (int w = 8; w >= 1; w /= 2)
        for (int i = 0; i < w; i++) x.f[i] = x.f[i] > x.f[i + w] ? x.f[i] : x.f[i + w];
    return x.f[0];
}

/* ------------------------------------------------------------------------------------------------ */
/* AVX-512 implementation */

#if defined(__AVX512F__)
#include <immintrin.h>

#define VEC16_HAVE_AVX512 1

typedef __m512 VecA;

VEC16_INLINE __mmask16 veca_mask(int n) { return (__mmask16)((1u << n) - 1u); }
VEC16_INLINE VecA veca_zero(void) { return _mm512_setzero_ps(); }
VEC16_INLINE VecA veca_set1(float x) { return _mm512_set1_ps(x); }
VEC16_INLINE VecA veca_load(const float *p) { return _mm512_loadu_ps(p); }
VEC16_INLINE VecA veca_load_n(const float *p, int n) { return _mm512_maskz_loadu_ps(veca_mask(n), p); }
VEC16_INLINE VecA veca_load_n_or(const float *p, int n, float fill) {
    return _mm512_mask_loadu_ps(_mm512_set1_ps(fill), veca_mask(n), p);
}
VEC16_INLINE VecA veca_fill_from(VecA x, int n, float fill) {
    return _mm512_mask_mov_ps(_mm512_set1_ps(fill), veca_mask(n), x);
}
VEC16_INLINE void veca_store(float *p, VecA x) { _mm512_storeu_ps(p, x); }
VEC16_INLINE void veca_store_n(float *p, VecA x, int n) { _mm512_mask_storeu_ps(p, veca_mask(n), x); }
VEC16_INLINE VecA veca_add(VecA a, VecA b) { return _mm512_add_ps(a, b); }
VEC16_INLINE VecA veca_sub(VecA a, VecA b) { return _mm512_sub_ps(a, b); }
VEC16_INLINE VecA veca_mul(VecA a, VecA b) { return _mm512_mul_ps(a, b); }
VEC16_INLINE VecA veca_fma(VecA a, VecA b, VecA c) { return _mm512_fmadd_ps(a, b, c); }
VEC16_INLINE VecA veca_max(VecA a, VecA b) { return _mm512_max_ps(a, b); }
VEC16_INLINE VecA veca_div(VecA a, VecA b) { return _mm512_div_ps(a, b); }
/* Forces x into a register: the compiler may otherwise fold a load used several times into each use. */
VEC16_INLINE VecA veca_pin(VecA x) {
    __asm__("" : "+v"(x));
    return x;
}
VEC16_INLINE VecA veca_exp2(VecA x) {
    /* Lanes below the smallest normal result are set to zero rather than computed (NaN compares
     * unordered, so it is computed and stays NaN). */
    const __mmask16 normal = _mm512_cmp_ps_mask(x, _mm512_set1_ps(VEC16_EXP2_MIN), _CMP_NLT_UQ);
    x = _mm512_min_ps(_mm512_set1_ps(VEC16_EXP2_LIMIT), x);
    VecA k = _mm512_roundscale_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    VecA r = _mm512_sub_ps(x, k);
    VecA p = _mm512_fmadd_ps(_mm512_set1_ps(VEC16_EXP2_C6), r, _mm512_set1_ps(VEC16_EXP2_C5));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(VEC16_EXP2_C4));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(VEC16_EXP2_C3));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(VEC16_EXP2_C2));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(VEC16_EXP2_C1));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    return _mm512_maskz_scalef_ps(normal, p, k);
}
/* Four rounds of 16 shuffles: 32-bit pairs, 64-bit pairs, then 128-bit blocks twice. After the second
 * round r[4g + k] holds, in 128-bit block L, column 4L + k of rows 4g .. 4g+3. */
VEC16_INLINE void veca_transpose16(float *dst, const float *src) {
    __m512 r[16], t[16];
    for (int i = 0; i < 16; i++) r[i] = _mm512_loadu_ps(src + 16 * i);
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 16; i += 4) {
        const __m512d t0 = _mm512_castps_pd(t[i]), t1 = _mm512_castps_pd(t[i + 1]);
        const __m512d t2 = _mm512_castps_pd(t[i + 2]), t3 = _mm512_castps_pd(t[i + 3]);
        r[i] = _mm512_castpd_ps(_mm512_unpacklo_pd(t0, t2));
        r[i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(t0, t2));
        r[i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(t1, t3));
        r[i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(t1, t3));
    }
    for (int k = 0; k < 4; k++) {
        const __m512 u0 = _mm512_shuffle_f32x4(r[k], r[4 + k], 0x44), u1 = _mm512_shuffle_f32x4(r[k], r[4 + k], 0xEE);
        const __m512 v0 = _mm512_shuffle_f32x4(r[8 + k], r[12 + k], 0x44);
        const __m512 v1 = _mm512_shuffle_f32x4(r[8 + k], r[12 + k], 0xEE);
        _mm512_storeu_ps(dst + 16 * k, _mm512_shuffle_f32x4(u0, v0, 0x88));
        _mm512_storeu_ps(dst + 16 * (4 + k), _mm512_shuffle_f32x4(u0, v0, 0xDD));
        _mm512_storeu_ps(dst + 16 * (8 + k), _mm512_shuffle_f32x4(u1, v1, 0x88));
        _mm512_storeu_ps(dst + 16 * (12 + k), _mm512_shuffle_f32x4(u1, v1, 0xDD));
    }
}
/* Lanes 8..15 (with AVX-512F only, no DQ). */
VEC16_INLINE __m256 veca_high_half(VecA x) { return _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(x), 1)); }
VEC16_INLINE float veca_hsum(VecA x) {
    __m256 a = _mm256_add_ps(_mm512_castps512_ps256(x), veca_high_half(x));
    __m128 b = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    b = _mm_add_ps(b, _mm_movehl_ps(b, b));
    b = _mm_add_ss(b, _mm_movehdup_ps(b));
    return _mm_cvtss_f32(b);
}
VEC16_INLINE float veca_hmax(VecA x) {
    __m256 a = _mm256_max_ps(_mm512_castps512_ps256(x), veca_high_half(x));
    __m128 b = _mm_max_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    b = _mm_max_ps(b, _mm_movehl_ps(b, b));
    b = _mm_max_ss(b, _mm_movehdup_ps(b));
    return _mm_cvtss_f32(b);
}
#endif

#endif
