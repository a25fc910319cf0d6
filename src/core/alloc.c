/* Checked allocation (see alloc.h). */
#include "core/alloc.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/check.h"

void *xmalloc(size_t n_bytes) {
    void *p = malloc(n_bytes ? n_bytes : 1);
    CHECK(p, "out of memory allocating %zu bytes", n_bytes);
    return p;
}

void *xcalloc(size_t n_items, size_t item_bytes) {
    CHECK(item_bytes == 0 || n_items <= SIZE_MAX / item_bytes, "allocation size overflows: %zu x %zu",
          n_items, item_bytes);
    void *p = calloc(n_items ? n_items : 1, item_bytes ? item_bytes : 1);
    CHECK(p, "out of memory allocating %zu x %zu bytes", n_items, item_bytes);
    return p;
}

void *xrealloc(void *ptr, size_t n_bytes) {
    void *p = realloc(ptr, n_bytes ? n_bytes : 1);
    CHECK(p, "out of memory reallocating to %zu bytes", n_bytes);
    return p;
}

char *xstrdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *p = xmalloc(n);
    memcpy(p, s, n);
    return p;
}

void *alloc_aligned(size_t n_bytes) {
    size_t rounded = (n_bytes + 63) / 64 * 64;
    CHECK(rounded >= n_bytes, "allocation size overflows: %zu bytes", n_bytes);
    void *p = aligned_alloc(64, rounded ? rounded : 64);
    CHECK(p, "out of memory allocating %zu bytes", n_bytes);
    memset(p, 0, rounded ? rounded : 64);
    return p;
}

float *alloc_floats(size_t n_floats) {
    CHECK(n_floats <= SIZE_MAX / sizeof(float), "allocation size overflows: %zu floats", n_floats);
    return alloc_aligned(n_floats * sizeof(float));
}

void alloc_free(void *ptr) { free(ptr); }

void *grow_buffer(GrowBuffer *b, size_t bytes) {
    if (bytes > b->bytes) {
        alloc_free(b->data);
        b->data = alloc_aligned(bytes);
        b->bytes = bytes;
    }
    return b->data;
}

void grow_buffer_free(GrowBuffer *b) {
    alloc_free(b->data);
    *b = (GrowBuffer){0};
}
