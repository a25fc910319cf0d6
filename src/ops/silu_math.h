/* SiLU and its derivative for one float, shared by the activation op (act.c) and the fused GroupNorm +
 * SiLU (group_norm.c) so that both give the same bits. Plain C the compiler vectorises inside
 * `omp simd` loops; see act.c for the method and its accuracy. */
#ifndef DIFFUSE_SILU_MATH_H
#define DIFFUSE_SILU_MATH_H

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

#endif
