/* What the ops that run on oneDNN (conv2d_dnnl.c, attention_bf16.c, linear_dnnl.c) share besides DNNL_CALL:
 * one CPU engine and one stream for the process, created on first use and kept (their primitive caches may
 * be freed and rebuilt any number of times), and memory objects that carry no buffer of their own. */
#ifndef DIFFUSE_DNNL_RUNTIME_H
#define DIFFUSE_DNNL_RUNTIME_H

#include <stdbool.h>

#include "core/alloc.h"
#include "ops/dnnl_call.h"

dnnl_engine_t dnnl_runtime_engine(void);
dnnl_stream_t dnnl_runtime_stream(void);
/* A memory object described by md with no buffer: each call binds it to the tensor it reads or writes. */
dnnl_memory_t dnnl_runtime_memory(const dnnl_memory_desc_t *md);
/* The memory object of pd's scratchpad (user mode, dnnl_runtime_attr), with buffer grown to its size: the
 * caller binds it to buffer's data on each call, so primitives that run one at a time share one buffer. */
dnnl_memory_t dnnl_runtime_scratchpad(const_dnnl_primitive_desc_t pd, GrowBuffer *buffer);
/* Destroys m (NULL: nothing to do). */
void dnnl_runtime_memory_free(dnnl_memory_t m);
/* Points m (NULL: nothing to do) at data; oneDNN takes non-const handles even for buffers it only reads. */
void dnnl_runtime_bind(dnnl_memory_t m, const void *data);
/* Primitive attributes (destroy with dnnl_primitive_attr_destroy): the scratchpad is the caller's (user
 * mode), and with accumulate a `sum` post-op adds the result to what the destination holds. */
dnnl_primitive_attr_t dnnl_runtime_attr(bool accumulate);

#endif
