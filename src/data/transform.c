/* Pixel transforms (see transform.h). */
#include "data/transform.h"

#include <string.h>

#include "core/check.h"

uint8_t transform_luma(uint8_t r, uint8_t g, uint8_t b) {
    return (uint8_t)(((uint32_t)r * 19595u + (uint32_t)g * 38470u + (uint32_t)b * 7471u + 0x8000u) >> 16);
}

void transform_channels(uint8_t *out, size_t out_channels, const uint8_t *in, size_t in_channels,
                        size_t n_pixels) {
    CHECK((in_channels == 1 || in_channels == 3) && (out_channels == 1 || out_channels == 3),
          "channels %zu -> %zu: only 1 and 3 are supported", in_channels, out_channels);
    if (in_channels == out_channels) {
        memcpy(out, in, n_pixels * in_channels);
    } else if (in_channels == 1) {
        for (size_t i = 0; i < n_pixels; i++) out[3 * i] = out[3 * i + 1] = out[3 * i + 2] = in[i];
    } else {
        for (size_t i = 0; i < n_pixels; i++) out[i] = transform_luma(in[3 * i], in[3 * i + 1], in[3 * i + 2]);
    }
}

float transform_level_to_float(uint8_t v) {
    /* Two float32 roundings, in torch's order: ToTensor's division, then Normalize's (x - 0.5) / 0.5. */
    return ((float)v / 255.0f - 0.5f) / 0.5f;
}

void transform_image_to_float(float *out, const uint8_t *in, size_t h, size_t w, size_t c, int flip) {
    float level[256];
    for (int v = 0; v < 256; v++) level[v] = transform_level_to_float((uint8_t)v);
    for (size_t y = 0; y < h; y++) {
        const uint8_t *row = in + y * w * c;
        float *dst = out + y * w * c;
        for (size_t x = 0; x < w; x++) {
            const uint8_t *p = row + (flip ? w - 1 - x : x) * c;
            for (size_t k = 0; k < c; k++) dst[x * c + k] = level[p[k]];
        }
    }
}
