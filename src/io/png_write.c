/* PNG encoding with libpng into a memory buffer, then one atomic write (see png_write.h). libpng reports
 * errors by longjmp from its error callback; the buffer and the libpng state live in a struct reached
 * through pointers, so nothing the jump skips over is left in a register. */
#include "io/png_write.h"

#include <png.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "io/atomic_file.h"

/* libpng's own limit on a side is 2^31 - 1; a sample grid is far below this, and the bound keeps
 * height * width * channels well inside size_t. */
#define PNG_WRITE_MAX_SIDE ((size_t)1 << 24)

typedef struct PngBuffer {
    uint8_t *data;
    size_t n_bytes, capacity;
    char message[256];
    jmp_buf jump;
} PngBuffer;

static void png_on_error(png_structp png, png_const_charp message) {
    PngBuffer *b = png_get_error_ptr(png);
    snprintf(b->message, sizeof b->message, "%s", message);
    longjmp(b->jump, 1);
}

static void png_on_warning(png_structp png, png_const_charp message) {
    (void)png, (void)message;
}

static void png_write_memory(png_structp png, png_bytep data, png_size_t n) {
    PngBuffer *b = png_get_io_ptr(png);
    if (n > b->capacity - b->n_bytes) {
        size_t cap = b->capacity ? b->capacity : 4096;
        while (n > cap - b->n_bytes) cap *= 2;
        b->data = xrealloc(b->data, cap);
        b->capacity = cap;
    }
    memcpy(b->data + b->n_bytes, data, n);
    b->n_bytes += n;
}

static void png_flush_memory(png_structp png) { (void)png; }

int png_encode(uint8_t **png_out, size_t *png_bytes, const uint8_t *pixels, size_t height, size_t width,
               size_t channels, Error *err) {
    *png_out = NULL;
    *png_bytes = 0;
    if (height == 0 || width == 0 || height > PNG_WRITE_MAX_SIDE || width > PNG_WRITE_MAX_SIDE)
        return error_set(err, "cannot write a %zux%zu PNG (each side must be 1 .. %zu)", height, width,
                         PNG_WRITE_MAX_SIDE);
    if (channels != 1 && channels != 3)
        return error_set(err, "cannot write a PNG of %zu channels (1 grey or 3 RGB)", channels);
    CHECK(pixels, "png_encode: no pixels");
    PngBuffer *b = xcalloc(1, sizeof *b);
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, b, png_on_error, png_on_warning);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    png_bytep *rows = xmalloc(height * sizeof *rows);
    for (size_t y = 0; y < height; y++) rows[y] = (png_bytep)(pixels + y * width * channels);
    int rc = 0;
    if (!png || !info) {
        rc = error_set(err, "libpng could not start a PNG writer");
    } else if (setjmp(b->jump)) {
        rc = error_set(err, "PNG encoding failed: %s", b->message);
    } else {
        png_set_write_fn(png, b, png_write_memory, png_flush_memory);
        png_set_IHDR(png, info, (png_uint_32)width, (png_uint_32)height, 8,
                     channels == 1 ? PNG_COLOR_TYPE_GRAY : PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
                     PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
        png_set_rows(png, info, rows);
        png_write_png(png, info, PNG_TRANSFORM_IDENTITY, NULL);
    }
    png_destroy_write_struct(png ? &png : NULL, info ? &info : NULL);
    free(rows);
    if (rc == 0) {
        *png_out = b->data;
        *png_bytes = b->n_bytes;
    } else {
        free(b->data);
    }
    free(b);
    return rc;
}

int png_write(const char *path, const uint8_t *pixels, size_t height, size_t width, size_t channels, Error *err) {
    uint8_t *png;
    size_t n_bytes;
    if (png_encode(&png, &n_bytes, pixels, height, width, channels, err)) return error_prefix(err, "%s", path);
    int rc = atomic_file_write_all(path, png, n_bytes, err);
    free(png);
    return rc;
}

/* ------------------------------------------------------------------------------------------------ */
/* Grids */

void png_grid_size(PngGrid *grid, size_t *out_height, size_t *out_width) {
    CHECK(grid->n_images > 0 && grid->height > 0 && grid->width > 0, "empty grid: %zu images of %zux%zu",
          grid->n_images, grid->height, grid->width);
    if (grid->n_cols == 0) {
        size_t c = 1;
        while (c * c < grid->n_images) c++;
        grid->n_cols = c;
    }
    size_t cols = grid->n_cols < grid->n_images ? grid->n_cols : grid->n_images;
    size_t rows = (grid->n_images + grid->n_cols - 1) / grid->n_cols;
    *out_height = rows * grid->height + (rows + 1) * grid->gap;
    *out_width = cols * grid->width + (cols + 1) * grid->gap;
}

void png_grid_compose(uint8_t *out, const PngGrid *grid, const uint8_t *images) {
    PngGrid g = *grid;
    size_t out_h, out_w;
    png_grid_size(&g, &out_h, &out_w);
    size_t c = g.channels, row_bytes = g.width * c;
    memset(out, g.background, out_h * out_w * c);
    for (size_t i = 0; i < g.n_images; i++) {
        size_t y0 = g.gap + (i / g.n_cols) * (g.height + g.gap), x0 = g.gap + (i % g.n_cols) * (g.width + g.gap);
        const uint8_t *img = images + i * g.height * row_bytes;
        for (size_t y = 0; y < g.height; y++)
            memcpy(out + ((y0 + y) * out_w + x0) * c, img + y * row_bytes, row_bytes);
    }
}

int png_write_grid(const char *path, const PngGrid *grid, const uint8_t *images, Error *err) {
    if (grid->channels != 1 && grid->channels != 3)
        return error_set(err, "%s: cannot write a PNG of %zu channels (1 grey or 3 RGB)", path, grid->channels);
    PngGrid g = *grid;
    size_t h, w;
    png_grid_size(&g, &h, &w);
    if (h > PNG_WRITE_MAX_SIDE || w > PNG_WRITE_MAX_SIDE)
        return error_set(err, "%s: a %zux%zu grid is too large for one PNG; use fewer images", path, h, w);
    uint8_t *pixels = xmalloc(h * w * g.channels);
    png_grid_compose(pixels, &g, images);
    int rc = png_write(path, pixels, h, w, g.channels, err);
    free(pixels);
    return rc;
}
