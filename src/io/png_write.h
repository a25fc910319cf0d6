/* PNG output for samples: one 8-bit grey or RGB image, or a grid of equally sized images separated by a
 * small gap, as a person looks at a batch of samples. Files are encoded in memory with libpng and written
 * atomically (io/atomic_file.h): a reader sees the previous file or the whole new one, never a torn one,
 * and a failed write leaves nothing behind.
 *
 * Pixels are channels-last uint8, (height, width, channels) per image with channels 1 (grey) or 3 (RGB),
 * the layout data/image_decode.h decodes into. */
#ifndef DIFFUSE_IO_PNG_WRITE_H
#define DIFFUSE_IO_PNG_WRITE_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

/* Encodes one image as a PNG file in memory: *png (malloc'ed, free() it) of *png_bytes bytes. The image
 * is refused (-1 with an Error) when a side is 0 or above 2^24 or channels is not 1 or 3. */
int png_encode(uint8_t **png, size_t *png_bytes, const uint8_t *pixels, size_t height, size_t width,
               size_t channels, Error *err);

/* Writes one image to path atomically. */
int png_write(const char *path, const uint8_t *pixels, size_t height, size_t width, size_t channels, Error *err);

/* A grid: n images in rows of n_cols, image i at row i / n_cols, column i % n_cols, separated (and
 * surrounded) by `gap` pixels of level `background`. */
typedef struct PngGrid {
    size_t n_images;
    size_t height, width, channels; /* of each image */
    size_t n_cols;                  /* 0: ceil(sqrt(n_images)), a near-square grid */
    size_t gap;                     /* pixels between and around the images */
    uint8_t background;             /* level of the gap pixels, in every channel */
} PngGrid;

/* The size of the composed grid image, with n_cols resolved (grid->n_cols 0 is replaced). */
void png_grid_size(PngGrid *grid, size_t *out_height, size_t *out_width);
/* out (out_height, out_width, channels) = the images (n_images, height, width, channels) laid out as above;
 * cells past the last image are background. */
void png_grid_compose(uint8_t *out, const PngGrid *grid, const uint8_t *images);
/* Composes and writes the grid to path atomically. */
int png_write_grid(const char *path, const PngGrid *grid, const uint8_t *images, Error *err);

#endif
