/* CIFAR-10 reader (see cifar.h). */
#define _POSIX_C_SOURCE 200809L
#include "data/cifar.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/alloc.h"

static const char *const cifar_class_names[CIFAR_N_CLASSES] = {
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"};

static int file_size(const char *path, size_t *n_bytes, Error *err) {
    struct stat info;
    if (stat(path, &info) != 0) return error_set(err, "%s: cannot open: %s", path, strerror(errno));
    if (!S_ISREG(info.st_mode)) return error_set(err, "%s: not a regular file", path);
    *n_bytes = (size_t)info.st_size;
    if (*n_bytes == 0 || *n_bytes % CIFAR_RECORD_BYTES)
        return error_set(err, "%s: %zu bytes is not a whole number of %d-byte CIFAR-10 records (truncated, or "
                         "not a CIFAR-10 binary batch: CIFAR-100 and the Python pickles are not supported)",
                         path, *n_bytes, CIFAR_RECORD_BYTES);
    return 0;
}

static int read_batch(Dataset *ds, size_t first, const char *path, size_t n_records, Error *err) {
    FILE *f = fopen(path, "rb");
    if (!f) return error_set(err, "%s: cannot open: %s", path, strerror(errno));
    enum { CHUNK = 1000 };
    uint8_t *buf = xmalloc((size_t)CHUNK * CIFAR_RECORD_BYTES);
    const size_t plane = CIFAR_SIDE * CIFAR_SIDE;
    int rc = 0;
    for (size_t done = 0; done < n_records && rc == 0;) {
        size_t n = n_records - done < CHUNK ? n_records - done : CHUNK;
        if (fread(buf, CIFAR_RECORD_BYTES, n, f) != n) {
            rc = error_set(err, "%s: read failed after %zu records (file truncated while reading?)", path, done);
            break;
        }
        for (size_t r = 0; r < n; r++) {
            const uint8_t *rec = buf + r * CIFAR_RECORD_BYTES;
            size_t i = first + done + r;
            if (rec[0] >= CIFAR_N_CLASSES) {
                rc = error_set(err, "%s: record %zu has label %d; CIFAR-10 labels are 0-9 (not a CIFAR-10 batch)",
                               path, done + r, rec[0]);
                break;
            }
            ds->labels[i] = rec[0];
            uint8_t *img = ds->owned_pixels + i * 3 * plane;
            for (size_t p = 0; p < plane; p++)
                for (size_t c = 0; c < 3; c++) img[p * 3 + c] = rec[1 + c * plane + p];
        }
        done += n;
    }
    free(buf);
    fclose(f);
    return rc;
}

int cifar_read(Dataset *ds, const char *const *paths, size_t n_paths, Error *err) {
    *ds = (Dataset){0};
    CHECK(n_paths > 0, "no CIFAR-10 files given");
    size_t *records = xmalloc(n_paths * sizeof *records), total = 0;
    for (size_t i = 0; i < n_paths; i++) {
        size_t n_bytes = 0;
        if (file_size(paths[i], &n_bytes, err)) {
            free(records);
            return -1;
        }
        records[i] = n_bytes / CIFAR_RECORD_BYTES;
        total += records[i];
    }
    if (dataset_alloc(ds, paths[0], total, CIFAR_SIDE, CIFAR_SIDE, 3, true, err)) {
        free(records);
        return -1;
    }
    dataset_set_class_names(ds, cifar_class_names, CIFAR_N_CLASSES);
    size_t first = 0;
    for (size_t i = 0; i < n_paths; i++) {
        if (read_batch(ds, first, paths[i], records[i], err)) {
            free(records);
            dataset_free(ds);
            return -1;
        }
        first += records[i];
    }
    free(records);
    return 0;
}

/* data_batch_<n>.bin -> n, else -1. */
static long batch_number(const char *name) {
    const char *prefix = "data_batch_";
    size_t len = strlen(name), plen = strlen(prefix);
    if (len <= plen + 4 || strncmp(name, prefix, plen) != 0 || strcmp(name + len - 4, ".bin") != 0) return -1;
    long n = 0;
    for (const char *p = name + plen; p < name + len - 4; p++) {
        if (*p < '0' || *p > '9' || n > 100000000) return -1;
        n = n * 10 + (*p - '0');
    }
    return n;
}

typedef struct NumberedPath {
    long number;
    char *path;
} NumberedPath;

static int compare_numbered(const void *a, const void *b) {
    long x = ((const NumberedPath *)a)->number, y = ((const NumberedPath *)b)->number;
    return x < y ? -1 : x > y;
}

size_t cifar_find_batches(const char *dir, int test_split, char ***paths) {
    *paths = NULL;
    DIR *d = opendir(dir);
    if (!d) return 0;
    NumberedPath *found = NULL;
    size_t n = 0, cap = 0;
    for (struct dirent *e; (e = readdir(d));) {
        long number = test_split ? (strcmp(e->d_name, "test_batch.bin") == 0 ? 0 : -1) : batch_number(e->d_name);
        if (number < 0) continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 8;
            found = xrealloc(found, cap * sizeof *found);
        }
        size_t len = strlen(dir) + strlen(e->d_name) + 2;
        found[n].path = xmalloc(len);
        snprintf(found[n].path, len, "%s/%s", dir, e->d_name);
        found[n++].number = number;
    }
    closedir(d);
    if (n == 0) return 0;
    qsort(found, n, sizeof *found, compare_numbered);
    *paths = xmalloc(n * sizeof **paths);
    for (size_t i = 0; i < n; i++) (*paths)[i] = found[i].path;
    free(found);
    return n;
}
