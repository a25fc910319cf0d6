/* The product of activation rows with a narrow weight, plus bias and an optional residual, scaled:
 *   out[r, :] = (residual[r, :] + concat(a[r, :], b[r, :]) weightᵀ + bias) scale     for r < rows
 * with a (rows, ca), b (rows, cb) or NULL (cb = 0), weight (co, ca + cb) in PyTorch's layout (a linear
 * layer's, or a 1x1 convolution's), bias (co) or NULL, residual (rows, co) or NULL, which may be out.
 * For the layers with so few channels that oneDNN's kernels stay far from the machine's peak: the 1x1
 * shortcuts of narrow resnet blocks (shortcut_add.c) and narrow attention projections (linear.c).
 * Internal to the ops; narrow_gemm_serves says which shapes it takes (none without AVX-512). */
#ifndef DIFFUSE_NARROW_GEMM_H
#define DIFFUSE_NARROW_GEMM_H

#include <stdbool.h>
#include <stddef.h>

bool narrow_gemm_serves(size_t k, size_t co);
/* Any co a multiple of 16, for the tests (still none without AVX-512). */
bool narrow_gemm_can(size_t co);

void narrow_gemm(float *out, const float *residual, const float *a, size_t ca, const float *b, size_t cb,
                 const float *weight, const float *bias, size_t co, size_t rows, float scale);

#endif
