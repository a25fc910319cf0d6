/* Data sets: the common array form, and dataset_open, which recognises a source and hands it to its
 * reader (see dataset.h). */
#define _POSIX_C_SOURCE 200809L
#include "data/dataset.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include "core/alloc.h"
#include "data/cifar.h"
#include "data/idx.h"
#include "data/image_decode.h"
#include "data/image_folder.h"
#include "data/packed.h"
#include "data/transform.h"
#include "io/fs.h"

static const char *const fashion_mnist_class_names[10] = {
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"};

/* ------------------------------------------------------------------------------------------------ */
/* The array form */

size_t dataset_image_bytes(const Dataset *ds) { return ds->height * ds->width * ds->channels; }

const uint8_t *dataset_image(const Dataset *ds, size_t i) {
    CHECK(i < ds->count, "image %zu of a data set of %zu", i, ds->count);
    return ds->pixels + i * dataset_image_bytes(ds);
}

int dataset_alloc(Dataset *ds, const char *source, size_t count, size_t height, size_t width, size_t channels,
                  bool with_labels, Error *err) {
    *ds = (Dataset){.count = count, .height = height, .width = width, .channels = channels,
                    .source = xstrdup(source)};
    CHECK(count && height && width && channels, "empty data set %zux%zux%zux%zu", count, height, width, channels);
    /* calloc: a large block comes zeroed from the kernel untouched, so the slots of images that then fail to
     * decode cost no memory (an image folder reserves one per file before decoding). */
    if (height <= SIZE_MAX / width / channels) ds->owned_pixels = calloc(count, dataset_image_bytes(ds));
    if (!ds->owned_pixels) {
        const double gb = (double)count * (double)height * (double)width * (double)channels * 1e-9;
        error_set(err, "%s: %zu images of %zux%zux%zu need %.3g GB: more memory than this machine can give", source,
                  count, height, width, channels, gb);
        dataset_free(ds);
        return -1;
    }
    ds->pixels = ds->owned_pixels;
    if (with_labels) ds->labels = xcalloc(count, sizeof *ds->labels);
    return 0;
}

void dataset_set_class_names(Dataset *ds, const char *const *names, size_t n) {
    for (size_t i = 0; ds->class_names && i < ds->n_classes; i++) free(ds->class_names[i]);
    free(ds->class_names);
    ds->class_names = xmalloc((n ? n : 1) * sizeof *ds->class_names);
    for (size_t i = 0; i < n; i++) ds->class_names[i] = xstrdup(names[i]);
    ds->n_classes = n;
}

void dataset_free(Dataset *ds) {
    if (ds->map) munmap(ds->map, ds->map_bytes);
    alloc_free(ds->owned_pixels);
    free(ds->labels);
    for (size_t i = 0; ds->class_names && i < ds->n_classes; i++) free(ds->class_names[i]);
    free(ds->class_names);
    free(ds->source);
    *ds = (Dataset){0};
}

void dataset_convert(Dataset *ds, size_t resolution, size_t channels, ResizeFilter resize) {
    size_t out_h = resolution ? resolution : ds->height, out_w = resolution ? resolution : ds->width;
    size_t out_c = channels ? channels : ds->channels;
    if (out_h == ds->height && out_w == ds->width && out_c == ds->channels) return;
    CHECK(out_c == 1 || out_c == 3, "dataset_convert to %zu channels", out_c);
    size_t in_bytes = dataset_image_bytes(ds), out_bytes = out_h * out_w * out_c;
    uint8_t *out = alloc_aligned(ds->count * out_bytes);
    long long count = (long long)ds->count;
#pragma omp parallel
    {
        uint8_t *converted = out_c != ds->channels ? xmalloc(ds->height * ds->width * out_c) : NULL;
#pragma omp for schedule(static)
        for (long long i = 0; i < count; i++) {
            const uint8_t *img = ds->pixels + (size_t)i * in_bytes;
            if (converted) {
                transform_channels(converted, out_c, img, ds->channels, ds->height * ds->width);
                img = converted;
            }
            resize_crop_u8(out + (size_t)i * out_bytes, out_h, out_w, img, ds->height, ds->width, out_c, resize);
        }
        free(converted);
    }
    if (ds->map) munmap(ds->map, ds->map_bytes);
    ds->map = NULL;
    ds->map_bytes = 0;
    alloc_free(ds->owned_pixels);
    ds->owned_pixels = out;
    ds->pixels = out;
    ds->height = out_h;
    ds->width = out_w;
    ds->channels = out_c;
}

/* ------------------------------------------------------------------------------------------------ */
/* Recognising a source */

static int is_file(const char *path) {
    struct stat info;
    return stat(path, &info) == 0 && S_ISREG(info.st_mode);
}

static char *join(const char *dir, const char *name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *out = xmalloc(n);
    snprintf(out, n, "%s/%s", dir, name);
    return out;
}

static int has_suffix(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* The images file of an IDX folder's split (gzipped or plain), or NULL. */
static char *idx_find_images(const char *dir, int test_split) {
    static const char *const names[2][4] = {
        {"train-images-idx3-ubyte.gz", "train-images-idx3-ubyte", "train-images.idx3-ubyte.gz", "train-images.idx3-ubyte"},
        {"t10k-images-idx3-ubyte.gz", "t10k-images-idx3-ubyte", "t10k-images.idx3-ubyte.gz", "t10k-images.idx3-ubyte"}};
    for (size_t i = 0; i < 4; i++) {
        char *path = join(dir, names[test_split][i]);
        if (is_file(path)) return path;
        free(path);
    }
    return NULL;
}

static int open_idx_images(Dataset *ds, const char *images, Error *err) {
    char *labels = idx_labels_path_for(images);
    int rc = idx_read(ds, images, labels, err);
    free(labels);
    return rc;
}

static int open_fashion_mnist(Dataset *ds, const char *name, int test_split, Error *err) {
    char *images = idx_find_images(DATASET_FASHION_MNIST_DIR, test_split);
    if (!images)
        return error_set(err, "%s: the Fashion-MNIST files are not in %s; install Debian's package with "
                         "`apt-get install dataset-fashion-mnist`, or give the folder that holds the IDX files",
                         name, DATASET_FASHION_MNIST_DIR);
    int rc = open_idx_images(ds, images, err);
    free(images);
    if (rc == 0 && ds->n_classes == 10) dataset_set_class_names(ds, fashion_mnist_class_names, 10);
    return rc;
}

static int open_dir(Dataset *ds, const char *dir, int test_split, int split_given, const DatasetOptions *opt,
                    Error *err) {
    char **batches;
    size_t n_batches = cifar_find_batches(dir, test_split, &batches);
    if (n_batches) {
        int rc = cifar_read(ds, (const char *const *)batches, n_batches, err);
        for (size_t i = 0; i < n_batches; i++) free(batches[i]);
        free(batches);
        return rc;
    }
    char *images = idx_find_images(dir, test_split);
    if (images) {
        int rc = open_idx_images(ds, images, err);
        free(images);
        return rc;
    }
    if (split_given)
        return error_set(err, "%s: no %s split here (a split is chosen only in folders of IDX files or CIFAR-10 "
                         "batches)", dir, test_split ? "test" : "train");
    return image_folder_read(ds, dir, opt, err);
}

static int open_file(Dataset *ds, const char *path, Error *err) {
    uint8_t head[PACKED_MAGIC_BYTES] = {0};
    FILE *f = fs_open_file(path, err);
    if (!f) return -1;
    size_t got = fread(head, 1, sizeof head, f);
    fclose(f);
    if (packed_has_magic(head, got)) return packed_open(ds, path, err);
    if (has_suffix(path, ".bin")) return cifar_read(ds, &path, 1, err);
    if (image_decode_is_image_name(path))
        return error_set(err, "%s: a single image is not a data set; give the folder that holds the images", path);
    return open_idx_images(ds, path, err);
}

int dataset_open(Dataset *ds, const char *source, const DatasetOptions *options, Error *err) {
    *ds = (Dataset){0};
    DatasetOptions opt = options ? *options : (DatasetOptions){0};
    if (opt.channels != 0 && opt.channels != 1 && opt.channels != 3)
        return error_set(err, "%s: %zu channels requested; a data set has 1 (grey) or 3 (RGB)", source, opt.channels);
    if (opt.resolution > 65536)
        return error_set(err, "%s: resolution %zu is larger than 65536", source, opt.resolution);

    /* A ":train" or ":test" suffix names the split, unless the whole string is an existing path. */
    char *path = xstrdup(source);
    int test_split = 0, split_given = 0;
    char *colon = strrchr(path, ':');
    struct stat info;
    if (colon && stat(path, &info) != 0 && (strcmp(colon, ":test") == 0 || strcmp(colon, ":train") == 0)) {
        test_split = strcmp(colon, ":test") == 0;
        split_given = 1;
        *colon = '\0';
    }
    int rc;
    if (strcmp(path, "fashion-mnist") == 0 && stat(path, &info) != 0) {
        rc = open_fashion_mnist(ds, source, test_split, err);
    } else if (stat(path, &info) != 0) {
        rc = error_set(err, "%s: no such file or folder (a data set is an image folder, an IDX file, a CIFAR-10 "
                       "folder or batch, a packed file, or `fashion-mnist`)", source);
    } else if (S_ISDIR(info.st_mode)) {
        rc = open_dir(ds, path, test_split, split_given, &opt, err);
    } else if (split_given) {
        rc = error_set(err, "%s: a split can be chosen only for a folder or `fashion-mnist`", source);
    } else {
        rc = open_file(ds, path, err);
    }
    free(path);
    if (rc) {
        dataset_free(ds);
        return -1;
    }
    free(ds->source);
    ds->source = xstrdup(source);
    dataset_convert(ds, opt.resolution, opt.channels, opt.resize);
    return 0;
}
