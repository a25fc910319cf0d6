/* What the reference and the oneDNN paths of conv2d share: the sizes of one call, derived from its
 * arguments and CHECKed against each other once, so both paths reject the same mistakes with the same
 * messages. Internal to src/ops/conv2d*.c. */
#ifndef DIFFUSE_CONV2D_INTERNAL_H
#define DIFFUSE_CONV2D_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ops/conv2d.h"

typedef struct Conv2dShape {
    size_t n, h, w, ci; /* inp (N, H, W, Ci) */
    size_t co, kh, kw;  /* weight (Co, Ci, kH, kW) */
    size_t ho, wo;      /* out (N, Ho, Wo, Co) */
} Conv2dShape;

/* Where an image's pixels lie: pixel (n, y, x) at n image + y row + x pixel floats, its channels contiguous.
 * NULL where a function takes one: a contiguous (N, H, W, C) image. */
typedef struct ImageStrides {
    size_t pixel, row, image;
} ImageStrides;

/* `where` names the public function in failure messages. */
Conv2dShape conv2d_check_forward(const char *where, Tensor out, Tensor inp, Tensor weight, Tensor bias,
                                 Conv2dParams p);
Conv2dShape conv2d_check_backward(const char *where, Tensor dinp, Tensor dweight, Tensor dbias, Tensor dout,
                                  Tensor inp, Tensor weight, Conv2dParams p);

/* Input index along one axis for output index `out` and kernel tap `k`; -1 when it falls in the padding. */
static inline ptrdiff_t conv2d_in_index(size_t out, size_t k, int stride, int pad, size_t in_size) {
    ptrdiff_t i = (ptrdiff_t)(out * (size_t)stride + k) - pad;
    return i >= 0 && i < (ptrdiff_t)in_size ? i : -1;
}

/* Output index along one axis that reads input `in` through kernel tap `k`; -1 when none does. */
static inline ptrdiff_t conv2d_out_index(size_t in, size_t k, int stride, int pad, size_t out_size) {
    ptrdiff_t t = (ptrdiff_t)in + pad - (ptrdiff_t)k;
    if (t < 0 || t % stride) return -1;
    t /= stride;
    return t < (ptrdiff_t)out_size ? t : -1;
}

/* Output channels below this count leave oneDNN's kernels mostly idle (conv2d_dnnl.c, plan_is_narrow). */
enum { CONV2D_NARROW_CO = 16 };
/* dweight (and dbias, unless none) += the gradients of a convolution from dout and its fp32 input, where
 * conv2d_narrow_weights_fit: 3x3 kernels at stride 1 with fewer than CONV2D_NARROW_CO outputs
 * (conv2d_narrow_weights.c). */
bool conv2d_narrow_weights_fit(Conv2dShape s, Conv2dParams p);
void conv2d_narrow_weight_grad(Tensor dweight, Tensor dbias, const float *dout, const float *inp, Conv2dShape s,
                               Conv2dParams p);

/* dbias (co) += the sum of dout's n_pos rows (n_pos, co), the same bits for any thread count
 * (conv2d_dnnl.c). */
void conv2d_bias_gradient(float *dbias, const float *dout, size_t n_pos, size_t co);

/* Tests only: false makes the fast path move weights with oneDNN's reorders instead of our own loops
 * (conv2d_weights.c), so both stay tested. Frees the plan cache. */
void conv2d_fast_use_own_weight_moves(bool on);
/* Tests only: false keeps the fast path off its Winograd plans (conv2d_dnnl.c, winograd_fits) and off our
 * fp32 Winograd, so the direct kernels stay tested at the shapes that would take them; call_bytes replaces the limit on each
 * Winograd call's activations (WINOGRAD_CALL_BYTES; 0: that default), so small tests run in several
 * calls. Frees the plan cache. */
void conv2d_fast_use_winograd(bool on, size_t call_bytes);
/* Tests only: 1 or 0 picks winograd_fits' rule for cores that split 512-bit FMAs (narrower layers and 7x7
 * images too) or the other one, whatever the CPU; -1 (the default) the rule for this CPU (core/cpu.h).
 * Frees the plan cache. */
