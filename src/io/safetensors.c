/* safetensors reader and writer (see safetensors.h). The reader validates in this order: file size,
 * header length, JSON syntax, each entry's dtype / shape / offsets, then overlaps and duplicate names
 * across entries; the first problem found becomes the error message. */
#define _POSIX_C_SOURCE 200809L
#include "io/safetensors.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/half.h"
#include "core/json_values.h"
#include "io/atomic_file.h"
#include "io/fs.h"

static const struct {
    const char *name;
    size_t bytes;
} dtype_table[SAFETENSORS_N_DTYPES] = {
    [SAFETENSORS_BOOL] = {"BOOL", 1}, [SAFETENSORS_U8] = {"U8", 1},    [SAFETENSORS_I8] = {"I8", 1},
    [SAFETENSORS_I16] = {"I16", 2},   [SAFETENSORS_U16] = {"U16", 2},  [SAFETENSORS_F16] = {"F16", 2},
    [SAFETENSORS_BF16] = {"BF16", 2}, [SAFETENSORS_I32] = {"I32", 4},  [SAFETENSORS_U32] = {"U32", 4},
    [SAFETENSORS_F32] = {"F32", 4},   [SAFETENSORS_I64] = {"I64", 8},  [SAFETENSORS_U64] = {"U64", 8},
    [SAFETENSORS_F64] = {"F64", 8},
};

const char *safetensors_dtype_name(SafeTensorsDType dtype) {
    CHECK(dtype >= 0 && dtype < SAFETENSORS_N_DTYPES, "bad dtype %d", (int)dtype);
    return dtype_table[dtype].name;
}

size_t safetensors_dtype_bytes(SafeTensorsDType dtype) {
    CHECK(dtype >= 0 && dtype < SAFETENSORS_N_DTYPES, "bad dtype %d", (int)dtype);
    return dtype_table[dtype].bytes;
}

static int dtype_from_name(const char *name, SafeTensorsDType *dtype) {
    for (int i = 0; i < SAFETENSORS_N_DTYPES; i++) {
        if (strcmp(dtype_table[i].name, name) == 0) {
            *dtype = (SafeTensorsDType)i;
            return 0;
        }
    }
    return -1;
}

/* ------------------------------------------------------------------------------------------------ */
/* Reading */

/* A JSON number that is a non-negative integer exactly representable in a double. */
static int json_size(const cJSON *item, size_t *out) {
    if (!cJSON_IsNumber(item)) return -1;
    double v = item->valuedouble;
    if (!(v >= 0) || v > 9007199254740992.0 || floor(v) != v) return -1;
    *out = (size_t)v;
    return 0;
}

static int compare_info_by_name(const void *a, const void *b) {
    return strcmp(((const SafeTensorInfo *)a)->name, ((const SafeTensorInfo *)b)->name);
}

static int compare_info_by_offset(const void *a, const void *b) {
    const SafeTensorInfo *x = *(const SafeTensorInfo *const *)a, *y = *(const SafeTensorInfo *const *)b;
    return x->data < y->data ? -1 : x->data > y->data;
}

static int parse_entry(SafeTensorInfo *t, const cJSON *entry, const unsigned char *data_start,
                       size_t data_bytes, const char *path, Error *err) {
    if (!cJSON_IsObject(entry)) return error_set(err, "%s: tensor '%s': header entry is not a JSON object", path, t->name);
    const cJSON *dtype = cJSON_GetObjectItemCaseSensitive(entry, "dtype");
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(entry, "shape");
    const cJSON *offsets = cJSON_GetObjectItemCaseSensitive(entry, "data_offsets");
    if (!cJSON_IsString(dtype) || dtype_from_name(dtype->valuestring, &t->dtype))
        return error_set(err, "%s: tensor '%s': missing or unknown dtype%s%s", path, t->name,
                         cJSON_IsString(dtype) ? " " : "", cJSON_IsString(dtype) ? dtype->valuestring : "");
    if (!cJSON_IsArray(shape))
        return error_set(err, "%s: tensor '%s': 'shape' is missing or not an array", path, t->name);
    int ndim = cJSON_GetArraySize(shape);
    if (ndim > SAFETENSORS_MAX_DIMS)
        return error_set(err, "%s: tensor '%s' has %d dimensions; at most %d are supported", path, t->name, ndim,
                         SAFETENSORS_MAX_DIMS);
    t->ndim = ndim;
    size_t numel = 1;
    for (int i = 0; i < ndim; i++) {
        if (json_size(cJSON_GetArrayItem(shape, i), &t->shape[i]))
            return error_set(err, "%s: tensor '%s': shape entry %d is not a non-negative integer", path, t->name, i);
        if (t->shape[i] && numel > SIZE_MAX / t->shape[i])
            return error_set(err, "%s: tensor '%s': shape overflows", path, t->name);
        numel *= t->shape[i];
    }
    t->numel = numel;
    size_t begin, end;
    if (!cJSON_IsArray(offsets) || cJSON_GetArraySize(offsets) != 2 ||
        json_size(cJSON_GetArrayItem(offsets, 0), &begin) || json_size(cJSON_GetArrayItem(offsets, 1), &end))
        return error_set(err, "%s: tensor '%s': 'data_offsets' must be two non-negative integers", path, t->name);
    if (begin > end || end > data_bytes)
        return error_set(err, "%s: tensor '%s': data_offsets [%zu, %zu] lie outside the %zu-byte data section "
                         "(truncated file?)", path, t->name, begin, end, data_bytes);
    size_t elem = dtype_table[t->dtype].bytes;
    if (numel > SIZE_MAX / elem || numel * elem != end - begin)
        return error_set(err, "%s: tensor '%s': %s shape holds %zu elements (%zu bytes) but data_offsets span %zu bytes",
                         path, t->name, dtype_table[t->dtype].name, numel, numel * elem, end - begin);
    t->data = data_start + begin;
    t->n_bytes = end - begin;
    return 0;
}

