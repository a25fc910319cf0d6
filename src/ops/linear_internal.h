/* The argument checks shared by linear.c and linear_reference.c (not part of the ops API). */
#ifndef DIFFUSE_LINEAR_INTERNAL_H
#define DIFFUSE_LINEAR_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/tensor.h"

/* M rows (the product of the leading dimensions), Fi input and Fo output features. */
typedef struct LinearShape {
    size_t M, Fi, Fo;
} LinearShape;

/* CHECK every argument against the others and return the sizes; `where` (the op's name) starts each
 * failure message. bias, dinp, dweight and dbias may be tensor_none(). */
LinearShape linear_check_forward(const char *where, Tensor out, Tensor inp, Tensor weight, Tensor bias);
LinearShape linear_check_backward(const char *where, Tensor dinp, Tensor dweight, Tensor dbias, Tensor dout, Tensor inp,
                                  Tensor weight);

/* The products on oneDNN matmul (linear_dnnl.c). bf16 precision: whether the shape takes the bf16 products,
 * and the products themselves (the bias gradient stays linear.c's). fp32: the forward with the bias added
 * by the kernel. linear_dnnl_cache_free releases the primitives and buffers. */
bool linear_bf16_applies(LinearShape s);
void linear_bf16_forward(LinearShape s, float *out, const float *inp, const float *weight, const float *bias);
/* inp_bf16: inp already in bf16 (inp is then not read), or NULL */
void linear_bf16_backward(LinearShape s, float *dinp, float *dweight, const float *dout, const float *inp,
                          const uint16_t *inp_bf16, const float *weight);
void linear_bf16_forward_bf16_rows(LinearShape s, uint16_t *out, const uint16_t *inp, const float *weight,
                                   const float *bias);
void linear_fp32_forward_dnnl(LinearShape s, float *out, const float *inp, const float *weight, const float *bias);
void linear_dnnl_cache_free(void);

#endif
