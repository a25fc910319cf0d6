/* A data set as the trainer sees it: `count` uint8 images of one size, channels-last (N, H, W, C), at the
 * training resolution and channel count, with an optional class label per image. Every source (IDX,
 * CIFAR-10 batches, image folders, packed files) is turned into this once, when opened: decoding and
 * resizing happen once per run, not once per epoch, and the loader only indexes into the array. A packed
 * file (data/packed.h) of the right shape is memory-mapped instead of read, so opening is instant and the
 * pages are shared by every rank on the machine.
 *
 * Sources dataset_open accepts (see dataset_open):
 *   fashion-mnist, fashion-mnist:test     Debian's dataset-fashion-mnist package
 *   FILE                                  an IDX image file (gzipped or not; labels found beside it),
 *                                         a CIFAR-10 .bin batch, or a packed file
 *   DIR                                   a folder of IDX files or of CIFAR-10 batches, else an image
 *                                         folder (PNG and JPEG, recursive; the first-level sub-folder
 *                                         names are the classes, as torchvision's ImageFolder)
 *   DIR:test                              the test split of an IDX or CIFAR-10 folder */
#ifndef DIFFUSE_DATA_DATASET_H
#define DIFFUSE_DATA_DATASET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "data/resize.h"

/* Where Debian's dataset-fashion-mnist package installs the files. */
#define DATASET_FASHION_MNIST_DIR "/usr/share/datasets/fashion-mnist"

typedef struct DatasetOptions {
    size_t resolution;   /* output height and width; 0: the source's own size */
    size_t channels;     /* 1 or 3; 0: the source's own (IDX 1, CIFAR 3, a folder its first image's) */
    ResizeFilter resize; /* RESIZE_BILINEAR (the default) or RESIZE_AREA */
    bool strict;         /* an unreadable image is an error instead of a counted, skipped one */
} DatasetOptions;

typedef struct Dataset {
    size_t count, height, width, channels;
    const uint8_t *pixels; /* (count, height, width, channels) */
    int *labels;           /* count labels in [0, n_classes), or NULL when the data set has none */
    size_t n_classes;
    char **class_names;    /* n_classes names, or NULL */
    char *source;          /* the path or name it was opened from */
    size_t n_skipped;      /* images skipped as unreadable (image folders, unless strict) */
    char skipped_first[512]; /* the first skipped file and its problem, for the warning */
    /* ownership: pixels lie either in owned_pixels or in a read-only mapping of a packed file */
    uint8_t *owned_pixels;
    void *map;
    size_t map_bytes;
} Dataset;

/* Opens `source` (see the list above) and converts it to options' resolution and channels. On error
 * returns -1 with a message naming the file and the problem and leaves *ds empty. */
int dataset_open(Dataset *ds, const char *source, const DatasetOptions *options, Error *err);
void dataset_free(Dataset *ds);

/* Converts ds in place to (resolution, channels) (0 keeps that property): channels first, then the
 * cover-resize and centre crop of data/resize.h. Nothing happens when the shape already matches. */
void dataset_convert(Dataset *ds, size_t resolution, size_t channels, ResizeFilter resize);

/* Image i, (height, width, channels). */
const uint8_t *dataset_image(const Dataset *ds, size_t i);
size_t dataset_image_bytes(const Dataset *ds);

/* ---- for the source readers: an empty data set with owned storage for count images (an error when that
 * memory cannot be had) ---- */
int dataset_alloc(Dataset *ds, const char *source, size_t count, size_t height, size_t width, size_t channels,
                  bool with_labels, Error *err);
/* Copies n names as the class names (n_classes = n). */
void dataset_set_class_names(Dataset *ds, const char *const *names, size_t n);

#endif
