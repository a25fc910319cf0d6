/* Data sets: resizing, channel conversion and level scaling against PIL / torchvision fixtures, PNG and
 * JPEG decoding against PIL, IDX (plain and gzipped) and CIFAR-10 readers, image folders (Tiny-ImageNet
 * layout, corrupt files skipped or fatal), the packed file, and every bad input returning -1 with a
 * message that names the file. The real Fashion-MNIST from Debian's package is read end to end. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <png.h>
#include <zlib.h>

#include "core/alloc.h"
#include "core/error.h"
#include "core/threads.h"
#include "data/cifar.h"
#include "data/dataset.h"
#include "data/idx.h"
#include "data/image_decode.h"
#include "data/packed.h"
#include "data/resize.h"
#include "data/transform.h"
#include "harness.h"

/* ------------------------------------------------------------------------------------------------ */
/* Helpers */

static const char *const fixture_files[] = {"cmyk.jpg", "grey.jpg", "grey.png", "palette.png",
                                            "rgb420.jpg", "rgb444_progressive.jpg", "rgba.png"};
#define N_FIXTURE_FILES (sizeof fixture_files / sizeof fixture_files[0])

/* A fixture tensor of uint8 values: its shape (up to 3 dims) and a malloc'ed byte copy. */
static uint8_t *fixture_bytes(Fixture *fx, const char *name, size_t shape[3]) {
    const SafeTensorInfo *t = safetensors_find(&fx->st, name);
    CHECK(t && t->ndim == 3, "fixture tensor %s missing or not 3-d", name);
    for (int i = 0; i < 3; i++) shape[i] = t->shape[i];
    float *f = fixture_floats(fx, name, t->numel);
    uint8_t *out = xmalloc(t->numel);
    for (size_t i = 0; i < t->numel; i++) {
        CHECK(f[i] >= 0 && f[i] <= 255 && f[i] == (float)(int)f[i], "%s[%zu] = %g is not a level", name, i, f[i]);
        out[i] = (uint8_t)f[i];
    }
    free(f);
    return out;
}

/* EXPECTs |got - want| <= tol everywhere; returns the number of elements that differ at all. */
static size_t expect_bytes_close(const char *what, const uint8_t *got, const uint8_t *want, size_t n, int tol) {
    size_t n_diff = 0, worst_at = 0;
    int worst = 0;
    for (size_t i = 0; i < n; i++) {
        int d = abs((int)got[i] - (int)want[i]);
        if (d) n_diff++;
        if (d > worst) worst = d, worst_at = i;
    }
    EXPECT(worst <= tol, "%s: element %zu is %d, want %d (max error %d > %d; %zu of %zu differ)", what, worst_at,
           got[worst_at], want[worst_at], worst, tol, n_diff, n);
    return n_diff;
}

static void write_file(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    CHECK(f && fwrite(data, 1, n, f) == n && fclose(f) == 0, "cannot write %s", path);
}

static uint8_t *read_whole(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    CHECK(f, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *data = xmalloc(*n + 1);
    CHECK(fread(data, 1, *n, f) == *n, "cannot read %s", path);
    fclose(f);
    return data;
}

/* Copies src to dst, keeping only the first keep bytes when keep is not 0. */
static void copy_file(const char *src, const char *dst, size_t keep) {
    size_t n;
    uint8_t *data = read_whole(src, &n);
    write_file(dst, data, keep && keep < n ? keep : n);
    free(data);
}

static void make_dir(const char *path) { CHECK(mkdir(path, 0755) == 0, "cannot create %s", path); }

static char *tmp_path(const char *name) { return xstrdup(harness_tmp_path(name)); }

static char *fixture_file(const char *name) {
    char path[256];
    snprintf(path, sizeof path, "tests/fixtures/data/%s", name);
    return xstrdup(path);
}

/* dataset_open must fail, with a message that contains `needle` (the file name or the problem). */
static void expect_open_fails(const char *source, const DatasetOptions *opt, const char *needle) {
    Dataset ds;
    Error err = {{0}};
    int rc = dataset_open(&ds, source, opt, &err);
    EXPECT(rc == -1, "opening %s should fail", source);
    EXPECT(strstr(err.message, needle) != NULL, "error for %s should mention '%s': %s", source, needle, err.message);
    EXPECT(ds.pixels == NULL && ds.count == 0, "failed open of %s left a data set behind", source);
    if (rc == 0) dataset_free(&ds);
}

/* ------------------------------------------------------------------------------------------------ */
/* Resize, channels and levels against PIL / torch */

static void test_resize_matches_pil(void) {
    static const struct {
        const char *name;
        size_t res;
        ResizeFilter filter;
    } cases[] = {
        {"grey_up", 32, RESIZE_BILINEAR},        {"grey_down", 16, RESIZE_BILINEAR},
        {"rgb_wide_down", 24, RESIZE_BILINEAR},  {"rgb_tall_up", 32, RESIZE_BILINEAR},
        {"rgb_odd_crop_a", 64, RESIZE_BILINEAR}, {"rgb_odd_crop_b", 64, RESIZE_BILINEAR},
        {"rgb_big_down", 64, RESIZE_BILINEAR},   {"rgb_area_down", 64, RESIZE_AREA},
        {"rgb_area_third", 20, RESIZE_AREA},     {"grey_area_up", 23, RESIZE_AREA},
    };
    Fixture *fx = fixture_open("data");
    size_t total_diff = 0, total = 0;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char name[128];
        size_t in_shape[3], want_shape[3];
        snprintf(name, sizeof name, "resize.%s.input", cases[i].name);
        uint8_t *in = fixture_bytes(fx, name, in_shape);
        snprintf(name, sizeof name, "resize.%s.expected", cases[i].name);
        uint8_t *want = fixture_bytes(fx, name, want_shape);
        CHECK(want_shape[0] == cases[i].res && want_shape[1] == cases[i].res, "fixture shape");
        size_t n = want_shape[0] * want_shape[1] * want_shape[2];
        uint8_t *got = xmalloc(n);
        resize_crop_u8(got, cases[i].res, cases[i].res, in, in_shape[0], in_shape[1], in_shape[2], cases[i].filter);
        /* Tolerance one level; the construction follows PIL's so in practice they agree bit for bit. */
        total_diff += expect_bytes_close(cases[i].name, got, want, n, 1);
        total += n;
        free(in);
        free(want);
        free(got);
    }
    printf("  resize: %zu of %zu levels differ from PIL\n", total_diff, total);
    EXPECT(total_diff == 0, "resize is no longer bit-exact with PIL (%zu levels differ)", total_diff);
    fixture_close(fx);
}

