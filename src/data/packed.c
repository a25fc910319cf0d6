/* Packed data set files (see packed.h). */
#define _POSIX_C_SOURCE 200809L
#include "data/packed.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "core/alloc.h"
#include "io/atomic_file.h"
#include "io/fs.h"

#define PACKED_ALIGN 64u
#define PACKED_CRC_OFFSET 124u

static void put_u32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static void put_u64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get_u32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get_u64(const uint8_t *p) { return (uint64_t)get_u32(p) | (uint64_t)get_u32(p + 4) << 32; }

static uint64_t align_up(uint64_t n) { return (n + PACKED_ALIGN - 1) / PACKED_ALIGN * PACKED_ALIGN; }

bool packed_has_magic(const uint8_t *bytes, size_t n_bytes) {
    return n_bytes >= PACKED_MAGIC_BYTES && memcmp(bytes, PACKED_MAGIC, PACKED_MAGIC_BYTES) == 0;
}

/* ------------------------------------------------------------------------------------------------ */
/* Writing */

static int write_padding(AtomicFile *af, uint64_t *offset, Error *err) {
    static const uint8_t zeros[PACKED_ALIGN];
    uint64_t next = align_up(*offset);
    if (atomic_file_write(af, zeros, (size_t)(next - *offset), err)) return -1;
    *offset = next;
    return 0;
}

int packed_write(const char *path, const Dataset *ds, Error *err) {
    CHECK(ds->count > 0 && ds->pixels, "packed_write: empty data set");
    CHECK(ds->channels == 1 || ds->channels == 3, "packed_write: %zu channels", ds->channels);
    uint64_t pixel_bytes = (uint64_t)ds->count * dataset_image_bytes(ds);
    uint64_t label_bytes = ds->labels ? (uint64_t)ds->count * 4 : 0;
    uint64_t names_bytes = 0;
    for (size_t i = 0; ds->class_names && i < ds->n_classes; i++) names_bytes += strlen(ds->class_names[i]) + 1;
    uint64_t pixels_at = PACKED_HEADER_BYTES;
    uint64_t labels_at = label_bytes ? align_up(pixels_at + pixel_bytes) : 0;
    uint64_t names_at = names_bytes ? align_up((label_bytes ? labels_at + label_bytes : pixels_at + pixel_bytes)) : 0;
    uint64_t file_bytes = names_bytes ? names_at + names_bytes : label_bytes ? labels_at + label_bytes
                                                                             : pixels_at + pixel_bytes;

    uint8_t header[PACKED_HEADER_BYTES] = {0};
    memcpy(header, PACKED_MAGIC, PACKED_MAGIC_BYTES);
    put_u32(header + 8, PACKED_VERSION);
    put_u32(header + 12, PACKED_HEADER_BYTES);
    put_u64(header + 16, ds->count);
    put_u32(header + 24, (uint32_t)ds->height);
    put_u32(header + 28, (uint32_t)ds->width);
    put_u32(header + 32, (uint32_t)ds->channels);
    put_u32(header + 36, ds->labels ? (uint32_t)ds->n_classes : 0);
    put_u64(header + 40, pixels_at);
    put_u64(header + 48, pixel_bytes);
    put_u64(header + 56, labels_at);
    put_u64(header + 64, label_bytes);
    put_u64(header + 72, names_at);
    put_u64(header + 80, names_bytes);
    put_u64(header + 88, file_bytes);
    put_u32(header + PACKED_CRC_OFFSET, (uint32_t)crc32(0, header, PACKED_CRC_OFFSET));

    AtomicFile af;
    if (atomic_file_open(&af, path, err)) return -1;
    uint64_t offset = PACKED_HEADER_BYTES;
    if (atomic_file_write(&af, header, sizeof header, err) ||
        atomic_file_write(&af, ds->pixels, (size_t)pixel_bytes, err))
        goto fail;
    offset += pixel_bytes;
    if (label_bytes) {
        uint8_t *labels = xmalloc((size_t)label_bytes);
        for (size_t i = 0; i < ds->count; i++) put_u32(labels + 4 * i, (uint32_t)ds->labels[i]);
        int rc = write_padding(&af, &offset, err) || atomic_file_write(&af, labels, (size_t)label_bytes, err);
        free(labels);
        if (rc) goto fail;
        offset += label_bytes;
    }
    if (names_bytes) {
        if (write_padding(&af, &offset, err)) goto fail;
        for (size_t i = 0; i < ds->n_classes; i++)
            if (atomic_file_write(&af, ds->class_names[i], strlen(ds->class_names[i]) + 1, err)) goto fail;
    }
    return atomic_file_commit(&af, err);
fail:
    atomic_file_abort(&af);
    return -1;
}

/* ------------------------------------------------------------------------------------------------ */
/* Reading */

#define REGENERATE_HINT "regenerate it with `diffuse prepare SOURCE --output FILE`"

/* A section [at, at + n) that must lie inside the file, after the header, aligned. */
static int check_section(const char *path, const char *what, uint64_t at, uint64_t n, uint64_t file_bytes,
                         Error *err) {
    if (at < PACKED_HEADER_BYTES || at % PACKED_ALIGN || at > file_bytes || n > file_bytes - at)
        return error_set(err, "%s: %s section [%llu, +%llu) lies outside the %llu-byte file (corrupt header or "
                         "truncated file; " REGENERATE_HINT ")", path, what, (unsigned long long)at,
                         (unsigned long long)n, (unsigned long long)file_bytes);
    return 0;
}

