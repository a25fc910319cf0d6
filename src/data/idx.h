/* IDX files, the format of MNIST and Fashion-MNIST (http://yann.lecun.com/exdb/mnist/, "file formats"):
 * a big-endian magic 0x000008DD (bytes 0, 0, type 0x08 = unsigned byte, DD = number of dimensions), DD
 * big-endian uint32 dimensions, then the data. Images are 0x00000803 (count, rows, cols), labels
 * 0x00000801 (count). Files may be gzipped (the usual download) or plain; zlib's gzread reads both.
 *
 * The files are untrusted: the dimensions must account for the data exactly (a plain file's size, or the
 * decompressed stream of a gzipped one, which is also bounded by deflate's largest ratio before anything
 * is allocated), so a truncated file or a header that lies is an error, never a huge allocation. */
#ifndef DIFFUSE_DATA_IDX_H
#define DIFFUSE_DATA_IDX_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "data/dataset.h"

#define IDX_MAGIC_IMAGES 0x00000803u
#define IDX_MAGIC_LABELS 0x00000801u

/* Reads one IDX file of unsigned bytes with n_dims dimensions: dims[0..n_dims) and a malloc'ed copy of
 * the data (*data, product of dims bytes). */
int idx_read_file(const char *path, uint32_t magic, size_t *dims, uint8_t **data, Error *err);

/* ds = the images of images_path with the labels of labels_path (NULL: unlabelled). The counts must
 * agree; n_classes is the largest label + 1. */
int idx_read(Dataset *ds, const char *images_path, const char *labels_path, Error *err);

/* The labels file that belongs to an images file by the MNIST naming (train-images-idx3-ubyte.gz ->
 * train-labels-idx1-ubyte.gz), when it exists; else NULL. Malloc'ed. */
char *idx_labels_path_for(const char *images_path);

#endif