static void test_cover_size_and_crop(void) {
    size_t h, w;
    resize_cover_size(375, 500, 64, 64, &h, &w);
    EXPECT(h == 64 && w == 85, "375x500 -> %zux%zu, torchvision gives 64x85", h, w);
    resize_cover_size(500, 375, 64, 64, &h, &w);
    EXPECT(h == 85 && w == 64, "500x375 -> %zux%zu", h, w);
    resize_cover_size(64, 64, 64, 64, &h, &w);
    EXPECT(h == 64 && w == 64, "identity %zux%zu", h, w);
    /* Same size: a copy. A pure crop: the centre, offset by round-half-even. */
    uint8_t in[5 * 4], out[4 * 4];
    for (int i = 0; i < 20; i++) in[i] = (uint8_t)i;
    resize_crop_u8(out, 4, 4, in, 5, 4, 1, RESIZE_BILINEAR);
    EXPECT(out[0] == 0 && out[15] == 15, "5x4 -> 4x4 crops rows 0-3 (round(0.5) = 0): got %d..%d", out[0], out[15]);
    uint8_t in7[7 * 4];
    for (int i = 0; i < 28; i++) in7[i] = (uint8_t)i;
    resize_crop_u8(out, 4, 4, in7, 7, 4, 1, RESIZE_BILINEAR);
    EXPECT(out[0] == 8, "7x4 -> 4x4 starts at row 2 (round(1.5) = 2): got first %d", out[0]);
    ResizeFilter f;
    EXPECT(resize_filter_from_name("area", &f) == 0 && f == RESIZE_AREA && strcmp(resize_filter_name(f), "area") == 0,
           "filter names");
    EXPECT(resize_filter_from_name("cubic", &f) == -1, "unknown filter accepted");
}

static void test_luma_and_levels_match_pil_and_torch(void) {
    Fixture *fx = fixture_open("data");
    size_t shape[3], lshape[3];
    uint8_t *rgb = fixture_bytes(fx, "luma.input", shape);
    uint8_t *want = fixture_bytes(fx, "luma.expected", lshape);
    size_t n = shape[0] * shape[1];
    uint8_t *got = xmalloc(n), *back = xmalloc(3 * n);
    transform_channels(got, 1, rgb, 3, n);
    expect_bytes_close("RGB -> L", got, want, n, 0);
    transform_channels(back, 3, got, 1, n);
    for (size_t i = 0; i < n; i++)
        if (back[3 * i] != got[i] || back[3 * i + 1] != got[i] || back[3 * i + 2] != got[i]) {
            EXPECT(0, "L -> RGB does not repeat pixel %zu", i);
            break;
        }
    float *levels = fixture_floats(fx, "levels", 256);
    for (int v = 0; v < 256; v++)
        EXPECT(transform_level_to_float((uint8_t)v) == levels[v], "level %d -> %.9g, torch %.9g", v,
               transform_level_to_float((uint8_t)v), levels[v]);
    EXPECT(transform_level_to_float(0) == -1.0f && transform_level_to_float(255) == 1.0f, "ends of the range");
    /* Flip mirrors columns. */
    uint8_t img[2 * 3 * 1] = {1, 2, 3, 4, 5, 6};
    float out[6];
    transform_image_to_float(out, img, 2, 3, 1, 1);
    EXPECT(out[0] == transform_level_to_float(3) && out[2] == transform_level_to_float(1) &&
           out[3] == transform_level_to_float(6), "flip");
    free(levels);
    free(rgb);
    free(want);
    free(got);
    free(back);
    fixture_close(fx);
}

/* ------------------------------------------------------------------------------------------------ */
/* PNG and JPEG */

static void test_decode_matches_pil(void) {
    Fixture *fx = fixture_open("data");
    for (size_t i = 0; i < N_FIXTURE_FILES; i++) {
        char *path = fixture_file(fixture_files[i]), name[128];
        snprintf(name, sizeof name, "decode.%s", fixture_files[i]);
        size_t shape[3];
        uint8_t *want = fixture_bytes(fx, name, shape);
        DecodedImage img;
        Error err;
        int rc = image_decode_file(&img, path, &err);
        EXPECT(rc == 0, "%s", err.message);
        if (rc == 0) {
            EXPECT(img.height == shape[0] && img.width == shape[1] && img.channels == shape[2],
                   "%s: %zux%zux%zu, PIL %zux%zux%zu", fixture_files[i], img.height, img.width, img.channels,
                   shape[0], shape[1], shape[2]);
            if (img.height == shape[0] && img.width == shape[1] && img.channels == shape[2])
                expect_bytes_close(fixture_files[i], img.pixels, want, shape[0] * shape[1] * shape[2], 0);
            image_decode_free(&img);
        }
        free(want);
        free(path);
    }
    fixture_close(fx);
}

