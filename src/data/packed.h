/* The packed data set file that `diffuse prepare` writes: every image already decoded, resized and
 * converted, so training opens it with one mmap instead of decoding a folder. All integers little-endian.
 *
 *   offset  size  field
 *        0     8  magic "DFSDATA\0"
 *        8     4  version (PACKED_VERSION)
 *       12     4  header bytes (PACKED_HEADER_BYTES)
 *       16     8  count
 *       24     4  height, 28: width, 32: channels (1 or 3)
 *       36     4  n_classes (0: unlabelled)
 *       40    16  pixels offset, bytes    (count x height x width x channels uint8, NHWC)
 *       56    16  labels offset, bytes    (count int32, or 0, 0 when unlabelled)
 *       72    16  names offset, bytes     (n_classes NUL-terminated class names, or 0, 0)
 *       88     8  file bytes
 *       96    28  zero
 *      124     4  CRC-32 (zlib) of bytes 0-123
 * Sections start at multiples of 64 bytes, zero-padded; pixels at 128.
 *
 * The reader trusts nothing: the magic, version and CRC, then every offset and size against the shape and
 * the file's real size, then every label against n_classes. A file of another version says how to
 * regenerate it. */
#ifndef DIFFUSE_DATA_PACKED_H
#define DIFFUSE_DATA_PACKED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "data/dataset.h"

#define PACKED_MAGIC "DFSDATA"
#define PACKED_MAGIC_BYTES 8
#define PACKED_VERSION 1u
#define PACKED_HEADER_BYTES 128u

/* Writes ds atomically (temporary file, fsync, rename). */
int packed_write(const char *path, const Dataset *ds, Error *err);

/* Opens a packed file as a data set whose pixels stay in a read-only mapping until dataset_free. */
int packed_open(Dataset *ds, const char *path, Error *err);

/* True when the first bytes of a file (at least PACKED_MAGIC_BYTES) are a packed file's magic. */
bool packed_has_magic(const uint8_t *bytes, size_t n_bytes);

#endif
