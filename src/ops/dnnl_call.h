/* DNNL_CALL, shared by the ops that run on oneDNN (conv2d_dnnl.c, attention_bf16.c): any oneDNN status other
 * than success is a programmer or environment error we cannot recover from. */
#ifndef DIFFUSE_DNNL_CALL_H
#define DIFFUSE_DNNL_CALL_H

#include <oneapi/dnnl/dnnl.h>
#include <oneapi/dnnl/dnnl_debug.h>

#include "core/check.h"

#define DNNL_CALL(call)                                                                                   \
    do {                                                                                                  \
        dnnl_status_t status_ = (call);                                                                   \
        CHECK(status_ == dnnl_success, "oneDNN call %s failed with status %s", #call, dnnl_status2str(status_)); \
    } while (0)

#endif
