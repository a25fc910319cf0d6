/* Checked allocation (see alloc.h). */
#define _DEFAULT_SOURCE /* madvise */
#include "core/alloc.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

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

/* Buffers of two huge pages or more (the activation arena, parameters, gradients, optimizer state) are
 * aligned to 2 MB and asked for transparent huge pages, which Linux gives only on request when
 * /sys/kernel/mm/transparent_hugepage/enabled is "madvise" (Debian's default): fewer TLB misses in the
 * passes that stream activations. Training step, paired medians: fashion-mnist b64 -3.8 %, ddpm-cifar10
 * b16 -3.0 %; peak RSS +0.1 % and +0.7 %. Where huge pages are unavailable madvise fails harmlessly. */
#define HUGE_PAGE_BYTES ((size_t)2 << 20)

static void *aligned_or_null(size_t n_bytes) {
    const bool huge = n_bytes >= 2 * HUGE_PAGE_BYTES;
    const size_t align = huge ? HUGE_PAGE_BYTES : 64;
    size_t rounded = (n_bytes + align - 1) / align * align;
    if (rounded < n_bytes) return NULL;
    void *p = aligned_alloc(align, rounded ? rounded : 64);
    if (!p) return NULL;
#ifdef MADV_HUGEPAGE
    if (huge) (void)madvise(p, rounded, MADV_HUGEPAGE);
#endif
    memset(p, 0, rounded ? rounded : 64);
    return p;
}

void *alloc_aligned(size_t n_bytes) {
    void *p = aligned_or_null(n_bytes);
    CHECK(p, "out of memory allocating %zu bytes", n_bytes);
    return p;
}

float *alloc_floats(size_t n_floats) {
    CHECK(n_floats <= SIZE_MAX / sizeof(float), "allocation size overflows: %zu floats", n_floats);
    return alloc_aligned(n_floats * sizeof(float));
}

float *alloc_floats_or_null(size_t n_items, size_t item_floats) {
    size_t n_bytes;
    if (__builtin_mul_overflow(n_items, item_floats, &n_bytes) ||
        __builtin_mul_overflow(n_bytes, sizeof(float), &n_bytes))
        return NULL;
    return aligned_or_null(n_bytes);
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
