/* Tensor views and their shape checks (see tensor.h). */
#include "core/tensor.h"

#include <stdio.h>
#include <string.h>

#include "core/check.h"

static Tensor tensor_make(float *data, int ndim, const size_t *shape) {
    Tensor t = {.data = data, .ndim = ndim};
    for (int i = 0; i < ndim; i++) t.shape[i] = shape[i];
    return t;
}

Tensor tensor_1d(float *data, size_t d0) { return tensor_make(data, 1, (size_t[]){d0}); }
Tensor tensor_2d(float *data, size_t d0, size_t d1) { return tensor_make(data, 2, (size_t[]){d0, d1}); }
Tensor tensor_3d(float *data, size_t d0, size_t d1, size_t d2) {
    return tensor_make(data, 3, (size_t[]){d0, d1, d2});
}
Tensor tensor_4d(float *data, size_t d0, size_t d1, size_t d2, size_t d3) {
    return tensor_make(data, 4, (size_t[]){d0, d1, d2, d3});
}
Tensor tensor_none(void) { return (Tensor){0}; }

Tensor tensor_overwrite(Tensor t) {
    t.overwrite = true;
    return t;
}

Tensor tensor_accumulate(Tensor t) {
    t.overwrite = false;
    return t;
}

bool tensor_is_none(Tensor t) { return t.data == NULL && t.ndim == 0; }

size_t tensor_numel(Tensor t) {
    if (t.ndim == 0) return 0;
    size_t n = 1;
    for (int i = 0; i < t.ndim; i++) n *= t.shape[i];
    return n;
}

void floats_zero(float *x, size_t n) {
    /* Split over the threads in 64 KB pieces when large: one core alone does not saturate the memory. */
    const size_t piece = 16384, n_pieces = (n + piece - 1) / piece;
#pragma omp parallel for schedule(static) if (n_pieces >= 8)
    for (size_t i = 0; i < n_pieces; i++) memset(x + i * piece, 0, (i + 1 < n_pieces ? piece : n - i * piece) * sizeof *x);
}

void tensor_zero(Tensor t) {
    if (t.data) floats_zero(t.data, tensor_numel(t));
}

const char *tensor_shape_str(Tensor t, char *buf, size_t buf_bytes) {
    size_t used = (size_t)snprintf(buf, buf_bytes, "(");
    for (int i = 0; i < t.ndim && used < buf_bytes; i++)
        used += (size_t)snprintf(buf + used, buf_bytes - used, i ? ", %zu" : "%zu", t.shape[i]);
    if (used < buf_bytes) snprintf(buf + used, buf_bytes - used, ")");
    return buf;
}

void tensor_expect(Tensor t, const char *where, const char *name, int ndim, const size_t *shape) {
    char got[96], want[96];
    CHECK(t.data != NULL, "%s: %s is NULL (shape %s)", where, name, tensor_shape_str(t, got, sizeof got));
    CHECK(t.ndim >= 1 && t.ndim <= TENSOR_MAX_DIMS, "%s: %s has %d dimensions", where, name, t.ndim);
    if (shape) {
        Tensor expected = tensor_make(NULL, ndim, shape);
        bool same = t.ndim == ndim;
        for (int i = 0; same && i < ndim; i++) same = t.shape[i] == shape[i];
        CHECK(same, "%s: %s has shape %s, expected %s", where, name, tensor_shape_str(t, got, sizeof got),
              tensor_shape_str(expected, want, sizeof want));
    } else {
        CHECK(t.ndim == ndim, "%s: %s has shape %s, expected %d dimensions", where, name,
              tensor_shape_str(t, got, sizeof got), ndim);
    }
    for (int i = 0; i < t.ndim; i++)
        CHECK(t.shape[i] > 0, "%s: %s has a zero dimension: shape %s", where, name,
              tensor_shape_str(t, got, sizeof got));
}
