/* The resnet block's shortcut, residual add and scale in one pass (shortcut_add.h).
 *
 * The 1x1 convolution is a product of the rows (positions) of concat(a, b) with the weight: narrow_gemm,
 * with out as the residual. The identity shortcut is a plain loop.
 *
 * Measured (build/bench/ops_shortcut_add: the pass against concat_channels + conv2d + add_scaled), 2 threads:
 *   64x28x28 32+16 -> 16  0.46 against 0.88 ms     64x14x14 64+32 -> 32   0.28 against 0.48 ms
 *   64x28x28 16+16 -> 16  0.30 against 0.68 ms     64x7x7 64+64 -> 64     0.15 against 0.20 ms
 *   16x32x32 256+128 -> 128  4.9 against 6.0 ms   16x16x16 256+256 -> 256  3.49 against 3.44 ms
 *   4x32x32 672+448 -> 448   21.7 against 15.9 ms
 * oneDNN's 1x1 convolutions reach 118-260 GFLOP/s at fashion-mnist's narrow outputs, 320-350 at
 * ddpm-cifar10's 128 and 256 and more at the default preset's; hence narrow_gemm's limits, where the step
 * agrees: ddpm-cifar10 b16's sampling step 0.429 -> 0.426 s with 128 outputs fused against 64 (paired
 * medians of 10). fashion-mnist b64's sampling step, with norm1 reading in and skip as they lie (no
 * concatenation left): 41.7 -> 39.0 ms (paired medians of 10). */
#include "ops/shortcut_add.h"

#include "core/check.h"
#include "ops/conv2d_internal.h"
#include "ops/elementwise.h"
#include "ops/narrow_gemm.h"
#include "ops/precision.h"

/* Below this many output elements one thread does the identity's pass. */
#define SHORTCUT_PARALLEL_ELEMS 32768

static int force_mode = -1;

void shortcut_add_force(int mode) { force_mode = mode; }

bool shortcut_add_fused(size_t ca, size_t cb, size_t co, bool has_weight) {
    if (force_mode == 0) return false;
    if (!has_weight) return ca + cb == co;
    if (ops_precision() != OPS_PRECISION_FP32) return false; /* a bf16 convolution is oneDNN's */
    return force_mode == 1 ? narrow_gemm_can(co) : narrow_gemm_serves(ca + cb, co);
}

/* out = (out + concat(a, b)) scale, the identity shortcut. */
static void identity_add(float *out, const float *a, size_t ca, const float *b, size_t cb, size_t rows, float scale) {
    const size_t co = ca + cb;
#pragma omp parallel for schedule(static) if (rows * co >= SHORTCUT_PARALLEL_ELEMS)
    for (size_t r = 0; r < rows; r++) {
        float *o = out + r * co;
        const float *x = a + r * ca;
#pragma omp simd
        for (size_t k = 0; k < ca; k++) o[k] = (o[k] + x[k]) * scale;
        o += ca, x = b + r * cb;
#pragma omp simd
        for (size_t k = 0; k < cb; k++) o[k] = (o[k] + x[k]) * scale;
    }
}

void shortcut_add_forward(Tensor out, Tensor a, Tensor b, Tensor weight, Tensor bias, float scale) {
    EXPECT_NDIM(out, "out", 4);
    const size_t n = out.shape[0], h = out.shape[1], w = out.shape[2], co = out.shape[3];
    tensor_expect(a, __func__, "a", 4, (size_t[]){n, h, w, a.ndim == 4 ? a.shape[3] : 0});
    const size_t ca = a.shape[3], cb = tensor_is_none(b) ? 0 : b.shape[3];
    if (cb) tensor_expect(b, __func__, "b", 4, (size_t[]){n, h, w, cb});
    const bool has_weight = !tensor_is_none(weight);
    if (has_weight) {
        tensor_expect(weight, __func__, "weight", 4, (size_t[]){co, ca + cb, 1, 1});
        if (!tensor_is_none(bias)) tensor_expect(bias, __func__, "bias", 1, (size_t[]){co});
    } else {
        CHECK(ca + cb == co, "%s: an identity shortcut needs %zu + %zu input channels = %zu output channels",
              __func__, ca, cb, co);
    }
    CHECK(shortcut_add_fused(ca, cb, co, has_weight), "%s: %zu + %zu -> %zu channels is not served here", __func__,
          ca, cb, co);
    const float *b_data = cb ? b.data : NULL;
    if (has_weight)
        narrow_gemm(out.data, out.data, a.data, ca, b_data, cb, weight.data, bias.data, co, n * h * w, scale);
    else
        identity_add(out.data, a.data, ca, b_data, cb, n * h * w, scale);
}

bool shortcut_add_backward_fused(size_t ca, size_t cb, size_t co, bool has_weight) {
    if (force_mode == 0 || cb == 0) return false;
    if (!has_weight) return ca + cb == co;
    if (ops_precision() != OPS_PRECISION_FP32) return false;
    return narrow_gemm_serves(co, ca + cb) && narrow_weight_grad_serves(co, ca + cb) && ca % 16 == 0;
}

void shortcut_add_backward(Tensor da, Tensor db, Tensor dweight, Tensor dbias, Tensor d, Tensor a, Tensor b,
                           Tensor weight) {
    EXPECT_NDIM(d, "d", 4);
    const size_t n = d.shape[0], h = d.shape[1], w = d.shape[2], co = d.shape[3], rows = n * h * w;
    tensor_expect(a, __func__, "a", 4, (size_t[]){n, h, w, a.ndim == 4 ? a.shape[3] : 0});
    tensor_expect(b, __func__, "b", 4, (size_t[]){n, h, w, b.ndim == 4 ? b.shape[3] : 0});
    const size_t ca = a.shape[3], cb = b.shape[3];
    tensor_expect(da, __func__, "da", 4, a.shape);
    tensor_expect(db, __func__, "db", 4, b.shape);
    const bool has_weight = !tensor_is_none(weight);
    CHECK(shortcut_add_backward_fused(ca, cb, co, has_weight), "%s: %zu + %zu -> %zu channels is not served here",
          __func__, ca, cb, co);
    if (!has_weight) {
        concat_channels_backward(da, db, d);
        return;
    }
    tensor_expect(weight, __func__, "weight", 4, (size_t[]){co, ca + cb, 1, 1});
    /* da, db (+)= d weight: weight (Co, Ca + Cb) is the product's (K, outputs) */
    narrow_gemm_kco_split(da.data, !da.overwrite, db.data, !db.overwrite, ca, d.data, co, weight.data, ca + cb, rows);
    if (!tensor_is_none(dbias)) tensor_expect(dbias, __func__, "dbias", 1, (size_t[]){co});
    if (!tensor_is_none(dweight)) { /* with the bias gradient in the same pass */
        tensor_expect(dweight, __func__, "dweight", 4, weight.shape);
        narrow_weight_grad(dweight.data, dbias.data, d.data, co, a.data, ca, b.data, cb, rows);
    } else if (!tensor_is_none(dbias)) {
        conv2d_bias_gradient(dbias.data, d.data, rows, co);
    }
}