void conv2d_fast_winograd_split_fma(int mode);
/* Tests only: how many plans the fast path has built (cache misses) since the program started. */
size_t conv2d_fast_plans_built(void);

/* bf16 Winograd F(2x2, 3x3) for 3x3 convolutions at stride 1 with padding 1 on CPUs with AVX-512 BF16 and
 * no AMX (conv2d_winograd_bf16.c). fits: whether it runs this shape in the current precision on this CPU.
 * forward: out = conv(inp or inp_bf16, weight) + bias (NULL: none); with hold, keeps the weights
 * transformed, by their address, until release_held (conv2d_hold_weights' promise). backward_data: dinp
 * (+)= the input gradient of dout. free: releases its buffers and held weights. */
bool conv2d_winograd_bf16_fits(Conv2dShape s, Conv2dParams p);
void conv2d_winograd_bf16_forward(float *out, const float *inp, const uint16_t *inp_bf16, const float *weight,
                                  const float *bias, Conv2dShape s, bool hold);
void conv2d_winograd_bf16_backward_data(float *dinp, bool accumulate, const float *dout, const float *weight,
                                        Conv2dShape s);
/* dweight += the weight gradient of dout for the input inp (fp32) or inp_bf16. */
void conv2d_winograd_bf16_backward_weights(float *dweight, const float *dout, const float *inp,
                                           const uint16_t *inp_bf16, Conv2dShape s);
void conv2d_winograd_bf16_release_held(void);
void conv2d_winograd_bf16_free(void);
/* fp32 Winograd F(4x4, 3x3) for 3x3 convolutions at stride 1 with padding 1, and F(4x4, 2x2) for 2x2 ones
 * padded by one row and one column (the upsamplers' phases), on CPUs that split 512-bit FMAs
 * (conv2d_winograd_fp32.c): forward, backward-data and backward-weights (dweight +=; inp in fp32), as the
 * bf16 ones above (hold: within a budget); out (forward) or dout (backward) where out_view says (NULL:
 * contiguous), so that an upsampler's phase is written and read in place. serves: whether its rule takes s;
 * fits: whether it runs s, the test switches included. Tests only: on false keeps fp32 on oneDNN's kernels;
 * every_size runs it at every shape it can, backward-weights in chunks 16x smaller (default: on, by its
 * rule). */
bool conv2d_winograd_fp32_serves(Conv2dShape s, Conv2dParams p);
bool conv2d_winograd_fp32_fits(Conv2dShape s, Conv2dParams p);
void conv2d_winograd_fp32_forward(float *out, const float *inp, const float *weight, const float *bias,
                                  Conv2dShape s, Conv2dParams p, bool hold, const ImageStrides *out_view);
void conv2d_winograd_fp32_backward_data(float *dinp, bool accumulate, const float *dout, const float *weight,
                                        Conv2dShape s, Conv2dParams p, const ImageStrides *out_view);
void conv2d_winograd_fp32_backward_weights(float *dweight, const float *dout, const float *inp, Conv2dShape s,
                                           Conv2dParams p, const ImageStrides *out_view);
void conv2d_winograd_fp32_release_held(void);
void conv2d_winograd_fp32_free(void);
void conv2d_fast_use_winograd_fp32(bool on, bool every_size);
/* Whether conv2d_forward and conv2d_backward run s on our fp32 Winograd now, for a caller that runs it
 * itself on views (upsample_conv.c); *hold: whether weights are held (conv2d_hold_weights). */
bool conv2d_fast_runs_winograd_fp32(Conv2dShape s, Conv2dParams p, bool *hold);
/* Tests only: on false keeps bf16 precision on oneDNN's kernels; every_size runs the bf16 Winograd at
 * every shape it can, small ones included (default: on, by its size rule). */
void conv2d_fast_use_winograd_bf16(bool on, bool every_size);
/* Tests only: whether oneDNN offers Winograd kernels on this CPU (AVX-512); without them those plans fall
 * back to the direct kernels. */
bool conv2d_fast_has_winograd(void);

#endif
