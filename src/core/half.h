/* 16-bit float conversions: IEEE half (F16) and bfloat16 (BF16), as stored in safetensors files. */
#ifndef DIFFUSE_HALF_H
#define DIFFUSE_HALF_H

#include <stddef.h>
#include <stdint.h>

float half_to_float(uint16_t h);
float bfloat16_to_float(uint16_t b);
/* Round to nearest even; NaN stays NaN. */
uint16_t float_to_bfloat16(float f);
/* dst[i] = float_to_bfloat16(src[i]) for n values, threaded for large n. */
void floats_to_bfloat16(uint16_t *dst, const float *src, size_t n);

#endif
