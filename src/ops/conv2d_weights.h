/* Our own moves of conv2d weights between PyTorch's oihw layout and oneDNN's blocked weight layouts
 * with output channels innermost (conv2d_weights.c), where they beat oneDNN 2.6's generic reorder.
 * Internal to src/ops/conv2d*.c. */
#ifndef DIFFUSE_CONV2D_WEIGHTS_H
#define DIFFUSE_CONV2D_WEIGHTS_H

#include <stdbool.h>
#include <stddef.h>

#include <oneapi/dnnl/dnnl.h>

/* offset(o, i, ky, kx) = (o / bo) s_ob + (i / bi) s_ib + ky s_ky + kx s_kx + (o % bo) + (i % bi) s_i,
 * over channel counts padded to co_pad, ci_pad: runs of bo output channels are contiguous. */
typedef struct WeightLayout {
    bool ok; /* false: a layout these loops do not handle; use oneDNN's reorder */
    size_t co, ci, kh, kw, co_pad, ci_pad, bo, bi;
    size_t s_ob, s_ib, s_ky, s_kx, s_i;
} WeightLayout;

WeightLayout weight_layout_of(const dnnl_memory_desc_t *md);
/* blocked = oihw in layout l, padding zeroed. */
void weight_to_blocked(const WeightLayout *l, float *blocked, const float *oihw);
/* blocked = the weights of the convolution that computes backward-data as a forward pass: weight is
 * (l->ci, l->co, kH, kW) (the original conv's oihw), and blocked gets weight transposed in its two
 * channel axes with both kernel axes reversed. */
void weight_to_blocked_flipped(const WeightLayout *l, float *blocked, const float *weight);
/* flipped (ci, co, kH, kW) = weight (co, ci, kH, kW) transposed in its two channel axes with both kernel
 * axes reversed, plain: the same weights as weight_to_blocked_flipped, for oneDNN's reorder to move. */
void weight_flip(float *flipped, const float *weight, size_t co, size_t ci, size_t kh, size_t kw);
/* oihw += blocked (the weight gradient's accumulation). */
void weight_add_from_blocked(const WeightLayout *l, float *oihw, const float *blocked);

#endif
