/* Decoding of PNG (libpng) and JPEG (libjpeg-turbo) files into 8-bit grey or RGB pixels, as PIL opens
 * them and diffusers' convert("RGB") leaves them: the type is read from the file's signature, not its
 * name; palettes are expanded; alpha and transparency are dropped (not composited); 16-bit PNG samples
 * keep their high byte; JPEGs decode with libjpeg's defaults (ISLOW DCT, fancy upsampling), as PIL does,
 * and CMYK JPEGs convert to RGB with PIL's formula (Adobe files store inverted CMYK).
 *
 * Files are untrusted: every libpng/libjpeg error returns -1 with the library's message, a truncated or
 * corrupt JPEG (which libjpeg only warns about, filling the rest grey) is an error too, and images larger
 * than IMAGE_DECODE_MAX_PIXELS are refused before any allocation. */
#ifndef DIFFUSE_DATA_IMAGE_DECODE_H
#define DIFFUSE_DATA_IMAGE_DECODE_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

/* 2^27 pixels (about 11585 x 11585): far beyond any training image, small enough to decode safely on
 * every thread at once. */
#define IMAGE_DECODE_MAX_PIXELS ((size_t)1 << 27)
/* A file larger than this is not read into memory. */
#define IMAGE_DECODE_MAX_FILE_BYTES ((size_t)1 << 30)

typedef struct DecodedImage {
    size_t height, width, channels; /* channels: 1 (grey) or 3 (RGB) */
    uint8_t *pixels;                /* (height, width, channels), malloc'ed */
} DecodedImage;

/* True when the name ends in .png, .jpg or .jpeg, in any case: the files an image folder reads. */
int image_decode_is_image_name(const char *name);

/* Decodes n_bytes of a PNG or JPEG file; `path` names it in error messages. */
int image_decode_memory(DecodedImage *img, const uint8_t *bytes, size_t n_bytes, const char *path, Error *err);
int image_decode_file(DecodedImage *img, const char *path, Error *err);
void image_decode_free(DecodedImage *img);

#endif
