/* IDX reader (see idx.h). */
#define _POSIX_C_SOURCE 200809L
#include "data/idx.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#include "core/alloc.h"

/* Deflate cannot expand data by more than about 1032:1 (RFC 1951: a 258-byte match in at most 2 bits);
 * with a margin for the gzip header, a gzipped file of n bytes holds less than this. */
static size_t gzip_max_expansion(size_t file_bytes) {
    return file_bytes > SIZE_MAX / 1100 ? SIZE_MAX : file_bytes * 1100 + 4096;
}

/* gzread with a size_t length, in chunks an int can count. Returns the number of bytes read, or -1
 * with the zlib message in err. */
static long long gz_read_all(gzFile f, uint8_t *dst, size_t n, const char *path, Error *err) {
    size_t done = 0;
    while (done < n) {
        size_t chunk = n - done > (1u << 30) ? (1u << 30) : n - done;
        int got = gzread(f, dst + done, (unsigned)chunk);
        if (got < 0) {
            int code;
            const char *msg = gzerror(f, &code);
            error_set(err, "%s: cannot decompress: %s (the gzip data is corrupt)", path, msg);
            return -1;
        }
        if (got == 0) break;
        done += (size_t)got;
    }
    /* zlib reports a stream cut short (even only its CRC trailer) as Z_BUF_ERROR, not as a failed read. */
    int code;
    gzerror(f, &code);
    if (code == Z_BUF_ERROR) {
        error_set(err, "%s: the gzip stream ends early (truncated file)", path);
        return -1;
    }
    return (long long)done;
}

int idx_read_file(const char *path, uint32_t magic, size_t *dims, uint8_t **data, Error *err) {
    *data = NULL;
    size_t n_dims = magic & 0xffu;
    struct stat info;
    if (stat(path, &info) != 0) return error_set(err, "%s: cannot open: %s", path, strerror(errno));
    if (!S_ISREG(info.st_mode)) return error_set(err, "%s: not a regular file", path);
    size_t file_bytes = (size_t)info.st_size;
    errno = 0;
    gzFile f = gzopen(path, "rb");
    if (!f) return error_set(err, "%s: cannot open: %s", path, errno ? strerror(errno) : "out of memory");
    gzbuffer(f, 1u << 17);

    uint8_t header[4 + 4 * 4];
    size_t header_bytes = 4 + 4 * n_dims;
    int rc = -1;
    long long got = gz_read_all(f, header, header_bytes, path, err);
    if (got < 0) goto done;
    if ((size_t)got < 4) {
        error_set(err, "%s: file is %lld bytes, too short for an IDX header (truncated?)", path, got);
        goto done;
    }
    uint32_t found = (uint32_t)header[0] << 24 | (uint32_t)header[1] << 16 | (uint32_t)header[2] << 8 | header[3];
    if (found != magic) {
        error_set(err, "%s: wrong magic 0x%08x, expected 0x%08x (an IDX %s file of unsigned bytes); "
                  "not an IDX file, or the wrong one of a pair", path, found, magic,
                  magic == IDX_MAGIC_IMAGES ? "image" : "label");
        goto done;
    }
    if ((size_t)got < header_bytes) {
        error_set(err, "%s: header is cut off after %lld bytes (truncated file)", path, got);
        goto done;
    }
    size_t data_bytes = 1;
    for (size_t i = 0; i < n_dims; i++) {
        const uint8_t *d = header + 4 + 4 * i;
        dims[i] = (size_t)((uint32_t)d[0] << 24 | (uint32_t)d[1] << 16 | (uint32_t)d[2] << 8 | d[3]);
        if (dims[i] == 0) {
            error_set(err, "%s: dimension %zu is 0: the file holds no data", path, i);
            goto done;
        }
        if (data_bytes > SIZE_MAX / dims[i]) {
            error_set(err, "%s: dimensions overflow (corrupt header)", path);
            goto done;
        }
        data_bytes *= dims[i];
    }
    if (gzdirect(f) && data_bytes != file_bytes - header_bytes) {
        error_set(err, "%s: header says %zu data bytes but the file holds %zu (truncated file or wrong header)",
                  path, data_bytes, file_bytes - header_bytes);
        goto done;
    }
    if (!gzdirect(f) && data_bytes > gzip_max_expansion(file_bytes)) {
        error_set(err, "%s: header says %zu data bytes, more than a %zu-byte gzipped file can hold (wrong header)",
                  path, data_bytes, file_bytes);
        goto done;
    }
    *data = xmalloc(data_bytes ? data_bytes : 1);
    got = gz_read_all(f, *data, data_bytes, path, err);
    if (got < 0) goto done;
    if ((size_t)got < data_bytes) {
        error_set(err, "%s: data ends after %lld of the %zu bytes the header promises (truncated file)", path,
                  got, data_bytes);
        goto done;
    }
    uint8_t extra;
    got = gz_read_all(f, &extra, 1, path, err);
    if (got < 0) goto done;
    if (got > 0) {
        error_set(err, "%s: more data than the header's dimensions account for (wrong header)", path);
        goto done;
    }
    rc = 0;
done:
    gzclose(f);
    if (rc) {
        free(*data);
        *data = NULL;
    }
    return rc;
}

int idx_read(Dataset *ds, const char *images_path, const char *labels_path, Error *err) {
    *ds = (Dataset){0};
    size_t dims[3], label_dims[1];
    uint8_t *pixels, *labels = NULL;
    if (idx_read_file(images_path, IDX_MAGIC_IMAGES, dims, &pixels, err)) return -1;
    if (labels_path) {
        if (idx_read_file(labels_path, IDX_MAGIC_LABELS, label_dims, &labels, err)) {
            free(pixels);
            return -1;
        }
        if (label_dims[0] != dims[0]) {
            free(pixels);
            free(labels);
            return error_set(err, "%s: %zu labels for the %zu images of %s (files from different sets?)",
                             labels_path, label_dims[0], dims[0], images_path);
        }
    }
    *ds = (Dataset){.count = dims[0], .height = dims[1], .width = dims[2], .channels = 1,
                    .source = xstrdup(images_path)};
    ds->owned_pixels = pixels;
    ds->pixels = pixels;
    if (labels) {
        ds->labels = xmalloc(dims[0] * sizeof *ds->labels);
        size_t max_label = 0;
        for (size_t i = 0; i < dims[0]; i++) {
            ds->labels[i] = labels[i];
            if (labels[i] > max_label) max_label = labels[i];
        }
        ds->n_classes = max_label + 1;
        free(labels);
    }
    return 0;
}

char *idx_labels_path_for(const char *images_path) {
    static const char *const pairs[][2] = {{"images-idx3", "labels-idx1"}, {"images.idx3", "labels.idx1"}};
    const char *base = strrchr(images_path, '/');
    base = base ? base + 1 : images_path;
    for (size_t p = 0; p < sizeof pairs / sizeof pairs[0]; p++) {
        const char *at = strstr(base, pairs[p][0]);
        if (!at) continue;
        char *path = xstrdup(images_path);
        memcpy(path + (at - images_path), pairs[p][1], strlen(pairs[p][1]));
        struct stat info;
        if (stat(path, &info) == 0 && S_ISREG(info.st_mode)) return path;
        free(path);
    }
    return NULL;
}