static void test_decode_rejects_bad_files(void) {
    char *good = fixture_file("rgb420.jpg"), *good_png = fixture_file("palette.png");
    size_t n_jpeg, n_png;
    uint8_t *jpeg = read_whole(good, &n_jpeg), *png = read_whole(good_png, &n_png);
    DecodedImage img;
    Error err;
    /* Every prefix of a JPEG and a PNG: an error or (for the longest, when only trailing markers are
     * missing) a good image; never a crash. Corrupt bytes in the middle: the same. */
    size_t n_ok = 0;
    for (size_t cut = 0; cut < n_jpeg; cut += 7) {
        if (image_decode_memory(&img, jpeg, cut, "cut.jpg", &err) == 0) n_ok++, image_decode_free(&img);
        else EXPECT(strstr(err.message, "cut.jpg") != NULL, "message names the file: %s", err.message);
    }
    EXPECT(n_ok <= 1, "%zu truncated JPEGs decoded as good", n_ok);
    EXPECT(image_decode_memory(&img, jpeg, n_jpeg / 2, "half.jpg", &err) == -1 &&
           strstr(err.message, "corrupt JPEG") != NULL, "half a JPEG: %s", err.message);
    n_ok = 0;
    for (size_t cut = 0; cut < n_png; cut += 5) {
        if (image_decode_memory(&img, png, cut, "cut.png", &err) == 0) n_ok++, image_decode_free(&img);
        else EXPECT(strstr(err.message, "cut.png") != NULL, "message names the file: %s", err.message);
    }
    EXPECT(n_ok <= 3, "%zu truncated PNGs decoded as good", n_ok);
    for (size_t at = 20; at + 16 < n_jpeg; at += 97) {
        uint8_t *bad = xmalloc(n_jpeg);
        memcpy(bad, jpeg, n_jpeg);
        memset(bad + at, 0x5a, 16);
        if (image_decode_memory(&img, bad, n_jpeg, "garbled.jpg", &err) == 0) image_decode_free(&img);
        free(bad);
    }
    for (size_t at = 8; at + 8 < n_png; at += 23) {
        uint8_t *bad = xmalloc(n_png);
        memcpy(bad, png, n_png);
        memset(bad + at, 0xa5, 8);
        EXPECT(image_decode_memory(&img, bad, n_png, "garbled.png", &err) == -1, "garbled PNG at %zu decoded", at);
        free(bad);
    }
    EXPECT(image_decode_memory(&img, (const uint8_t *)"GIF89a....", 10, "x.gif", &err) == -1 &&
           strstr(err.message, "not a PNG or JPEG") != NULL, "unknown signature: %s", err.message);
    EXPECT(image_decode_file(&img, harness_tmp_path("absent.png"), &err) == -1 &&
           strstr(err.message, "absent.png") != NULL, "missing file: %s", err.message);
    free(jpeg);
    free(png);
    free(good);
    free(good_png);
}

/* A 16-bit RGBA, Adam7-interlaced PNG written with libpng: decoded to the high bytes, alpha dropped. */
static void test_decode_png_16bit_interlaced(void) {
    enum { H = 7, W = 11 };
    char *path = tmp_path("deep.png");
    FILE *f = fopen(path, "wb");
    CHECK(f, "cannot create %s", path);
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(png);
    CHECK(png && info, "libpng write structs");
    if (setjmp(png_jmpbuf(png))) CHECK(0, "libpng write failed");
    png_init_io(png, f);
    png_set_IHDR(png, info, W, H, 16, PNG_COLOR_TYPE_RGB_ALPHA, PNG_INTERLACE_ADAM7, PNG_COMPRESSION_TYPE_DEFAULT,
                 PNG_FILTER_TYPE_DEFAULT);
    static uint8_t rows[H][W * 8];
    png_bytep row_pointers[H];
    for (int y = 0; y < H; y++) {
        for (int i = 0; i < W * 8; i++) rows[y][i] = (uint8_t)(y * 29 + i * 7 + (i % 2) * 100);
        row_pointers[y] = rows[y];
    }
    png_set_rows(png, info, row_pointers);
    png_write_png(png, info, PNG_TRANSFORM_IDENTITY, NULL);
    png_destroy_write_struct(&png, &info);
    fclose(f);
    DecodedImage img;
    Error err;
    int rc = image_decode_file(&img, path, &err);
    EXPECT(rc == 0 && img.height == H && img.width == W && img.channels == 3, "decode: %s",
           rc ? err.message : "wrong shape");
    for (int y = 0; rc == 0 && y < H; y++)
        for (int x = 0; x < W; x++)
            for (int c = 0; c < 3; c++) {
                uint8_t want = rows[y][x * 8 + c * 2]; /* big-endian: the high byte comes first */
                if (img.pixels[(y * W + x) * 3 + c] != want) {
                    EXPECT(0, "pixel (%d, %d, %d) is %d, want %d", y, x, c, img.pixels[(y * W + x) * 3 + c], want);
                    y = H, x = W, c = 3;
                }
            }
    if (rc == 0) image_decode_free(&img);
    free(path);
}

/* ------------------------------------------------------------------------------------------------ */
/* IDX */

