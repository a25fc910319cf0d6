/* Resize-to-cover and centre crop of uint8 images, as torchvision's Resize(size) + CenterCrop(size) do on
 * PIL images (what diffusers' train_unconditional.py applies to every training image).
 *
 * Geometry (torchvision transforms.functional): the image is scaled so that it covers the target, the
 * shorter side becoming the target side and the longer one int(size * long / short); the crop then starts
 * at round((new - target) / 2) with Python's round-half-to-even.
 *
 * Resampling (PIL Image.resize, Resample.c): separable, horizontal pass first into an 8-bit intermediate,
 * then vertical. Output pixel i of a pass with scale s = in / out is centred at (i + 0.5) s in input
 * coordinates; the filter is stretched by max(s, 1), so shrinking averages over every covered input
 * pixel (antialiasing) and enlarging interpolates. Weights are normalised, rounded to 22-bit fixed point
 * and the sums rounded to nearest. RESIZE_BILINEAR uses the triangle filter (PIL BILINEAR, torchvision's
 * default), RESIZE_AREA the box filter (PIL BOX: the plain area average when shrinking). Outputs equal
 * PIL's bit for bit on the test patterns (tests/test_data.c against tools/torchref/fixtures_data.py). */
#ifndef DIFFUSE_DATA_RESIZE_H
#define DIFFUSE_DATA_RESIZE_H

#include <stddef.h>
#include <stdint.h>

typedef enum ResizeFilter {
    RESIZE_BILINEAR, /* the default, as torchvision.transforms.Resize */
    RESIZE_AREA,
} ResizeFilter;

const char *resize_filter_name(ResizeFilter filter);
/* Returns -1 for an unknown name ("bilinear", "area"). */
int resize_filter_from_name(const char *name, ResizeFilter *filter);

/* The size the image is resized to before the crop: (out_h, out_w) when the aspect ratios agree, else one
 * side equal to the target and the other larger. */
void resize_cover_size(size_t in_h, size_t in_w, size_t out_h, size_t out_w, size_t *new_h, size_t *new_w);

/* out (out_h, out_w, channels) = centre crop of the cover-resized in (in_h, in_w, channels), both
 * channels-last. When the sizes are equal it is a copy. Allocates only a small scratch buffer. */
void resize_crop_u8(uint8_t *out, size_t out_h, size_t out_w, const uint8_t *in, size_t in_h, size_t in_w,
                    size_t channels, ResizeFilter filter);

#endif
