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
/* dst[i] = float_to_bfloat16(src[i]) for n values, threaded for large n. */
void floats_to_bfloat16(uint16_t *dst, const float *src, size_t n);

#endif