/* Writes an IDX file (gzipped when gz) with the given magic, dims and data. */
static void write_idx(const char *path, int gz, uint32_t magic, const uint32_t *dims, size_t n_dims,
                      const uint8_t *data, size_t n_data) {
    uint8_t header[16];
    size_t n = 0;
    for (int s = 24; s >= 0; s -= 8) header[n++] = (uint8_t)(magic >> s);
    for (size_t d = 0; d < n_dims; d++)
        for (int s = 24; s >= 0; s -= 8) header[n++] = (uint8_t)(dims[d] >> s);
    if (gz) {
        gzFile f = gzopen(path, "wb");
        CHECK(f && gzwrite(f, header, (unsigned)n) == (int)n, "gz write %s", path);
        if (n_data) CHECK(gzwrite(f, data, (unsigned)n_data) == (int)n_data, "gz write %s", path);
        CHECK(gzclose(f) == Z_OK, "gz close %s", path);
    } else {
        uint8_t *all = xmalloc(n + n_data + 1);
        memcpy(all, header, n);
        if (n_data) memcpy(all + n, data, n_data);
        write_file(path, all, n + n_data);
        free(all);
    }
}

static void test_idx_plain_and_gzipped(void) {
    enum { N = 5, H = 4, W = 3 };
    uint8_t pixels[N * H * W], labels[N] = {3, 0, 7, 7, 1};
    for (int i = 0; i < N * H * W; i++) pixels[i] = (uint8_t)(i * 37 + 5);
    for (int gz = 0; gz < 2; gz++) {
        char name[64];
        snprintf(name, sizeof name, "idx%d/", gz);
        char *dir = tmp_path(name);
        make_dir(dir);
        char images[512], labs[512];
        snprintf(images, sizeof images, "%strain-images-idx3-ubyte%s", dir, gz ? ".gz" : "");
        snprintf(labs, sizeof labs, "%strain-labels-idx1-ubyte%s", dir, gz ? ".gz" : "");
        write_idx(images, gz, IDX_MAGIC_IMAGES, (uint32_t[]){N, H, W}, 3, pixels, sizeof pixels);
        write_idx(labs, gz, IDX_MAGIC_LABELS, (uint32_t[]){N}, 1, labels, sizeof labels);
        /* By the images file (labels found beside it) and by the folder. */
        const char *sources[2] = {images, dir};
        for (int s = 0; s < 2; s++) {
            Dataset ds;
            Error err;
            int rc = dataset_open(&ds, sources[s], NULL, &err);
            EXPECT(rc == 0, "%s", err.message);
            if (rc) continue;
            EXPECT(ds.count == N && ds.height == H && ds.width == W && ds.channels == 1, "shape %zux%zux%zux%zu",
                   ds.count, ds.height, ds.width, ds.channels);
            EXPECT(memcmp(ds.pixels, pixels, sizeof pixels) == 0, "pixels differ (gz %d)", gz);
            EXPECT(ds.labels && ds.n_classes == 8, "labels: n_classes %zu", ds.n_classes);
            for (int i = 0; ds.labels && i < N; i++) EXPECT(ds.labels[i] == labels[i], "label %d", i);
            dataset_free(&ds);
        }
        /* Converted on open: 3 channels at 8x8. */
        Dataset ds;
        Error err;
        DatasetOptions opt = {.resolution = 8, .channels = 3};
        EXPECT(dataset_open(&ds, images, &opt, &err) == 0, "%s", err.message);
        EXPECT(ds.height == 8 && ds.width == 8 && ds.channels == 3 && ds.count == N, "converted shape");
        const uint8_t *p = dataset_image(&ds, 2);
        EXPECT(p[0] == p[1] && p[1] == p[2], "grey -> RGB repeats");
        dataset_free(&ds);
        free(dir);
    }
}

