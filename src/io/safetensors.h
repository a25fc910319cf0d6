/* safetensors files: an 8-byte little-endian header length N, N bytes of JSON
 * {name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {str: str}}, then the raw
 * row-major tensor data, offsets relative to the end of the header.
 * (Format: https://github.com/huggingface/safetensors, "Format" section of its README.)
 *
 * The reader treats the file as untrusted: every size and offset is checked before use, so a truncated
 * or lying file is an error naming the file and the problem, never a crash. The file is memory-mapped;
 * tensor data stays in the mapping until safetensors_close. */
#ifndef DIFFUSE_SAFETENSORS_H
#define DIFFUSE_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

#define SAFETENSORS_MAX_DIMS 8
/* Same bound as the reference implementation: a larger header is refused rather than parsed. */
#define SAFETENSORS_MAX_HEADER_BYTES (100u * 1024u * 1024u)

typedef enum SafeTensorsDType {
    SAFETENSORS_BOOL,
    SAFETENSORS_U8,
    SAFETENSORS_I8,
    SAFETENSORS_I16,
    SAFETENSORS_U16,
    SAFETENSORS_F16,
    SAFETENSORS_BF16,
    SAFETENSORS_I32,
    SAFETENSORS_U32,
    SAFETENSORS_F32,
    SAFETENSORS_I64,
    SAFETENSORS_U64,
    SAFETENSORS_F64,
    SAFETENSORS_N_DTYPES
} SafeTensorsDType;

const char *safetensors_dtype_name(SafeTensorsDType dtype);
size_t safetensors_dtype_bytes(SafeTensorsDType dtype);

typedef struct SafeTensorInfo {
    char *name;
    SafeTensorsDType dtype;
    int ndim;
    size_t shape[SAFETENSORS_MAX_DIMS];
    size_t numel;
    const unsigned char *data; /* inside the mapping; possibly unaligned */
    size_t n_bytes;
} SafeTensorInfo;

typedef struct SafeTensorsMeta {
    char *key;
    char *value;
} SafeTensorsMeta;

typedef struct SafeTensors {
    char *path;
    void *map;
    size_t map_bytes;
    size_t n_tensors;
    SafeTensorInfo *tensors; /* sorted by name */
    size_t n_meta;
    SafeTensorsMeta *meta;
} SafeTensors;

int safetensors_open(SafeTensors *st, const char *path, Error *err);
void safetensors_close(SafeTensors *st);

/* NULL when absent. */
const SafeTensorInfo *safetensors_find(const SafeTensors *st, const char *name);
const char *safetensors_meta_get(const SafeTensors *st, const char *key);

/* Converts an F32, F16 or BF16 tensor to n_out floats; any other dtype, or a count other than the
 * tensor's, is an error naming the tensor. */
int safetensors_read_f32(const SafeTensors *st, const SafeTensorInfo *t, float *out, size_t n_out, Error *err);

/* One F32 tensor to write. */
typedef struct SafeTensorsEntry {
    const char *name;
    int ndim;
    size_t shape[SAFETENSORS_MAX_DIMS];
    const float *data;
} SafeTensorsEntry;

/* Writes F32 tensors (in the order given) and string metadata (n_meta key/value pairs) atomically. */
int safetensors_write(const char *path, const SafeTensorsEntry *entries, size_t n_entries,
                      const SafeTensorsMeta *meta, size_t n_meta, Error *err);

#endif
