/* Cover-resize and centre crop (see resize.h). The coefficient tables follow PIL's construction so that
 * results agree bit for bit: the same double-precision centres and bounds, the same normalisation, the
 * same 22-bit rounding, and the same pass order with an 8-bit intermediate. */
#include "data/resize.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/check.h"

/* 32 bits of accumulator = 8 bits of pixel + 22 bits of weight + 2 bits of headroom for the sum. */
#define RESIZE_PRECISION_BITS 22

const char *resize_filter_name(ResizeFilter filter) {
    switch (filter) {
    case RESIZE_BILINEAR: return "bilinear";
    case RESIZE_AREA: return "area";
    }
    CHECK(0, "bad resize filter %d", (int)filter);
}

int resize_filter_from_name(const char *name, ResizeFilter *filter) {
    if (strcmp(name, "bilinear") == 0) *filter = RESIZE_BILINEAR;
    else if (strcmp(name, "area") == 0) *filter = RESIZE_AREA;
    else return -1;
    return 0;
}

void resize_cover_size(size_t in_h, size_t in_w, size_t out_h, size_t out_w, size_t *new_h, size_t *new_w) {
    CHECK(in_h && in_w && out_h && out_w, "empty size %zux%zu -> %zux%zu", in_h, in_w, out_h, out_w);
    /* out_h / in_h >= out_w / in_w: the height is the binding side (for a square target: the image is at
     * least as wide as tall), the width follows with truncation as torchvision's int(size * long / short). */
    if (out_h * in_w >= out_w * in_h) {
        *new_h = out_h;
        *new_w = out_h * in_w / in_h;
    } else {
        *new_w = out_w;
        *new_h = out_w * in_h / in_w;
    }
}

/* Python's round((new - out) / 2): half-way cases go to the even integer. */
static size_t crop_start(size_t new_size, size_t out_size) {
    size_t diff = new_size - out_size, half = diff / 2;
    if (diff % 2 && half % 2) half++;
    return half;
}

static double filter_bilinear(double x) {
    if (x < 0.0) x = -x;
    return x < 1.0 ? 1.0 - x : 0.0;
}

static double filter_box(double x) { return x > -0.5 && x <= 0.5 ? 1.0 : 0.0; }

/* Weights of one pass: output i (for i in [first, first + n)) reads inputs [start[i], start[i] + len[i])
 * with fixed-point weights weights[i * width + k]. */
typedef struct ResizeCoeffs {
    size_t n, width;
    int *start, *len;
    int32_t *weights;
} ResizeCoeffs;

static ResizeCoeffs coeffs_build(size_t in_size, size_t new_size, size_t first, size_t n, ResizeFilter filter) {
    double (*kernel)(double) = filter == RESIZE_AREA ? filter_box : filter_bilinear;
    double support = filter == RESIZE_AREA ? 0.5 : 1.0;
    double scale = (double)in_size / (double)new_size;
    double filterscale = scale < 1.0 ? 1.0 : scale;
    support *= filterscale;
    size_t width = (size_t)ceil(support) * 2 + 1;
    ResizeCoeffs c = {.n = n, .width = width};
    c.start = xmalloc(n * sizeof *c.start);
    c.len = xmalloc(n * sizeof *c.len);
    c.weights = xcalloc(n * width, sizeof *c.weights);
    double *w = xmalloc(width * sizeof *w);
    for (size_t i = 0; i < n; i++) {
        double center = ((double)(first + i) + 0.5) * scale;
        double inv = 1.0 / filterscale;
        int lo = (int)(center - support + 0.5), hi = (int)(center + support + 0.5);
        if (lo < 0) lo = 0;
        if (hi > (int)in_size) hi = (int)in_size;
        int len = hi - lo;
        CHECK(len >= 0 && (size_t)len <= width, "resize window %d exceeds %zu", len, width);
        double total = 0.0;
        for (int k = 0; k < len; k++) {
            w[k] = kernel((k + lo - center + 0.5) * inv);
            total += w[k];
        }
        for (int k = 0; k < len; k++) {
            double v = total != 0.0 ? w[k] / total : w[k];
            double fixed = v * (1 << RESIZE_PRECISION_BITS);
            c.weights[i * width + (size_t)k] = (int32_t)(v < 0 ? fixed - 0.5 : fixed + 0.5);
        }
        c.start[i] = lo;
        c.len[i] = len;
    }
    free(w);
    return c;
}

static void coeffs_free(ResizeCoeffs *c) {
    free(c->start);
    free(c->len);
    free(c->weights);
}

/* Accumulators fit in int32: weights are non-negative (triangle and box filters) and sum to 2^22 plus at
 * most half a unit per tap, so 255 * sum + 2^21 < 2^31. */
static inline uint8_t clip_fixed(int32_t acc) {
    if (acc <= 0) return 0;
    if (acc >= (255 << RESIZE_PRECISION_BITS)) return 255;
    return (uint8_t)(acc >> RESIZE_PRECISION_BITS);
}

/* One row of the horizontal pass for a compile-time channel count, so the channel loop unrolls. The
 * table is read into restrict-qualified locals: byte stores to `out` could otherwise alias it. */
