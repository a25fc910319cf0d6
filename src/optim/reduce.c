/* Fixed-order chunked reductions (see reduce.h). */
#include "optim/reduce.h"

#include <math.h>
#include <stdlib.h>

#include "core/alloc.h"

#define REDUCE_CHUNK 65536

double reduce_sum_squares(const float *x, size_t n) {
    size_t n_chunks = (n + REDUCE_CHUNK - 1) / REDUCE_CHUNK;
    if (n_chunks == 0) return 0;
    double *partial = xmalloc(n_chunks * sizeof *partial);
#pragma omp parallel for schedule(static)
    for (size_t c = 0; c < n_chunks; c++) {
        size_t end = (c + 1) * REDUCE_CHUNK < n ? (c + 1) * REDUCE_CHUNK : n;
        double s = 0; /* vector lanes, then the lanes in the compiler's fixed order: the same for any thread count */
#pragma omp simd reduction(+ : s)
        for (size_t i = c * REDUCE_CHUNK; i < end; i++) s += (double)x[i] * x[i];
        partial[c] = s;
    }
    double total = 0;
    for (size_t c = 0; c < n_chunks; c++) total += partial[c];
    free(partial);
    return total;
}

int reduce_all_finite(const float *x, size_t n) {
    int finite = 1;
#pragma omp parallel for simd schedule(static) reduction(&& : finite)
    for (size_t i = 0; i < n; i++) finite = finite && isfinite(x[i]);
    return finite;
}
