/* PNG and JPEG decoding (see image_decode.h). Both libraries report fatal errors by calling a handler
 * that must not return; ours longjmp back to the decode call, so every variable that changes after the
 * setjmp and is used after the jump lives in the heap-allocated state struct or is volatile. */
#define _POSIX_C_SOURCE 200809L
#include "data/image_decode.h"

#include <errno.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include <jpeglib.h>
#include <jerror.h>
#include <png.h>

#include "core/alloc.h"
#include "io/fs.h"

int image_decode_is_image_name(const char *name) {
    const char *dot = strrchr(name, '.');
    if (!dot) return 0;
    return strcasecmp(dot, ".png") == 0 || strcasecmp(dot, ".jpg") == 0 || strcasecmp(dot, ".jpeg") == 0;
}

void image_decode_free(DecodedImage *img) {
    free(img->pixels);
    *img = (DecodedImage){0};
}

static int check_size(size_t width, size_t height, const char *path, Error *err) {
    if (width == 0 || height == 0) return error_set(err, "%s: image has size %zux%zu", path, width, height);
    if (width > IMAGE_DECODE_MAX_PIXELS / height)
        return error_set(err, "%s: image of %zux%zu pixels is larger than the %zu-pixel limit", path, width, height,
                         IMAGE_DECODE_MAX_PIXELS);
    return 0;
}

/* ------------------------------------------------------------------------------------------------ */
/* PNG */

typedef struct PngState {
    jmp_buf jump;
    char message[256];
    const uint8_t *bytes;
    size_t n_bytes, offset;
    uint8_t *pixels;
    png_bytep *rows;
} PngState;

static void png_on_error(png_structp png, png_const_charp message) {
    PngState *s = png_get_error_ptr(png);
    snprintf(s->message, sizeof s->message, "%s", message);
    longjmp(s->jump, 1);
}

static void png_on_warning(png_structp png, png_const_charp message) {
    (void)png, (void)message; /* ancillary-chunk problems: the image is still good */
}

static void png_read_memory(png_structp png, png_bytep out, png_size_t n) {
    PngState *s = png_get_io_ptr(png);
    if (n > s->n_bytes - s->offset) png_error(png, "unexpected end of file (truncated PNG)");
    memcpy(out, s->bytes + s->offset, n);
    s->offset += n;
}

static int decode_png(DecodedImage *img, const uint8_t *bytes, size_t n_bytes, const char *path, Error *err) {
    PngState *s = xcalloc(1, sizeof *s);
    s->bytes = bytes;
    s->n_bytes = n_bytes;
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, s, png_on_error, png_on_warning);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!png || !info) {
        png_destroy_read_struct(png ? &png : NULL, NULL, NULL);
        free(s);
        return error_set(err, "%s: cannot initialise libpng", path);
    }
    int rc = -1;
    if (setjmp(s->jump)) {
        error_set(err, "%s: corrupt PNG: %s", path, s->message);
        goto done;
    }
    png_set_read_fn(png, s, png_read_memory);
    png_read_info(png, info);
    png_uint_32 width = png_get_image_width(png, info), height = png_get_image_height(png, info);
    if (check_size(width, height, path, err)) goto done;
    int color_type = png_get_color_type(png, info), bit_depth = png_get_bit_depth(png, info);
    if (color_type == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
    if (color_type == PNG_COLOR_TYPE_GRAY && bit_depth < 8) png_set_expand_gray_1_2_4_to_8(png);
    if (bit_depth == 16) png_set_strip_16(png);
    /* Expanding a palette also turns a tRNS chunk into alpha; drop it with any real alpha. */
    if ((color_type & PNG_COLOR_MASK_ALPHA) || png_get_valid(png, info, PNG_INFO_tRNS)) png_set_strip_alpha(png);
    png_set_interlace_handling(png);
    png_read_update_info(png, info);
    size_t channels = png_get_channels(png, info);
    if ((channels != 1 && channels != 3) || png_get_rowbytes(png, info) != (size_t)width * channels) {
        error_set(err, "%s: unsupported PNG layout (colour type %d, depth %d)", path, color_type, bit_depth);
        goto done;
    }
    s->pixels = xmalloc((size_t)width * height * channels);
    s->rows = xmalloc(height * sizeof *s->rows);
    for (size_t y = 0; y < height; y++) s->rows[y] = s->pixels + y * width * channels;
    png_read_image(png, s->rows);
    *img = (DecodedImage){.height = height, .width = width, .channels = channels, .pixels = s->pixels};
    s->pixels = NULL;
    rc = 0;
done:
    png_destroy_read_struct(&png, &info, NULL);
    free(s->pixels);
    free(s->rows);
    free(s);
    return rc;
}

/* ------------------------------------------------------------------------------------------------ */
/* JPEG */

typedef struct JpegState {
    struct jpeg_error_mgr mgr; /* first: libjpeg hands back a pointer to it */
    jmp_buf jump;
    char message[JMSG_LENGTH_MAX];
    int corrupt; /* a warning that means the pixels are not the file's */
    uint8_t *pixels;
    uint8_t *cmyk_row;
} JpegState;

static void jpeg_on_error(j_common_ptr cinfo) {
    JpegState *s = (JpegState *)cinfo->err;
    cinfo->err->format_message(cinfo, s->message);
    longjmp(s->jump, 1);
}