static void test_idx_bad_files(void) {
    uint8_t pixels[4 * 2 * 2] = {0};
    char *path = tmp_path("bad-images-idx3-ubyte");
    char *gz_path = tmp_path("bad-images-idx3-ubyte.gz");
    /* Wrong magic (a labels file given as images, and garbage). */
    write_idx(path, 0, IDX_MAGIC_LABELS, (uint32_t[]){16}, 1, pixels, 16);
    expect_open_fails(path, NULL, "wrong magic 0x00000801");
    write_idx(path, 0, 0x12345678u, (uint32_t[]){4, 2, 2}, 3, pixels, 16);
    expect_open_fails(path, NULL, "wrong magic");
    /* Truncated: plain data cut short, header cut short, gzip stream cut short. */
    write_idx(path, 0, IDX_MAGIC_IMAGES, (uint32_t[]){4, 2, 2}, 3, pixels, 15);
    expect_open_fails(path, NULL, "truncated");
    write_idx(path, 0, IDX_MAGIC_IMAGES, (uint32_t[]){4, 2, 2}, 2, NULL, 0);
    expect_open_fails(path, NULL, "truncated");
    write_file(path, "", 0);
    expect_open_fails(path, NULL, "too short");
    uint8_t big[4000];
    for (size_t i = 0; i < sizeof big; i++) big[i] = (uint8_t)(i * 7919 >> 3);
    write_idx(gz_path, 1, IDX_MAGIC_IMAGES, (uint32_t[]){1000, 2, 2}, 3, big, sizeof big);
    size_t n_gz;
    uint8_t *gz_bytes = read_whole(gz_path, &n_gz);
    for (size_t keep = 0; keep < n_gz; keep += 11) {
        write_file(gz_path, gz_bytes, keep);
        Dataset ds;
        Error err = {{0}};
        EXPECT(dataset_open(&ds, gz_path, NULL, &err) == -1 && strstr(err.message, "bad-images-idx3-ubyte.gz"),
               "gzip prefix of %zu bytes: %s", keep, err.message);
    }
    /* Corrupt deflate data. */
    for (size_t i = 12; i < n_gz - 8; i++) gz_bytes[i] ^= 0x55;
    write_file(gz_path, gz_bytes, n_gz);
    expect_open_fails(gz_path, NULL, "bad-images-idx3-ubyte.gz");
    free(gz_bytes);
    /* Dimensions that lie: more than a plain file holds, more than a gzipped file could hold, less. */
    write_idx(path, 0, IDX_MAGIC_IMAGES, (uint32_t[]){400000, 28, 28}, 3, pixels, 16);
    expect_open_fails(path, NULL, "header says");
    write_idx(gz_path, 1, IDX_MAGIC_IMAGES, (uint32_t[]){4000000, 280, 280}, 3, pixels, 16);
    expect_open_fails(gz_path, NULL, "more than a");
    write_idx(gz_path, 1, IDX_MAGIC_IMAGES, (uint32_t[]){2, 2, 2}, 3, pixels, 16);
    expect_open_fails(gz_path, NULL, "more data than");
    write_idx(path, 0, IDX_MAGIC_IMAGES, (uint32_t[]){0, 2, 2}, 3, pixels, 0);
    expect_open_fails(path, NULL, "no data");
    /* Labels that do not match the images. */
    char *images = tmp_path("pair-images-idx3-ubyte"), *labels = tmp_path("pair-labels-idx1-ubyte");
    write_idx(images, 0, IDX_MAGIC_IMAGES, (uint32_t[]){4, 2, 2}, 3, pixels, 16);
    write_idx(labels, 0, IDX_MAGIC_LABELS, (uint32_t[]){3}, 1, pixels, 3);
    expect_open_fails(images, NULL, "3 labels for the 4 images");
    write_idx(labels, 0, IDX_MAGIC_IMAGES, (uint32_t[]){4, 2, 2}, 3, pixels, 16);
    expect_open_fails(images, NULL, "pair-labels-idx1-ubyte: wrong magic");
    free(images);
    free(labels);
    free(path);
    free(gz_path);
}

static void test_fashion_mnist(void) {
    Dataset ds;
    Error err;
    int rc = dataset_open(&ds, "fashion-mnist", NULL, &err);
    EXPECT(rc == 0, "%s", err.message);
    if (rc) return;
    EXPECT(ds.count == 60000 && ds.height == 28 && ds.width == 28 && ds.channels == 1, "shape %zux%zux%zux%zu",
           ds.count, ds.height, ds.width, ds.channels);
    EXPECT(ds.n_classes == 10 && ds.labels && ds.class_names && strcmp(ds.class_names[9], "Ankle boot") == 0,
           "classes");
    size_t per_class[10] = {0};
    for (size_t i = 0; i < ds.count; i++)
        if (ds.labels[i] >= 0 && ds.labels[i] < 10) per_class[ds.labels[i]]++;
    for (int c = 0; c < 10; c++) EXPECT(per_class[c] == 6000, "class %d has %zu images", c, per_class[c]);
    EXPECT(ds.labels[0] == 9 && ds.labels[1] == 0, "first labels %d %d", ds.labels[0], ds.labels[1]);
    /* CRC-32 and sum of the first image's bytes, from Python's gzip + zlib. */
    uint32_t crc = (uint32_t)crc32(0, ds.pixels, 784);
    unsigned long sum = 0;
    for (size_t i = 0; i < 784; i++) sum += ds.pixels[i];
    EXPECT(crc == 0xf270beb5u && sum == 76247, "first image crc %08x sum %lu", crc, sum);
    dataset_free(&ds);
    rc = dataset_open(&ds, "fashion-mnist:test", NULL, &err);
    EXPECT(rc == 0 && ds.count == 10000 && (uint32_t)crc32(0, ds.pixels, 784) == 0x52830860u, "test split: %s",
           rc ? err.message : "wrong count or first image");
    if (rc == 0) dataset_free(&ds);
    expect_open_fails("fashion-mnist:valid", NULL, "no such file or folder");
}

/* ------------------------------------------------------------------------------------------------ */
/* CIFAR-10 */

static void write_cifar(const char *path, size_t n, uint8_t first_label, size_t extra_bytes) {
    size_t bytes = n * CIFAR_RECORD_BYTES + extra_bytes;
    uint8_t *data = xcalloc(bytes, 1);
    for (size_t r = 0; r < n; r++) {
        uint8_t *rec = data + r * CIFAR_RECORD_BYTES;
        rec[0] = (uint8_t)((first_label + r) % 10);
        for (size_t c = 0; c < 3; c++)
            for (size_t p = 0; p < 1024; p++) rec[1 + c * 1024 + p] = (uint8_t)(p * 3 + c * 50 + r * 11);
    }
    if (extra_bytes && n == 0) data[0] = 0;
    write_file(path, data, bytes);
    free(data);
}

