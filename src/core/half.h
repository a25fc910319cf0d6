/* 16-bit float conversions: IEEE half (F16) and bfloat16 (BF16), as stored in safetensors files. */
#ifndef DIFFUSE_HALF_H
#define DIFFUSE_HALF_H

#include <stddef.h>
#include <stdint.h>

float half_to_float(uint16_t h);
float bfloat16_to_float(uint16_t b);
/* Round to nearest even; NaN stays NaN. */
uint16_t float_to_bfloat16(float f);

/* The same rounding, inline, for loops that round as they write (it vectorises). */
static inline uint16_t bfloat16_round(float f) {
    union {
        float f;
        uint32_t u;
    } v = {f};
    uint32_t rounded = (v.u + 0x7FFFu + ((v.u >> 16) & 1u)) >> 16, quiet_nan = (v.u >> 16) | 0x40u;
    return (uint16_t)((v.u & 0x7FFFFFFFu) > 0x7F800000u ? quiet_nan : rounded);
}
#if defined(__AVX512F__)
#include <immintrin.h>
/* The same rounding for sixteen floats at once. */
static inline __attribute__((always_inline)) __m256i bfloat16_round16(__m512 f) {
    const __m512i u = _mm512_castps_si512(f), high = _mm512_srli_epi32(u, 16);
    const __m512i bias = _mm512_add_epi32(_mm512_set1_epi32(0x7FFF), _mm512_and_epi32(high, _mm512_set1_epi32(1)));
    const __m512i rounded = _mm512_srli_epi32(_mm512_add_epi32(u, bias), 16);
    const __mmask16 nan = _mm512_cmpgt_epu32_mask(_mm512_and_epi32(u, _mm512_set1_epi32(0x7FFFFFFF)),
                                                  _mm512_set1_epi32(0x7F800000));
    const __m512i quiet_nan = _mm512_or_epi32(high, _mm512_set1_epi32(0x40));
    return _mm512_cvtepi32_epi16(_mm512_mask_mov_epi32(rounded, nan, quiet_nan));
}
#endif
/* dst[i] = float_to_bfloat16(src[i]) for n values, threaded for large n. */
void floats_to_bfloat16(uint16_t *dst, const float *src, size_t n);

#endif