static void jpeg_on_message(j_common_ptr cinfo, int level) {
    JpegState *s = (JpegState *)cinfo->err;
    if (level >= 0) return; /* trace output */
    int code = cinfo->err->msg_code;
    /* libjpeg decodes past these with made-up data; PIL reports them as a truncated or broken file. */
    if (!s->corrupt && (code == JWRN_JPEG_EOF || code == JWRN_HIT_MARKER || code == JWRN_HUFF_BAD_CODE ||
                        code == JWRN_MUST_RESYNC || code == JWRN_NOT_SEQUENTIAL)) {
        s->corrupt = 1;
        cinfo->err->format_message(cinfo, s->message);
    }
    cinfo->err->num_warnings++;
}

/* PIL's MULDIV255: a * b / 255 rounded, in integers. */
static inline unsigned muldiv255(unsigned a, unsigned b) {
    unsigned t = a * b + 128;
    return ((t >> 8) + t) >> 8;
}

static int decode_jpeg(DecodedImage *img, const uint8_t *bytes, size_t n_bytes, const char *path, Error *err) {
    JpegState *s = xcalloc(1, sizeof *s);
    struct jpeg_decompress_struct cinfo;
    memset(&cinfo, 0, sizeof cinfo); /* so that jpeg_destroy_decompress is safe whenever we jump */
    cinfo.err = jpeg_std_error(&s->mgr);
    s->mgr.error_exit = jpeg_on_error;
    s->mgr.emit_message = jpeg_on_message;
    int rc = -1;
    if (setjmp(s->jump)) {
        error_set(err, "%s: corrupt JPEG: %s", path, s->message);
        goto done;
    }
    jpeg_create_decompress(&cinfo);
    jpeg_mem_src(&cinfo, bytes, (unsigned long)n_bytes);
    jpeg_read_header(&cinfo, TRUE);
    int cmyk = cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK;
    size_t channels = cinfo.jpeg_color_space == JCS_GRAYSCALE ? 1 : 3;
    cinfo.out_color_space = cmyk ? JCS_CMYK : channels == 1 ? JCS_GRAYSCALE : JCS_RGB;
    if (check_size(cinfo.image_width, cinfo.image_height, path, err)) goto done;
    jpeg_start_decompress(&cinfo);
    size_t width = cinfo.output_width, height = cinfo.output_height;
    if ((size_t)cinfo.output_components != (cmyk ? 4 : channels)) {
        error_set(err, "%s: unexpected JPEG layout (%d components)", path, cinfo.output_components);
        goto done;
    }
    s->pixels = xmalloc(width * height * channels);
    if (cmyk) s->cmyk_row = xmalloc(width * 4);
    int inverted = cinfo.saw_Adobe_marker;
    while (cinfo.output_scanline < height) {
        size_t y = cinfo.output_scanline;
        uint8_t *row = s->pixels + y * width * channels;
        JSAMPROW target = cmyk ? s->cmyk_row : row;
        if (jpeg_read_scanlines(&cinfo, &target, 1) != 1) break;
        if (!cmyk) continue;
        for (size_t x = 0; x < width; x++) {
            const uint8_t *p = s->cmyk_row + 4 * x;
            unsigned k = inverted ? p[3] : 255u - p[3]; /* 255 - K */
            for (size_t c = 0; c < 3; c++) {
                unsigned ink = inverted ? 255u - p[c] : p[c];
                row[3 * x + c] = (uint8_t)(k - muldiv255(ink, k));
            }
        }
    }
    if (s->corrupt || cinfo.output_scanline < height) {
        error_set(err, "%s: corrupt JPEG: %s", path, s->corrupt ? s->message : "image data ends early");
        goto done;
    }
    jpeg_finish_decompress(&cinfo);
    if (s->corrupt) {
        error_set(err, "%s: corrupt JPEG: %s", path, s->message);
        goto done;
    }
    *img = (DecodedImage){.height = height, .width = width, .channels = channels, .pixels = s->pixels};
    s->pixels = NULL;
    rc = 0;
done:
    jpeg_destroy_decompress(&cinfo);
    free(s->pixels);
    free(s->cmyk_row);
    free(s);
    return rc;
}

/* ------------------------------------------------------------------------------------------------ */

int image_decode_memory(DecodedImage *img, const uint8_t *bytes, size_t n_bytes, const char *path, Error *err) {
    *img = (DecodedImage){0};
    static const uint8_t png_signature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    if (n_bytes >= 8 && memcmp(bytes, png_signature, 8) == 0) return decode_png(img, bytes, n_bytes, path, err);
    if (n_bytes >= 3 && bytes[0] == 0xff && bytes[1] == 0xd8 && bytes[2] == 0xff)
        return decode_jpeg(img, bytes, n_bytes, path, err);
    if (n_bytes == 0) return error_set(err, "%s: empty file", path);
    return error_set(err, "%s: not a PNG or JPEG file (unknown signature)", path);
}

int image_decode_file(DecodedImage *img, const char *path, Error *err) {
    *img = (DecodedImage){0};
    FILE *f = fs_open_file(path, err);
    if (!f) return -1;
    struct stat info;
    if (fstat(fileno(f), &info) != 0) {
        fclose(f);
        return error_set(err, "%s: cannot read: %s", path, strerror(errno));
    }
    size_t n_bytes = (size_t)info.st_size;
    if (n_bytes > IMAGE_DECODE_MAX_FILE_BYTES) {
        fclose(f);
        return error_set(err, "%s: file of %zu bytes is too large for an image", path, n_bytes);
    }
    uint8_t *bytes = xmalloc(n_bytes ? n_bytes : 1);
    size_t got = fread(bytes, 1, n_bytes, f);
    int read_failed = ferror(f);
    fclose(f);
    int rc;
    if (read_failed || got != n_bytes) rc = error_set(err, "%s: read failed", path);
    else rc = image_decode_memory(img, bytes, n_bytes, path, err);
    free(bytes);
    return rc;
}