static void test_cifar(void) {
    char *dir = tmp_path("cifar");
    make_dir(dir);
    char path[512];
    /* data_batch_10 sorts after data_batch_2 by number. */
    snprintf(path, sizeof path, "%s/data_batch_10.bin", dir);
    write_cifar(path, 2, 5, 0);
    snprintf(path, sizeof path, "%s/data_batch_2.bin", dir);
    write_cifar(path, 3, 0, 0);
    snprintf(path, sizeof path, "%s/test_batch.bin", dir);
    write_cifar(path, 4, 8, 0);
    snprintf(path, sizeof path, "%s/batches.meta.txt", dir);
    write_file(path, "airplane\n", 9);
    Dataset ds;
    Error err;
    int rc = dataset_open(&ds, dir, NULL, &err);
    EXPECT(rc == 0, "%s", err.message);
    if (rc == 0) {
        EXPECT(ds.count == 5 && ds.height == 32 && ds.width == 32 && ds.channels == 3 && ds.n_classes == 10,
               "shape %zu %zux%zux%zu", ds.count, ds.height, ds.width, ds.channels);
        EXPECT(ds.labels[0] == 0 && ds.labels[2] == 2 && ds.labels[3] == 5 && ds.labels[4] == 6, "labels in order");
        /* HWC: pixel p of record r, channel c = p*3 + c*50 + r*11 (mod 256) where r is the record in its file. */
        const uint8_t *img = dataset_image(&ds, 4);
        size_t p = 33 * 1 + 7;
        EXPECT(img[p * 3 + 2] == (uint8_t)(p * 3 + 100 + 11), "CHW -> HWC: %d", img[p * 3 + 2]);
        EXPECT(strcmp(ds.class_names[0], "airplane") == 0 && strcmp(ds.class_names[9], "truck") == 0, "names");
        dataset_free(&ds);
    }
    char source[600];
    snprintf(source, sizeof source, "%s:test", dir);
    rc = dataset_open(&ds, source, NULL, &err);
    EXPECT(rc == 0 && ds.count == 4 && ds.labels[0] == 8 && ds.labels[2] == 0, "test split: %s",
           rc ? err.message : "wrong content");
    if (rc == 0) dataset_free(&ds);
    /* A single batch file, and bad ones. */
    snprintf(path, sizeof path, "%s/test_batch.bin", dir);
    rc = dataset_open(&ds, path, &(DatasetOptions){.resolution = 16, .channels = 1}, &err);
    EXPECT(rc == 0 && ds.count == 4 && ds.height == 16 && ds.channels == 1, "one batch: %s", err.message);
    if (rc == 0) dataset_free(&ds);
    snprintf(path, sizeof path, "%s/truncated.bin", dir);
    write_cifar(path, 2, 0, 100);
    expect_open_fails(path, NULL, "truncated.bin: 6246 bytes is not a whole number");
    snprintf(path, sizeof path, "%s/labels.bin", dir);
    write_cifar(path, 2, 0, 0);
    FILE *f = fopen(path, "r+b");
    fseek(f, CIFAR_RECORD_BYTES, SEEK_SET);
    fputc(42, f);
    fclose(f);
    expect_open_fails(path, NULL, "labels.bin: record 1 has label 42");
    free(dir);
}

/* ------------------------------------------------------------------------------------------------ */
/* Image folders */

/* tiny/train/<wnid>/images/<files>, as Tiny-ImageNet, plus distractors. */
static char *make_tiny_imagenet(void) {
    char *root = tmp_path("tiny");
    make_dir(root);
    char path[600], *src;
    snprintf(path, sizeof path, "%s/train", root);
    make_dir(path);
    const char *wnids[] = {"n02", "n01", "n10"};
    for (int c = 0; c < 3; c++) {
        snprintf(path, sizeof path, "%s/train/%s", root, wnids[c]);
        make_dir(path);
        snprintf(path, sizeof path, "%s/train/%s/images", root, wnids[c]);
        make_dir(path);
        snprintf(path, sizeof path, "%s/train/%s/%s_boxes.txt", root, wnids[c], wnids[c]);
        write_file(path, "boxes\n", 6);
    }
    static const struct {
        const char *wnid, *name, *fixture;
    } files[] = {
        {"n01", "n01_0.JPEG", "rgb420.jpg"}, {"n01", "n01_1.JPEG", "grey.jpg"},
        {"n02", "n02_0.png", "rgba.png"},    {"n02", "n02_1.jpeg", "cmyk.jpg"},
        {"n10", "n10_0.JPEG", "palette.png"}, /* a PNG named .JPEG: decoded by content */
        {"n10", ".n10_hidden.JPEG", "rgb420.jpg"},
    };
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        snprintf(path, sizeof path, "%s/train/%s/images/%s", root, files[i].wnid, files[i].name);
        src = fixture_file(files[i].fixture);
        copy_file(src, path, 0);
        free(src);
    }
    return root;
}

