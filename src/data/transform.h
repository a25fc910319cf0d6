/* Pixel transforms between the stored uint8 images and the model's input, matching what diffusers'
 * train_unconditional.py does with PIL and torchvision:
 *   - channel conversion before resizing: grey -> RGB repeats the value (PIL convert("RGB")); RGB -> grey
 *     is ITU-R 601-2 luma, L = R 299/1000 + G 587/1000 + B 114/1000, computed as PIL's convert("L") does
 *     in 16-bit fixed point: (19595 R + 38470 G + 7471 B + 2^15) >> 16;
 *   - ToTensor + Normalize([0.5], [0.5]): x = (v / 255 - 0.5) / 0.5 in float32, i.e. x/127.5 - 1 with
 *     torch's two float32 roundings, equal bit for bit to torch;
 *   - RandomHorizontalFlip: mirrored columns; whether a sample is flipped is the loader's decision. */
#ifndef DIFFUSE_DATA_TRANSFORM_H
#define DIFFUSE_DATA_TRANSFORM_H

#include <stddef.h>
#include <stdint.h>

/* out (n_pixels, out_channels) from in (n_pixels, in_channels); channels are 1 or 3, in and out distinct.
 * Equal channel counts copy. */
void transform_channels(uint8_t *out, size_t out_channels, const uint8_t *in, size_t in_channels,
                        size_t n_pixels);

/* The luma of one RGB pixel, as PIL. */
uint8_t transform_luma(uint8_t r, uint8_t g, uint8_t b);

/* The float value of stored level v: (v / 255 - 0.5) / 0.5 in float32. */
float transform_level_to_float(uint8_t v);

/* out (h, w, c) floats in [-1, 1] from in (h, w, c) uint8, mirrored left-right when flip is nonzero. */
void transform_image_to_float(float *out, const uint8_t *in, size_t h, size_t w, size_t c, int flip);

#endif
