/* Checked allocation. Running out of memory is not recoverable for a trainer, so these CHECK instead of
 * returning NULL; large buffers are 64-byte aligned for AVX-512 loads and for oneDNN (from 4 MB on, 2 MB
 * aligned on transparent huge pages: alloc.c). */
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
/* The same, but NULL where those stop the program: for sizes read from a file or given on the command line
 * (a model's parameters, its activations, the images asked for), so that the caller can say which. The
 * count is n_items * item_floats, NULL when that overflows. */
float *alloc_floats_or_null(size_t n_items, size_t item_floats);

/* A buffer that only grows, for the scratch an op reuses from call to call: after the first call at the
 * largest size nothing is allocated. */
typedef struct GrowBuffer {
    void *data;
    size_t bytes;
} GrowBuffer;

/* b's buffer, replaced by a larger one (aligned and zero-filled as alloc_aligned, old contents dropped)
 * when it holds fewer than `bytes` bytes. */
void *grow_buffer(GrowBuffer *b, size_t bytes);
/* Frees b's buffer and leaves b empty. */
void grow_buffer_free(GrowBuffer *b);

#endif