static void test_image_folder_tiny_imagenet(void) {
    char *root = make_tiny_imagenet();
    char train[600];
    snprintf(train, sizeof train, "%s/train", root);
    Dataset ds;
    Error err;
    DatasetOptions opt = {.resolution = 16, .channels = 3};
    int rc = dataset_open(&ds, train, &opt, &err);
    EXPECT(rc == 0, "%s", err.message);
    if (rc == 0) {
        EXPECT(ds.count == 5 && ds.height == 16 && ds.width == 16 && ds.channels == 3 && ds.n_skipped == 0,
               "shape %zu %zux%zux%zu skipped %zu", ds.count, ds.height, ds.width, ds.channels, ds.n_skipped);
        EXPECT(ds.n_classes == 3 && strcmp(ds.class_names[0], "n01") == 0 && strcmp(ds.class_names[2], "n10") == 0,
               "classes sorted");
        int want_labels[5] = {0, 0, 1, 1, 2};
        for (int i = 0; i < 5 && ds.count == 5; i++) EXPECT(ds.labels[i] == want_labels[i], "label %d", i);
        /* Against the full PIL + torchvision pipeline (convert RGB, Resize 16, CenterCrop 16). */
        Fixture *fx = fixture_open("data");
        const char *order[5] = {"rgb420.jpg", "grey.jpg", "rgba.png", "cmyk.jpg", "palette.png"};
        size_t n_diff = 0;
        for (int i = 0; i < 5 && ds.count == 5; i++) {
            char name[128];
            size_t shape[3];
            snprintf(name, sizeof name, "pipeline16.%s", order[i]);
            uint8_t *want = fixture_bytes(fx, name, shape);
            n_diff += expect_bytes_close(order[i], dataset_image(&ds, (size_t)i), want, 16 * 16 * 3, 1);
            free(want);
        }
        printf("  folder pipeline: %zu of %d levels differ from PIL + torchvision\n", n_diff, 5 * 16 * 16 * 3);
        fixture_close(fx);
        dataset_free(&ds);
    }
    /* The same with one thread and with two: identical. */
    Dataset one, two;
    int saved = threads_get();
    threads_set(1);
    rc = dataset_open(&one, train, &opt, &err);
    threads_set(2);
    rc |= dataset_open(&two, train, &opt, &err);
    threads_set(saved);
    EXPECT(rc == 0 && one.count == two.count && memcmp(one.pixels, two.pixels, one.count * 16 * 16 * 3) == 0,
           "result depends on the thread count");
    if (rc == 0) dataset_free(&one), dataset_free(&two);
    /* The same folder at its first image's own size and channels, and as grey. */
    rc = dataset_open(&ds, train, NULL, &err);
    EXPECT(rc == 0 && ds.height == 30 && ds.width == 40 && ds.channels == 3, "native size: %s",
           rc ? err.message : "wrong shape");
    if (rc == 0) dataset_free(&ds);
    rc = dataset_open(&ds, train, &(DatasetOptions){.resolution = 8, .channels = 1}, &err);
    EXPECT(rc == 0 && ds.channels == 1 && ds.count == 5, "grey: %s", rc ? err.message : "wrong shape");
    if (rc == 0) dataset_free(&ds);
    free(root);
}

static void test_image_folder_corrupt_files(void) {
    char *root = tmp_path("corrupt");
    make_dir(root);
    char path[600], *src;
    const char *good[] = {"b_good.jpg", "d_good.png"};
    src = fixture_file("rgb420.jpg");
    snprintf(path, sizeof path, "%s/%s", root, good[0]);
    copy_file(src, path, 0);
    snprintf(path, sizeof path, "%s/a_truncated.jpg", root);
    copy_file(src, path, 900);
    free(src);
    src = fixture_file("rgba.png");
    snprintf(path, sizeof path, "%s/%s", root, good[1]);
    copy_file(src, path, 0);
    snprintf(path, sizeof path, "%s/c_truncated.png", root);
    copy_file(src, path, 400);
    free(src);
    snprintf(path, sizeof path, "%s/e_garbage.jpeg", root);
    static const char garbage[] = "\xff\xd8\xff this is not a JPEG";
    write_file(path, garbage, sizeof garbage - 1);
    snprintf(path, sizeof path, "%s/f_empty.png", root);
    write_file(path, "", 0);

    Dataset ds;
    Error err;
    DatasetOptions opt = {.resolution = 12, .channels = 3};
    int rc = dataset_open(&ds, root, &opt, &err);
    EXPECT(rc == 0, "%s", err.message);
    if (rc == 0) {
        EXPECT(ds.count == 2 && ds.n_skipped == 4, "kept %zu, skipped %zu", ds.count, ds.n_skipped);
        EXPECT(strstr(ds.skipped_first, "a_truncated.jpg") != NULL, "first skipped: %s", ds.skipped_first);
        EXPECT(ds.labels == NULL && ds.n_classes == 0, "files at the root: unlabelled");
        dataset_free(&ds);
    }
    /* The result does not depend on probing: resolution 0 probes past the corrupt first file. */
    rc = dataset_open(&ds, root, NULL, &err);
    EXPECT(rc == 0 && ds.count == 2 && ds.n_skipped == 4 && ds.height == 30, "probe: %s",
           rc ? err.message : "wrong result");
    if (rc == 0) dataset_free(&ds);
    opt.strict = true;
    expect_open_fails(root, &opt, "a_truncated.jpg: corrupt JPEG");
    expect_open_fails(root, &opt, "4 of the 6 images");
    /* Nothing readable, nothing there, no such folder. */
    char *bad = tmp_path("all_bad");
    make_dir(bad);
    snprintf(path, sizeof path, "%s/x.png", bad);
    write_file(path, "nope", 4);
    expect_open_fails(bad, NULL, "none of the 1 image files can be read");
    expect_open_fails(bad, &(DatasetOptions){.resolution = 8, .channels = 3}, "none of the 1 image files");
    char *empty = tmp_path("empty");
    make_dir(empty);
    snprintf(path, sizeof path, "%s/readme.txt", empty);
    write_file(path, "hi", 2);
    expect_open_fails(empty, NULL, "no images found");
    expect_open_fails(harness_tmp_path("no_such_folder"), NULL, "no such file or folder");
    src = fixture_file("grey.png");
    expect_open_fails(src, NULL, "a single image is not a data set");
    free(src);
    expect_open_fails("fashion-mnist", &(DatasetOptions){.channels = 2}, "2 channels");
    free(bad);
    free(empty);
    free(root);
}

/* ------------------------------------------------------------------------------------------------ */
/* Packed files */

static void fill_dataset(Dataset *ds, size_t count, size_t h, size_t w, size_t c, bool labels) {
    CHECK(dataset_alloc(ds, "synthetic", count, h, w, c, labels, NULL) == 0, "dataset_alloc");
    for (size_t i = 0; i < count * h * w * c; i++) ds->owned_pixels[i] = (uint8_t)(i * 31 + i / 7);
    if (labels) {
        const char *names[3] = {"cat", "dog", "a longer class name"};
        dataset_set_class_names(ds, names, 3);
        for (size_t i = 0; i < count; i++) ds->labels[i] = (int)(i % 3);
    }
}

