/* What the reference and the oneDNN paths of conv2d share: the sizes of one call, derived from its
 * arguments and CHECKed against each other once, so both paths reject the same mistakes with the same
 * messages. Internal to src/ops/conv2d*.c. */
#ifndef DIFFUSE_CONV2D_INTERNAL_H
#define DIFFUSE_CONV2D_INTERNAL_H

#include <stddef.h>

#include "ops/conv2d.h"

typedef struct Conv2dShape {
    size_t n, h, w, ci; /* inp (N, H, W, Ci) */
    size_t co, kh, kw;  /* weight (Co, Ci, kH, kW) */
    size_t ho, wo;      /* out (N, Ho, Wo, Co) */
} Conv2dShape;

/* `where` names the public function in failure messages. */
Conv2dShape conv2d_check_forward(const char *where, Tensor out, Tensor inp, Tensor weight, Tensor bias,
                                 Conv2dParams p);
Conv2dShape conv2d_check_backward(const char *where, Tensor dinp, Tensor dweight, Tensor dbias, Tensor dout,
                                  Tensor inp, Tensor weight, Conv2dParams p);

#endif
