/* 16-bit float conversions: IEEE half (F16) and bfloat16 (BF16), as stored in safetensors files. */
#ifndef DIFFUSE_HALF_H
#define DIFFUSE_HALF_H

#include <stdint.h>

float half_to_float(uint16_t h);
float bfloat16_to_float(uint16_t b);
/* Round to nearest even; NaN stays NaN. */
uint16_t float_to_bfloat16(float f);

#endif