static void test_packed_round_trip(void) {
    for (int with_labels = 0; with_labels < 2; with_labels++) {
        Dataset src, ds;
        Error err;
        fill_dataset(&src, 7, 5, 6, 3, with_labels);
        char *path = tmp_path(with_labels ? "labelled.dfs" : "plain.dfs");
        EXPECT(packed_write(path, &src, &err) == 0, "%s", err.message);
        int rc = dataset_open(&ds, path, NULL, &err);
        EXPECT(rc == 0, "%s", err.message);
        if (rc == 0) {
            EXPECT(ds.map != NULL && ds.owned_pixels == NULL, "packed pixels should be memory-mapped");
            EXPECT(ds.count == 7 && ds.height == 5 && ds.width == 6 && ds.channels == 3, "shape");
            EXPECT(memcmp(ds.pixels, src.pixels, 7 * 5 * 6 * 3) == 0, "pixels differ");
            if (with_labels) {
                EXPECT(ds.labels && ds.n_classes == 3 && ds.labels[4] == 1, "labels");
                EXPECT(ds.class_names && strcmp(ds.class_names[2], "a longer class name") == 0, "names");
            } else {
                EXPECT(!ds.labels && ds.n_classes == 0 && !ds.class_names, "no labels");
            }
            dataset_free(&ds);
        }
        /* Opened at another size: converted into memory, the mapping released. */
        rc = dataset_open(&ds, path, &(DatasetOptions){.resolution = 4, .channels = 1}, &err);
        EXPECT(rc == 0 && ds.map == NULL && ds.height == 4 && ds.channels == 1, "converted packed: %s", err.message);
        if (rc == 0) dataset_free(&ds);
        dataset_free(&src);
        free(path);
    }
}

static void put32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static void reseal(uint8_t *file) { put32(file + 124, (uint32_t)crc32(0, file, 124)); }

static void test_packed_bad_files(void) {
    Dataset src;
    Error err;
    fill_dataset(&src, 9, 4, 4, 1, true);
    char *path = tmp_path("bad.dfs");
    EXPECT(packed_write(path, &src, &err) == 0, "%s", err.message);
    dataset_free(&src);
    size_t n;
    uint8_t *good = read_whole(path, &n), *bad = xmalloc(n);
    struct {
        const char *what, *needle;
        size_t at;
        uint32_t value;
        int reseal;
        size_t keep;
    } cases[] = {
        {"version", "diffuse prepare", 8, 2, 1, 0},
        {"checksum", "checksum mismatch", 16, 10, 0, 0},
        {"count", "file is", 88, 4096, 1, 0},
        {"count that fits", "pixel section", 16, 8, 1, 0},
        {"channels", "bad shape", 32, 2, 1, 0},
        {"pixel offset", "pixel section", 40, 64, 1, 0},
        {"label section", "label section", 64, 12, 1, 0},
        {"classes", "outside the 2 classes", 36, 2, 1, 0},
        {"class count", "4294967295 class names cannot fit", 36, 0xffffffffu, 1, 0},
        {"truncated", "truncated", 0, 0, 0, n - 10},
        {"header only", "too short for a packed header", 0, 0, 0, 100},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        memcpy(bad, good, n);
        if (cases[i].at) put32(bad + cases[i].at, cases[i].value);
        if (cases[i].reseal) reseal(bad);
        write_file(path, bad, cases[i].keep ? cases[i].keep : n);
        Dataset ds;
        int rc = packed_open(&ds, path, &err);
        EXPECT(rc == -1 && strstr(err.message, cases[i].needle) && strstr(err.message, "bad.dfs"),
               "%s: rc %d, message: %s", cases[i].what, rc, err.message);
        if (rc == 0) dataset_free(&ds);
    }
    /* Every prefix is an error; so is any single corrupted header byte (the checksum), never a crash. */
    for (size_t keep = 0; keep < n; keep += 3) {
        write_file(path, good, keep);
        Dataset ds;
        EXPECT(packed_open(&ds, path, &err) == -1, "prefix of %zu bytes opened", keep);
    }
    for (size_t at = 0; at < 128; at++) {
        memcpy(bad, good, n);
        bad[at] ^= 0x10;
        write_file(path, bad, n);
        Dataset ds;
        EXPECT(packed_open(&ds, path, &err) == -1, "header byte %zu corrupted and still opened", at);
    }
    /* Wrong magic through dataset_open: not taken for a packed file, and the IDX reader says so. */
    memcpy(bad, good, n);
    bad[0] = 'X';
    write_file(path, bad, n);
    expect_open_fails(path, NULL, "wrong magic");
    free(good);
    free(bad);
    free(path);
}

int main(void) {
    RUN(test_resize_matches_pil);
    RUN(test_cover_size_and_crop);
    RUN(test_luma_and_levels_match_pil_and_torch);
    RUN(test_decode_matches_pil);
    RUN(test_decode_rejects_bad_files);
    RUN(test_decode_png_16bit_interlaced);
    RUN(test_idx_plain_and_gzipped);
    RUN(test_idx_bad_files);
    RUN(test_fashion_mnist);
    RUN(test_cifar);
    RUN(test_image_folder_tiny_imagenet);
    RUN(test_image_folder_corrupt_files);
    RUN(test_packed_round_trip);
    RUN(test_packed_bad_files);
    return harness_finish();
}