static inline void row_horizontal(uint8_t *restrict out, const uint8_t *restrict row, const ResizeCoeffs *cx,
                                  size_t ch) {
    const int32_t *restrict weights = cx->weights;
    const int *restrict start = cx->start, *restrict len = cx->len;
    size_t n = cx->n, width = cx->width;
    for (size_t x = 0; x < n; x++) {
        const int32_t *w = weights + x * width;
        const uint8_t *p = row + (size_t)start[x] * ch;
        int32_t acc[4] = {1 << (RESIZE_PRECISION_BITS - 1), 1 << (RESIZE_PRECISION_BITS - 1),
                          1 << (RESIZE_PRECISION_BITS - 1), 1 << (RESIZE_PRECISION_BITS - 1)};
        for (int k = 0, taps = len[x]; k < taps; k++)
            for (size_t c = 0; c < ch; c++) acc[c] += (int32_t)p[(size_t)k * ch + c] * w[k];
        for (size_t c = 0; c < ch; c++) out[x * ch + c] = clip_fixed(acc[c]);
    }
}

/* dst (n_rows, cx.n, ch) from src rows (n_rows, in_w, ch). */
static void pass_horizontal(uint8_t *dst, const uint8_t *src, size_t n_rows, size_t in_w, size_t ch,
                            const ResizeCoeffs *cx) {
    for (size_t y = 0; y < n_rows; y++) {
        const uint8_t *row = src + y * in_w * ch;
        uint8_t *out = dst + y * cx->n * ch;
        if (ch == 3) row_horizontal(out, row, cx, 3);
        else if (ch == 1) row_horizontal(out, row, cx, 1);
        else if (ch <= 4) row_horizontal(out, row, cx, ch);
        else CHECK(0, "resize supports up to 4 channels, got %zu", ch);
    }
}

/* dst (cy.n, row_elems) from src rows indexed from src_first. Whole rows at a time: the inner loop runs
 * along the row and vectorises. */
static void pass_vertical(uint8_t *restrict dst, const uint8_t *restrict src, size_t src_first, size_t row_elems,
                          const ResizeCoeffs *cy) {
    int32_t *restrict acc = xmalloc(row_elems * sizeof *acc);
    for (size_t y = 0; y < cy->n; y++) {
        const int32_t *w = cy->weights + y * cy->width;
        const uint8_t *base = src + ((size_t)cy->start[y] - src_first) * row_elems;
        for (size_t i = 0; i < row_elems; i++) acc[i] = 1 << (RESIZE_PRECISION_BITS - 1);
        for (int k = 0, taps = cy->len[y]; k < taps; k++) {
            const uint8_t *restrict row = base + (size_t)k * row_elems;
            int32_t wk = w[k];
            for (size_t i = 0; i < row_elems; i++) acc[i] += (int32_t)row[i] * wk;
        }
        uint8_t *restrict out = dst + y * row_elems;
        for (size_t i = 0; i < row_elems; i++) out[i] = clip_fixed(acc[i]);
    }
    free(acc);
}

void resize_crop_u8(uint8_t *out, size_t out_h, size_t out_w, const uint8_t *in, size_t in_h, size_t in_w,
                    size_t channels, ResizeFilter filter) {
    CHECK(out && in && channels > 0, "resize_crop_u8: NULL buffer or no channels");
    size_t new_h, new_w;
    resize_cover_size(in_h, in_w, out_h, out_w, &new_h, &new_w);
    size_t top = crop_start(new_h, out_h), left = crop_start(new_w, out_w);
    int resize_x = new_w != in_w, resize_y = new_h != in_h;

    /* Rows of the input the vertical pass reads (all of them when the height is kept: then the crop). */
    ResizeCoeffs cy = {0};
    size_t row_first = top, n_rows = out_h;
    if (resize_y) {
        cy = coeffs_build(in_h, new_h, top, out_h, filter);
        row_first = (size_t)cy.start[0];
        n_rows = (size_t)(cy.start[out_h - 1] + cy.len[out_h - 1]) - row_first;
    }
    const uint8_t *rows = in + row_first * in_w * channels;
    uint8_t *mid = NULL;
    size_t mid_w = in_w;
    if (resize_x) {
        ResizeCoeffs cx = coeffs_build(in_w, new_w, left, out_w, filter);
        mid = xmalloc(n_rows * out_w * channels);
        pass_horizontal(mid, rows, n_rows, in_w, channels, &cx);
        coeffs_free(&cx);
        rows = mid;
        mid_w = out_w;
    }
    size_t col_first = resize_x ? 0 : left;
    if (resize_y) {
        if (col_first == 0 && mid_w == out_w) {
            pass_vertical(out, rows, row_first, out_w * channels, &cy);
        } else {
            /* Width kept but cropped: gather the columns first so the vertical pass reads whole rows. */
            uint8_t *cols = xmalloc(n_rows * out_w * channels);
            for (size_t y = 0; y < n_rows; y++)
                memcpy(cols + y * out_w * channels, rows + (y * mid_w + col_first) * channels, out_w * channels);
            pass_vertical(out, cols, row_first, out_w * channels, &cy);
            free(cols);
        }
        coeffs_free(&cy);
    } else {
        for (size_t y = 0; y < out_h; y++)
            memcpy(out + y * out_w * channels, rows + (y * mid_w + col_first) * channels, out_w * channels);
    }
    free(mid);
}
