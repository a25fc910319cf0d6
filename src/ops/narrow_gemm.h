/* Products of activation rows with a narrow weight, for the layers with so few channels that oneDNN's
 * kernels stay far from the machine's peak: the 1x1 shortcuts of narrow resnet blocks (forward:
 * shortcut_add.c; backward: conv2d_dnnl.c) and narrow linear layers (linear.c). Internal to the ops; the
 * _serves functions say which shapes they take (none without AVX-512).
 *
 * narrow_gemm: out[r, :] = (residual[r, :] + concat(a[r, :], b[r, :]) weightᵀ + bias) scale    for r < rows
 *   with a (rows, ca), b (rows, cb) or NULL (cb = 0), weight (co, ca + cb) in PyTorch's layout (a linear
 *   layer's, or a 1x1 convolution's), bias (co) or NULL, residual (rows, co) or NULL, which may be out.
 * narrow_gemm_kco: the same with the weight given transposed, (ca + cb, co): a linear layer's weight
 *   (Fo, Fi) for its input gradient, dinp += dout weight (co = Fi, residual = out = dinp).
 * narrow_gemm_kco_split: the same product of x (rows, k) with weight_kco (k, co), no bias, scale 1, its first
 *   co_a output channels in out_a (rows, co_a) and the rest in out_b (rows, co - co_a), each added to
 *   (add_a, add_b) or written: a 1x1 convolution's input gradient for an input in two parts (co_a a multiple
 *   of 16).
 * narrow_weight_grad: dweight (co, ca + cb) += doutᵀ concat(a, b) over the rows, dout (rows, co), a (rows,
 *   ca), b (rows, cb) or NULL (cb = 0), ca a multiple of 16, and dbias (co, or NULL) += dout's column sums
 *   in the same pass over dout: in fixed chunks of rows whose partial sums add up in chunk order, so the
 *   result does not depend on the thread count. */
#ifndef DIFFUSE_NARROW_GEMM_H
#define DIFFUSE_NARROW_GEMM_H

#include <stdbool.h>
#include <stddef.h>

bool narrow_gemm_serves(size_t k, size_t co);
/* Any co a multiple of 16, for the tests (still none without AVX-512). */
bool narrow_gemm_can(size_t co);

void narrow_gemm(float *out, const float *residual, const float *a, size_t ca, const float *b, size_t cb,
                 const float *weight, const float *bias, size_t co, size_t rows, float scale);
void narrow_gemm_kco(float *out, const float *residual, const float *a, size_t ca, const float *b, size_t cb,
                     const float *weight_kco, const float *bias, size_t co, size_t rows, float scale);

void narrow_gemm_kco_split(float *out_a, bool add_a, float *out_b, bool add_b, size_t co_a, const float *x, size_t k,
                           const float *weight_kco, size_t co, size_t rows);

bool narrow_weight_grad_serves(size_t co, size_t ci);
void narrow_weight_grad(float *dweight, float *dbias, const float *dout, size_t co, const float *a, size_t ca,
                        const float *b, size_t cb, size_t rows);

#endif
