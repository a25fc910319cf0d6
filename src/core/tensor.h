/* A float tensor view: a pointer and a row-major shape, owned elsewhere (parameter, gradient or
 * activation buffers). Ops take views by value and CHECK that the shapes they receive agree.
 *
 * The shape always lists dimensions in memory order. Parameters keep PyTorch's layout (a conv weight is
 * (C_out, C_in, kH, kW)), so safetensors shapes map one to one. Image activations are channels-last,
 * (N, H, W, C): oneDNN's convolutions run faster on it than on NCHW, and it is already the (B, HW, C)
 * token layout that attention and group norm want, so no layer reorders its input. */
#ifndef DIFFUSE_TENSOR_H
#define DIFFUSE_TENSOR_H

#include <stdbool.h>
#include <stddef.h>

#define TENSOR_MAX_DIMS 4

typedef struct Tensor {
    float *data;
    int ndim; /* 0 with data NULL: an absent optional tensor (e.g. no bias) */
    /* A gradient whose contents are undefined, which its op writes instead of adding to (ops.h lists
     * the ops that take one); set by tensor_overwrite, false everywhere else. */
    bool overwrite;
    size_t shape[TENSOR_MAX_DIMS];
} Tensor;

Tensor tensor_1d(float *data, size_t d0);
Tensor tensor_2d(float *data, size_t d0, size_t d1);
Tensor tensor_3d(float *data, size_t d0, size_t d1, size_t d2);
Tensor tensor_4d(float *data, size_t d0, size_t d1, size_t d2, size_t d3);
/* An absent optional tensor. */
Tensor tensor_none(void);
/* t marked to be overwritten by the op it is passed to as a gradient, and t as it was. */
Tensor tensor_overwrite(Tensor t);
Tensor tensor_accumulate(Tensor t);

bool tensor_is_none(Tensor t);
size_t tensor_numel(Tensor t);
/* Sets every element to 0 (gradients are accumulated into, so a step starts from zero); threaded when
 * large. floats_zero does the same for n floats. */
void tensor_zero(Tensor t);
void floats_zero(float *x, size_t n);
/* Writes "(2, 64, 64, 224)" into buf and returns buf. */
const char *tensor_shape_str(Tensor t, char *buf, size_t buf_bytes);

/* CHECKs that t has data, ndim dimensions, no zero dimension and, when shape is not NULL, exactly that
 * shape. `where` and `name` (the calling op and the argument) appear in the failure message. */
void tensor_expect(Tensor t, const char *where, const char *name, int ndim, const size_t *shape);

/* EXPECT_SHAPE(out, "out", N, H, W, C): the shape check an op runs on each argument. */
#define EXPECT_SHAPE(t, name, ...)                                                            \
    tensor_expect((t), __func__, (name), (int)(sizeof((size_t[]){__VA_ARGS__}) / sizeof(size_t)), \
                  (size_t[]){__VA_ARGS__})
/* EXPECT_NDIM(inp, "inp", 4): any non-empty shape of that rank. */
#define EXPECT_NDIM(t, name, ndim) tensor_expect((t), __func__, (name), (ndim), NULL)

#endif