static int parse_metadata(SafeTensors *st, const cJSON *meta, Error *err) {
    if (!cJSON_IsObject(meta)) return error_set(err, "%s: __metadata__ is not a JSON object", st->path);
    st->meta = xcalloc((size_t)cJSON_GetArraySize(meta) + 1, sizeof *st->meta);
    for (const cJSON *kv = meta->child; kv; kv = kv->next) {
        if (!cJSON_IsString(kv))
            return error_set(err, "%s: __metadata__ value for '%s' is not a string", st->path, kv->string);
        st->meta[st->n_meta].key = xstrdup(kv->string);
        st->meta[st->n_meta].value = xstrdup(kv->valuestring);
        st->n_meta++;
    }
    return 0;
}

static int parse_header(SafeTensors *st, const char *json, size_t json_bytes, const unsigned char *data_start,
                        size_t data_bytes, Error *err) {
    if (json_check_values(json, json_bytes, JSON_MAX_VALUES, st->path, err)) return -1;
    cJSON *root = cJSON_ParseWithLength(json, json_bytes);
    if (!root) return error_set(err, "%s: header is not valid JSON (corrupt or not a safetensors file)", st->path);
    int rc = 0;
    if (!cJSON_IsObject(root)) {
        rc = error_set(err, "%s: header is not a JSON object", st->path);
        goto done;
    }
    st->tensors = xcalloc((size_t)cJSON_GetArraySize(root) + 1, sizeof *st->tensors);
    for (const cJSON *entry = root->child; entry; entry = entry->next) {
        if (strcmp(entry->string, "__metadata__") == 0) {
            if (st->meta) {
                rc = error_set(err, "%s: __metadata__ appears twice", st->path);
                goto done;
            }
            if ((rc = parse_metadata(st, entry, err))) goto done;
            continue;
        }
        SafeTensorInfo *t = &st->tensors[st->n_tensors++];
        t->name = xstrdup(entry->string);
        if ((rc = parse_entry(t, entry, data_start, data_bytes, st->path, err))) goto done;
    }
    qsort(st->tensors, st->n_tensors, sizeof *st->tensors, compare_info_by_name);
    for (size_t i = 1; i < st->n_tensors; i++) {
        if (strcmp(st->tensors[i - 1].name, st->tensors[i].name) == 0) {
            rc = error_set(err, "%s: tensor '%s' appears twice in the header", st->path, st->tensors[i].name);
            goto done;
        }
    }
    /* No two non-empty tensors may share bytes. */
    const SafeTensorInfo **by_offset = xcalloc(st->n_tensors + 1, sizeof *by_offset);
    for (size_t i = 0; i < st->n_tensors; i++) by_offset[i] = &st->tensors[i];
    qsort(by_offset, st->n_tensors, sizeof *by_offset, compare_info_by_offset);
    const SafeTensorInfo *prev = NULL;
    for (size_t i = 0; i < st->n_tensors && rc == 0; i++) {
        const SafeTensorInfo *t = by_offset[i];
        if (t->n_bytes == 0) continue;
        if (prev && t->data < prev->data + prev->n_bytes)
            rc = error_set(err, "%s: tensors '%s' and '%s' overlap in the data section", st->path, prev->name, t->name);
        prev = t;
    }
    free(by_offset);
done:
    cJSON_Delete(root);
    return rc;
}

int safetensors_open(SafeTensors *st, const char *path, Error *err) {
    *st = (SafeTensors){0};
    void *map;
    size_t file_bytes;
    if (fs_map_file(path, 8, "a safetensors header (truncated?)", &map, &file_bytes, err)) return -1;
    st->path = xstrdup(path);
    st->map = map;
    st->map_bytes = file_bytes;

    const unsigned char *bytes = map;
    uint64_t header_bytes = 0;
    for (int i = 7; i >= 0; i--) header_bytes = (header_bytes << 8) | bytes[i];
    if (header_bytes > file_bytes - 8 || header_bytes > SAFETENSORS_MAX_HEADER_BYTES) {
        error_set(err, "%s: header length %llu does not fit in the %zu-byte file (truncated or not a safetensors file)",
                  path, (unsigned long long)header_bytes, file_bytes);
        safetensors_close(st);
        return -1;
    }
    const unsigned char *data_start = bytes + 8 + header_bytes;
    size_t data_bytes = file_bytes - 8 - (size_t)header_bytes;
    if (parse_header(st, (const char *)bytes + 8, (size_t)header_bytes, data_start, data_bytes, err)) {
        safetensors_close(st);
        return -1;
    }
    return 0;
}

