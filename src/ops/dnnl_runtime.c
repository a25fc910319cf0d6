/* The oneDNN engine and stream of the process (see dnnl_runtime.h). Ops run from one thread at a time
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

void dnnl_runtime_bind(dnnl_memory_t m, const void *data) {
    if (m) DNNL_CALL(dnnl_memory_set_data_handle_v2(m, (void *)(uintptr_t)data, dnnl_runtime_stream()));
}
