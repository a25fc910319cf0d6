/* The argument checks shared by linear.c and linear_reference.c (not part of the ops API). */
#ifndef DIFFUSE_LINEAR_INTERNAL_H
#define DIFFUSE_LINEAR_INTERNAL_H

#include <stddef.h>

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

#endif
