/* 16-bit float conversions (see half.h). Written bit by bit so they are exact for every input,
 * subnormals, infinities and NaN included. */
#include "core/half.h"

#include <string.h>

static float float_from_bits(uint32_t bits) {
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

float half_to_float(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exponent = (h >> 10) & 0x1Fu;
    uint32_t mantissa = h & 0x3FFu;
    if (exponent == 0x1F) return float_from_bits(sign | 0x7F800000u | (mantissa << 13)); /* inf / NaN */
    if (exponent == 0) {
        if (mantissa == 0) return float_from_bits(sign);
        /* Subnormal half: value = mantissa * 2^-24, exact in float. */
        float value = (float)mantissa * (1.0f / 16777216.0f);
        return sign ? -value : value;
    }
    return float_from_bits(sign | ((exponent + 112) << 23) | (mantissa << 13));
}

float bfloat16_to_float(uint16_t b) { return float_from_bits((uint32_t)b << 16); }

uint16_t float_to_bfloat16(float f) { return bfloat16_round(f); }

void floats_to_bfloat16(uint16_t *restrict dst, const float *restrict src, size_t n) {
#if defined(__AVX512F__)
    const size_t n16 = n / 16 * 16;
#pragma omp parallel for schedule(static) if (n >= 65536)
    for (size_t i = 0; i < n16; i += 16)
        _mm256_storeu_si256((__m256i *)(dst + i), bfloat16_round16(_mm512_loadu_ps(src + i)));
    for (size_t i = n16; i < n; i++) dst[i] = bfloat16_round(src[i]);
#else
#pragma omp parallel for simd schedule(static) if (n >= 65536)
    for (size_t i = 0; i < n; i++) dst[i] = bfloat16_round(src[i]);
#endif
}
