/* CIFAR-10 binary batches (https://www.cs.toronto.edu/~kriz/cifar.html, "binary version"): records of
 * one label byte (0-9) and 3072 pixel bytes, the 1024 red values of a 32x32 image in row-major order,
 * then the green, then the blue (CHW). The files are data_batch_1.bin ... data_batch_5.bin and
 * test_batch.bin; any number of them can be read as one data set. Pixels are stored HWC here. */
#ifndef DIFFUSE_DATA_CIFAR_H
#define DIFFUSE_DATA_CIFAR_H

#include <stddef.h>

#include "core/error.h"
#include "data/dataset.h"

#define CIFAR_SIDE 32
#define CIFAR_RECORD_BYTES (1 + 3 * CIFAR_SIDE * CIFAR_SIDE)
#define CIFAR_N_CLASSES 10

/* ds = the records of paths[0..n_paths) in that order, labelled, with CIFAR-10's class names. */
int cifar_read(Dataset *ds, const char *const *paths, size_t n_paths, Error *err);

/* The batch files of a CIFAR-10 folder: the data_batch_<n>.bin files in order of n (train) or
 * test_batch.bin (test). Returns the number found (0: not a CIFAR-10 folder) and a malloc'ed array of
 * malloc'ed paths in *paths. */
size_t cifar_find_batches(const char *dir, int test_split, char ***paths);

#endif