void safetensors_close(SafeTensors *st) {
    fs_unmap_file(st->map, st->map_bytes);
    for (size_t i = 0; i < st->n_tensors; i++) free(st->tensors[i].name);
    free(st->tensors);
    for (size_t i = 0; i < st->n_meta; i++) {
        free(st->meta[i].key);
        free(st->meta[i].value);
    }
    free(st->meta);
    free(st->path);
    *st = (SafeTensors){0};
}

const SafeTensorInfo *safetensors_find(const SafeTensors *st, const char *name) {
    SafeTensorInfo key = {.name = (char *)name};
    return bsearch(&key, st->tensors, st->n_tensors, sizeof *st->tensors, compare_info_by_name);
}

const char *safetensors_meta_get(const SafeTensors *st, const char *key) {
    for (size_t i = 0; i < st->n_meta; i++)
        if (strcmp(st->meta[i].key, key) == 0) return st->meta[i].value;
    return NULL;
}

int safetensors_read_f32(const SafeTensors *st, const SafeTensorInfo *t, float *out, size_t n_out, Error *err) {
    if (t->numel != n_out)
        return error_set(err, "%s: tensor '%s' has %zu elements, expected %zu", st->path, t->name, t->numel, n_out);
    const unsigned char *src = t->data;
    switch (t->dtype) {
    case SAFETENSORS_F32:
        memcpy(out, src, n_out * sizeof(float));
        return 0;
    case SAFETENSORS_F16:
    case SAFETENSORS_BF16:
        for (size_t i = 0; i < n_out; i++) {
            uint16_t h = (uint16_t)(src[2 * i] | (src[2 * i + 1] << 8));
            out[i] = t->dtype == SAFETENSORS_F16 ? half_to_float(h) : bfloat16_to_float(h);
        }
        return 0;
    default:
        return error_set(err, "%s: tensor '%s' has dtype %s; only F32, F16 and BF16 can be read as floats",
                         st->path, t->name, dtype_table[t->dtype].name);
    }
}

/* ------------------------------------------------------------------------------------------------ */
/* Writing */

static char *build_header(const SafeTensorsEntry *entries, size_t n_entries, const SafeTensorsMeta *meta,
                          size_t n_meta) {
    cJSON *root = cJSON_CreateObject();
    if (n_meta) {
        cJSON *m = cJSON_AddObjectToObject(root, "__metadata__");
        for (size_t i = 0; i < n_meta; i++) cJSON_AddStringToObject(m, meta[i].key, meta[i].value);
    }
    size_t offset = 0;
    for (size_t i = 0; i < n_entries; i++) {
        const SafeTensorsEntry *e = &entries[i];
        CHECK(e->ndim >= 0 && e->ndim <= SAFETENSORS_MAX_DIMS, "tensor '%s': %d dimensions", e->name, e->ndim);
        size_t numel = 1;
        cJSON *t = cJSON_AddObjectToObject(root, e->name);
        cJSON_AddStringToObject(t, "dtype", "F32");
        cJSON *shape = cJSON_AddArrayToObject(t, "shape");
        for (int d = 0; d < e->ndim; d++) {
            cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)e->shape[d]));
            numel *= e->shape[d];
        }
        cJSON *offsets = cJSON_AddArrayToObject(t, "data_offsets");
        cJSON_AddItemToArray(offsets, cJSON_CreateNumber((double)offset));
        offset += numel * sizeof(float);
        cJSON_AddItemToArray(offsets, cJSON_CreateNumber((double)offset));
    }
    char *json = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    CHECK(json, "out of memory printing a safetensors header");
    return json;
}

int safetensors_write(const char *path, const SafeTensorsEntry *entries, size_t n_entries,
                      const SafeTensorsMeta *meta, size_t n_meta, Error *err) {
    char *json = build_header(entries, n_entries, meta, n_meta);
    size_t json_bytes = strlen(json);
    size_t padded = (json_bytes + 7) / 8 * 8; /* data starts 8-byte aligned, padded with spaces */
    unsigned char length[8];
    for (int i = 0; i < 8; i++) length[i] = (unsigned char)((uint64_t)padded >> (8 * i));
    AtomicFile af;
    int rc = atomic_file_open(&af, path, err);
    if (rc == 0) {
        rc = atomic_file_write(&af, length, 8, err) || atomic_file_write(&af, json, json_bytes, err) ||
             atomic_file_write(&af, "        ", padded - json_bytes, err);
        for (size_t i = 0; i < n_entries && rc == 0; i++) {
            size_t numel = 1;
            for (int d = 0; d < entries[i].ndim; d++) numel *= entries[i].shape[d];
            rc = atomic_file_write(&af, entries[i].data, numel * sizeof(float), err);
        }
        if (rc) atomic_file_abort(&af);
        else rc = atomic_file_commit(&af, err);
    }
    cJSON_free(json);
    return rc ? -1 : 0;
}
