/* Mean squared error, DDPM's L_simple = || eps - eps_theta(x_t, t) ||^2 averaged over every element
 * (Ho et al. 2020, eq. 14; torch.nn.functional.mse_loss with reduction="mean",
 * https://pytorch.org/docs/stable/generated/torch.nn.functional.mse_loss.html).
 *
 *   loss = sum (pred - target)^2 / numel
 *   dpred += dloss 2 (pred - target) / numel
 *
 * Buffers: pred, target, dpred, all the same shape (any).
 *
 * The sum runs in double over fixed chunks whose partial sums add in order, so the loss is the same bits
 * for any thread count. */
#include "ops/loss.h"

#include "core/check.h"

/* At most this many chunks, each at least MSE_CHUNK_ELEMS long: partial sums fit on the stack. */
#define MSE_MAX_CHUNKS 256
#define MSE_CHUNK_ELEMS 65536
/* Large enough that waking the thread team pays off. */
#define MSE_PARALLEL_ELEMS 32768

double mse_loss_forward(Tensor pred, Tensor target) {
    EXPECT_NDIM(pred, "pred", pred.ndim);
    tensor_expect(target, __func__, "target", pred.ndim, pred.shape);
    const size_t n = tensor_numel(pred);
    size_t chunk = (n + MSE_MAX_CHUNKS - 1) / MSE_MAX_CHUNKS;
    if (chunk < MSE_CHUNK_ELEMS) chunk = MSE_CHUNK_ELEMS;
    const size_t n_chunks = (n + chunk - 1) / chunk;
    double partial[MSE_MAX_CHUNKS];
    const float *p = pred.data, *t = target.data;
#pragma omp parallel for schedule(static) if (n >= 2 * MSE_CHUNK_ELEMS)
    for (size_t k = 0; k < n_chunks; k++) {
        size_t i1 = (k + 1) * chunk < n ? (k + 1) * chunk : n;
        double sum = 0;
#pragma omp simd reduction(+ : sum)
        for (size_t i = k * chunk; i < i1; i++) {
            double d = (double)p[i] - (double)t[i];
            sum += d * d;
        }
        partial[k] = sum;
    }
    double total = 0;
    for (size_t k = 0; k < n_chunks; k++) total += partial[k];
    return total / (double)n;
}

void mse_loss_backward(Tensor dpred, Tensor pred, Tensor target, float dloss) {
    EXPECT_NDIM(pred, "pred", pred.ndim);
    tensor_expect(target, __func__, "target", pred.ndim, pred.shape);
    tensor_expect(dpred, __func__, "dpred", pred.ndim, pred.shape);
    const size_t n = tensor_numel(pred);
    const float k = (float)(2.0 * (double)dloss / (double)n);
    const float *p = pred.data, *t = target.data;
    float *g = dpred.data;
    /* loss = sum (p - t)^2 / n */
#pragma omp parallel for simd schedule(static) if (n >= MSE_PARALLEL_ELEMS)
    for (size_t i = 0; i < n; i++) g[i] += (p[i] - t[i]) * k;
}
