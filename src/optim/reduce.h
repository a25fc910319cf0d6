/* Deterministic reductions over the flat parameter/gradient buffers. The buffer is cut into fixed chunks
 * (independent of the thread count), each summed in double in parallel, and the chunk sums added in
 * order: the result is the same for any number of threads, so runs compare bit for bit. */
#ifndef DIFFUSE_REDUCE_H
#define DIFFUSE_REDUCE_H

#include <stddef.h>

/* sum(x[i]^2) */
double reduce_sum_squares(const float *x, size_t n);
/* 1 when every x[i] is finite */
int reduce_all_finite(const float *x, size_t n);

#endif