static int parse_header(Dataset *ds, const uint8_t *h, uint64_t file_bytes, const char *path, Error *err) {
    if (memcmp(h, PACKED_MAGIC, PACKED_MAGIC_BYTES) != 0)
        return error_set(err, "%s: not a packed data set file (wrong magic)", path);
    uint32_t version = get_u32(h + 8);
    if (version != PACKED_VERSION)
        return error_set(err, "%s: packed file version %u, this build reads version %u: " REGENERATE_HINT, path,
                         version, PACKED_VERSION);
    if (get_u32(h + PACKED_CRC_OFFSET) != (uint32_t)crc32(0, h, PACKED_CRC_OFFSET))
        return error_set(err, "%s: header checksum mismatch (corrupt file; " REGENERATE_HINT ")", path);
    if (get_u32(h + 12) != PACKED_HEADER_BYTES)
        return error_set(err, "%s: header size %u, expected %u (corrupt file)", path, get_u32(h + 12),
                         PACKED_HEADER_BYTES);
    uint64_t count = get_u64(h + 16), expected_bytes = get_u64(h + 88);
    uint32_t height = get_u32(h + 24), width = get_u32(h + 28), channels = get_u32(h + 32);
    uint32_t n_classes = get_u32(h + 36);
    if (expected_bytes != file_bytes)
        return error_set(err, "%s: file is %llu bytes but its header says %llu (truncated or damaged; "
                         REGENERATE_HINT ")", path, (unsigned long long)file_bytes, (unsigned long long)expected_bytes);
    if (count == 0 || height == 0 || width == 0 || height > 65536 || width > 65536 || (channels != 1 && channels != 3))
        return error_set(err, "%s: bad shape: %llu images of %ux%ux%u (corrupt header)", path,
                         (unsigned long long)count, height, width, channels);
    uint64_t image_bytes = (uint64_t)height * width * channels;
    if (count > file_bytes / image_bytes)
        return error_set(err, "%s: %llu images of %llu bytes do not fit in the %llu-byte file (corrupt header or "
                         "truncated file)", path, (unsigned long long)count, (unsigned long long)image_bytes,
                         (unsigned long long)file_bytes);
    uint64_t pixels_at = get_u64(h + 40), pixel_bytes = get_u64(h + 48);
    uint64_t labels_at = get_u64(h + 56), label_bytes = get_u64(h + 64);
    uint64_t names_at = get_u64(h + 72), names_bytes = get_u64(h + 80);
    if (pixel_bytes != count * image_bytes)
        return error_set(err, "%s: pixel section of %llu bytes, the shape needs %llu (corrupt header)", path,
                         (unsigned long long)pixel_bytes, (unsigned long long)(count * image_bytes));
    if (check_section(path, "pixel", pixels_at, pixel_bytes, file_bytes, err)) return -1;
    if ((n_classes == 0) != (label_bytes == 0) || (label_bytes && label_bytes != count * 4))
        return error_set(err, "%s: label section of %llu bytes for %llu images and %u classes (corrupt header)",
                         path, (unsigned long long)label_bytes, (unsigned long long)count, n_classes);
    if (label_bytes && check_section(path, "label", labels_at, label_bytes, file_bytes, err)) return -1;
    if (names_bytes && n_classes == 0) return error_set(err, "%s: class names without classes (corrupt header)", path);
    if (names_bytes && check_section(path, "class name", names_at, names_bytes, file_bytes, err)) return -1;
    uint64_t labels_end = label_bytes ? labels_at + label_bytes : pixels_at + pixel_bytes;
    if ((label_bytes && pixels_at + pixel_bytes > labels_at) || (names_bytes && labels_end > names_at))
        return error_set(err, "%s: sections overlap (corrupt header)", path);

    const uint8_t *base = h;
    ds->count = (size_t)count;
    ds->height = height;
    ds->width = width;
    ds->channels = channels;
    ds->pixels = base + pixels_at;
    if (label_bytes) {
        ds->n_classes = n_classes;
        ds->labels = xmalloc((size_t)count * sizeof *ds->labels);
        for (size_t i = 0; i < count; i++) {
            uint32_t label = get_u32(base + labels_at + 4 * i);
            if (label >= n_classes)
                return error_set(err, "%s: image %zu has label %u, outside the %u classes (corrupt file)", path, i,
                                 label, n_classes);
            ds->labels[i] = (int)label;
        }
    }
    if (names_bytes) {
        const char *names = (const char *)base + names_at;
        if (names[names_bytes - 1] != '\0')
            return error_set(err, "%s: class names are not NUL-terminated (corrupt file)", path);
        if (n_classes > names_bytes) /* each name takes at least its NUL */
            return error_set(err, "%s: %u class names cannot fit in %llu bytes (corrupt header)", path, n_classes,
                             (unsigned long long)names_bytes);
        const char **list = xmalloc(n_classes * sizeof *list);
        size_t n = 0;
        for (const char *p = names; p < names + names_bytes && n < n_classes; p += strlen(p) + 1) list[n++] = p;
        int rc = 0;
        if (n != n_classes || list[n - 1] + strlen(list[n - 1]) + 1 != names + names_bytes)
            rc = error_set(err, "%s: the class name section does not hold exactly %u names (corrupt file)", path,
                           n_classes);
        else
            dataset_set_class_names(ds, list, n);
        free(list);
        return rc;
    }
    return 0;
}

int packed_open(Dataset *ds, const char *path, Error *err) {
    *ds = (Dataset){0};
    void *map;
    size_t file_bytes;
    if (fs_map_file(path, PACKED_HEADER_BYTES, "a packed header (truncated? " REGENERATE_HINT ")", &map, &file_bytes, err))
        return -1;
    ds->map = map;
    ds->map_bytes = file_bytes;
    ds->source = xstrdup(path);
    if (parse_header(ds, map, file_bytes, path, err)) {
        dataset_free(ds);
        return -1;
    }
    return 0;
}
