/* Checked allocation. Running out of memory is not recoverable for a trainer, so these CHECK instead of
 * returning NULL; large buffers are 64-byte aligned for AVX-512 loads and for oneDNN. */
#ifndef DIFFUSE_ALLOC_H
#define DIFFUSE_ALLOC_H

#include <stddef.h>

void *xmalloc(size_t n_bytes);
void *xcalloc(size_t n_items, size_t item_bytes);
void *xrealloc(void *ptr, size_t n_bytes);
char *xstrdup(const char *s);

/* 64-byte aligned, zero-filled; free with alloc_free. */
float *alloc_floats(size_t n_floats);
void *alloc_aligned(size_t n_bytes);
void alloc_free(void *ptr);

#endif
