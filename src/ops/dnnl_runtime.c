/* The oneDNN engine and stream of the process, and the attributes primitives share (see dnnl_runtime.h). Ops run from one thread at a time
 * (ops.h), so creating them on first use needs no lock. */
#include "ops/dnnl_runtime.h"

#include <stdint.h>

static dnnl_engine_t engine;
static dnnl_stream_t stream;

static void create(void) {
    DNNL_CALL(dnnl_engine_create(&engine, dnnl_cpu, 0));
    DNNL_CALL(dnnl_stream_create(&stream, engine, dnnl_stream_default_flags));
}

dnnl_engine_t dnnl_runtime_engine(void) {
    if (!engine) create();
    return engine;
}

dnnl_stream_t dnnl_runtime_stream(void) {
    if (!engine) create();
    return stream;
}

dnnl_memory_t dnnl_runtime_memory(const dnnl_memory_desc_t *md) {
    dnnl_memory_t m;
    DNNL_CALL(dnnl_memory_create(&m, md, dnnl_runtime_engine(), DNNL_MEMORY_NONE));
    return m;
}

dnnl_memory_t dnnl_runtime_scratchpad(const_dnnl_primitive_desc_t pd, GrowBuffer *buffer) {
    const dnnl_memory_desc_t *md = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    grow_buffer(buffer, dnnl_memory_desc_get_size(md));
    return dnnl_runtime_memory(md);
}

void dnnl_runtime_memory_free(dnnl_memory_t m) {
    if (m) DNNL_CALL(dnnl_memory_destroy(m));
}

void dnnl_runtime_bind(dnnl_memory_t m, const void *data) {
    if (m) DNNL_CALL(dnnl_memory_set_data_handle_v2(m, (void *)(uintptr_t)data, dnnl_runtime_stream()));
}

dnnl_primitive_attr_t dnnl_runtime_attr(bool accumulate) {
    dnnl_primitive_attr_t attr;
    DNNL_CALL(dnnl_primitive_attr_create(&attr));
    DNNL_CALL(dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user));
    if (accumulate) {
        dnnl_post_ops_t ops;
        DNNL_CALL(dnnl_post_ops_create(&ops));
        DNNL_CALL(dnnl_post_ops_append_sum(ops, 1.0f));
        DNNL_CALL(dnnl_primitive_attr_set_post_ops(attr, ops));
        DNNL_CALL(dnnl_post_ops_destroy(ops));
    }
    return attr;
}
