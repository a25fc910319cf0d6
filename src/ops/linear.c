/* Fully connected layer, fast path: the three products as sgemm calls of oneDNN (dnnl_sgemm, row-major),
 * bias and bias gradient as separate cheap passes. Formula and shapes: linear.h, linear_reference.c.
 *   forward:  narrow layers (narrow_gemm_serves: up to 128 outputs, a multiple of 16, on AVX-512) in one
 *             pass of narrow_gemm: fashion-mnist's attention projections (12544 rows, 32 -> 32) 0.129 ->
 *             ~0.08 ms in the sampling step, and its time embedding (64 rows, 16 -> 64), whose sgemm took
 *             0.6 ms as the first call of each step, 0.05 ms; otherwise
 *             out = bias (broadcast rows), then out += inp weightᵀ          sgemm N,T  beta 1
 *             or, from LINEAR_MATMUL_MIN_ROWS rows with a bias, one oneDNN matmul that adds the bias as
 *             it writes (linear_dnnl.c): the broadcast pass and sgemm's read of it back cost the
 *             attention projections of fashion-mnist (12544 rows, 32 -> 32) 3 % of a sampling step
 *   backward: dinp += dout weight                                           sgemm N,N  beta 1
 *             dweight += doutᵀ inp                                          sgemm T,N  beta 1
 *             or for narrow layers narrow_gemm_kco and narrow_weight_grad: fashion-mnist's training
 *             step 160 -> 155 ms (paired medians of 8; its attention projections' backward took
 *             0.29-0.37 ms per call on sgemm, and the first of each step 0.38 ms at 64 rows)
 *             dbias += column sums of dout (chunks of rows in parallel, then in order: bias_gradient)
 *
 * Library choice, measured on this project's machine (2 cores Zen 4, AVX-512) while it was otherwise idle,
 * with a throwaway program timing cblas_sgemm (OpenBLAS 0.3.21, pthread build) against dnnl_sgemm
 * (oneDNN 2.6, OpenMP), alternating the two, median of up to 31 runs. GFLOP/s, fwd / bwd-data / bwd-weight;
 * M = N*L rows with N = 2 (attention projections), or the batch (time-embedding MLP):
 *                          1 thread                              2 threads, an OpenMP loop before each call
 *     M    Fi -> Fo    OpenBLAS          oneDNN                OpenBLAS          oneDNN
 *  8192   224 ->  224  97 /  97 /  91   102 / 109 / 112        70 /  72 /  68   192 / 207 / 202
 *  2048   448 ->  448 103 / 102 /  99   104 / 111 / 112        83 / 103 /  97   198 / 215 / 218
 *   512   672 ->  672 100 / 105 / 105   102 / 114 / 114       112 / 118 / 118   210 / 222 / 222
 *   128   896 ->  896 100 / 102 / 106   106 / 115 / 114        81 /  99 /  67   181 / 221 / 220
 *     2   224 ->  896  16 / 104 /  53    98 /  94 /  59        12 /  90 /  50   139 / 115 /  68
 *     2   896 ->  896  16 /  26 /  46    78 /  75 /  57        12 /  16 /  39   139 / 133 /  96
 *    16   224 ->  896  67 /  82 /  93    88 / 115 / 104        55 /  62 /  79    88 / 179 / 175
 *    16   896 ->  896  68 /  81 /  94    84 / 114 / 103        57 /   7 /  89    87 / 202 / 195
 * oneDNN wins or ties everywhere but one small bwd-data case, is 5x faster on the small-M forwards, and
 * at 2 threads it scales (one OpenMP pool shared with our loops, governed by threads_set) where
 * OpenBLAS's own pthreads did not, next to OpenMP loops whose idle workers spin on the same two cores
 * (and lost a factor of up to 100 when the machine was loaded). Hence oneDNN for every shape. */
#include <oneapi/dnnl/dnnl.h>
#include <stdint.h>
#include <string.h>

#include "core/alloc.h"
#include "core/check.h"
#include "ops/elementwise.h"
#include "ops/linear.h"
#include "ops/linear_internal.h"
#include "ops/narrow_gemm.h"
#include "ops/precision.h"

/* Leading dimensions of t with the last one replaced by `last`. */
static void linear_shape_with_last(size_t *shape, Tensor t, size_t last) {
    for (int d = 0; d < t.ndim; d++) shape[d] = t.shape[d];
    shape[t.ndim - 1] = last;
}

LinearShape linear_check_forward(const char *where, Tensor out, Tensor inp, Tensor weight, Tensor bias) {
    tensor_expect(weight, where, "weight", 2, NULL);
    const size_t Fo = weight.shape[0], Fi = weight.shape[1];
    CHECK(inp.data != NULL && inp.ndim >= 1 && inp.ndim <= TENSOR_MAX_DIMS, "%s: inp is NULL or has %d dimensions",
          where, inp.ndim);
    size_t shape[TENSOR_MAX_DIMS];
    linear_shape_with_last(shape, inp, Fi);
    tensor_expect(inp, where, "inp (last dimension = weight's Fi)", inp.ndim, shape);
    linear_shape_with_last(shape, inp, Fo);
    tensor_expect(out, where, "out", inp.ndim, shape);
    if (!tensor_is_none(bias)) tensor_expect(bias, where, "bias", 1, (size_t[]){Fo});
    return (LinearShape){.M = tensor_numel(inp) / Fi, .Fi = Fi, .Fo = Fo};
}

LinearShape linear_check_backward(const char *where, Tensor dinp, Tensor dweight, Tensor dbias, Tensor dout, Tensor inp,
                                  Tensor weight) {
    tensor_expect(weight, where, "weight", 2, NULL);
    const size_t Fo = weight.shape[0], Fi = weight.shape[1];
    CHECK(inp.data != NULL && inp.ndim >= 1 && inp.ndim <= TENSOR_MAX_DIMS, "%s: inp is NULL or has %d dimensions",
          where, inp.ndim);
    size_t shape[TENSOR_MAX_DIMS];
    linear_shape_with_last(shape, inp, Fi);
    tensor_expect(inp, where, "inp (last dimension = weight's Fi)", inp.ndim, shape);
    if (!tensor_is_none(dinp)) tensor_expect(dinp, where, "dinp", inp.ndim, shape);
    linear_shape_with_last(shape, inp, Fo);
    tensor_expect(dout, where, "dout", inp.ndim, shape);
    if (!tensor_is_none(dweight)) tensor_expect(dweight, where, "dweight", 2, (size_t[]){Fo, Fi});
    if (!tensor_is_none(dbias)) tensor_expect(dbias, where, "dbias", 1, (size_t[]){Fo});
    return (LinearShape){.M = tensor_numel(inp) / Fi, .Fi = Fi, .Fo = Fo};
}

/* Below this many elements a pass runs on one thread: waking the others costs more. */
#define LINEAR_PARALLEL_MIN 32768
/* From this many rows a forward with a bias runs as a oneDNN matmul (see the top). */
#define LINEAR_MATMUL_MIN_ROWS 256
/* Rows per chunk of the bias gradient's sums (bias_gradient). */
#define LINEAR_BIAS_ROWS 256

static void linear_sgemm(char transa, char transb, size_t m, size_t n, size_t k, const float *A, size_t lda,
                         const float *B, size_t ldb, float beta, float *Cm, size_t ldc) {
    dnnl_status_t status = dnnl_sgemm(transa, transb, (dnnl_dim_t)m, (dnnl_dim_t)n, (dnnl_dim_t)k, 1.0f, A,
                                      (dnnl_dim_t)lda, B, (dnnl_dim_t)ldb, beta, Cm, (dnnl_dim_t)ldc);
    CHECK(status == dnnl_success, "dnnl_sgemm(%c, %c, M %zu, N %zu, K %zu) failed with status %d", transa, transb, m,
          n, k, (int)status);
}

static bool takes_bf16(LinearShape s) { return ops_precision() == OPS_PRECISION_BF16 && linear_bf16_applies(s); }

void linear_forward(Tensor out, Tensor inp, Tensor weight, Tensor bias) {
    LinearShape s = linear_check_forward(__func__, out, inp, weight, bias);
    if (takes_bf16(s)) {
        linear_bf16_forward(s, out.data, inp.data, weight.data, bias.data);
        return;
    }
    const size_t M = s.M, Fo = s.Fo;
    if (narrow_gemm_serves(s.Fi, Fo)) {
        narrow_gemm(out.data, NULL, inp.data, s.Fi, NULL, 0, weight.data, bias.data, Fo, M, 1.0f);
        return;
    }
    if (bias.data && M >= LINEAR_MATMUL_MIN_ROWS) {
        linear_fp32_forward_dnnl(s, out.data, inp.data, weight.data, bias.data);
        return;
    }
    if (bias.data) {
#pragma omp parallel for schedule(static) if (M * Fo >= LINEAR_PARALLEL_MIN)
        for (size_t m = 0; m < M; m++)
            for (size_t o = 0; o < Fo; o++) out.data[m * Fo + o] = bias.data[o];
    }
    linear_sgemm('N', 'T', M, Fo, s.Fi, inp.data, s.Fi, weight.data, s.Fi, bias.data ? 1.0f : 0.0f, out.data, Fo);
}

void linear_residual_forward(Tensor out, Tensor inp, Tensor weight, Tensor bias, Tensor residual, float scale) {
    LinearShape s = linear_check_forward(__func__, out, inp, weight, bias);
    tensor_expect(residual, __func__, "residual", out.ndim, out.shape);
    const uintptr_t r0 = (uintptr_t)residual.data, o0 = (uintptr_t)out.data, bytes = s.M * s.Fo * sizeof(float);
    CHECK(r0 + bytes <= o0 || o0 + bytes <= r0, "%s: residual overlaps out", __func__);
    if (!takes_bf16(s) && narrow_gemm_serves(s.Fi, s.Fo)) {
        narrow_gemm(out.data, residual.data, inp.data, s.Fi, NULL, 0, weight.data, bias.data, s.Fo, s.M, scale);
        return;
    }
    linear_forward(out, inp, weight, bias);
    add_scaled_forward(out, out, residual, scale);
}

bool linear_takes_bf16(size_t M, size_t Fi, size_t Fo) { return takes_bf16((LinearShape){M, Fi, Fo}); }

/* An fp32 view of bf16 data with like's leading dimensions and `last` columns, for the shape checks. */
static Tensor view_like(const void *data, Tensor like, size_t last) {
    Tensor t = like;
    t.data = (float *)data;
    if (t.ndim > 0) t.shape[t.ndim - 1] = last;
    return t;
}

static void check_takes_bf16(const char *where, LinearShape s) {
    CHECK(takes_bf16(s), "%s: M %zu, %zu -> %zu does not take the bf16 products (see linear_takes_bf16)", where, s.M,
          s.Fi, s.Fo);
}

static size_t weight_dim(Tensor weight, int d) { return weight.ndim == 2 ? weight.shape[d] : 0; }

void linear_forward_bf16(uint16_t *out, const uint16_t *inp, size_t M, Tensor weight, Tensor bias) {
    const Tensor rows = tensor_2d(NULL, M, 0);
    LinearShape s = linear_check_forward(__func__, view_like(out, rows, weight_dim(weight, 0)),
                                         view_like(inp, rows, weight_dim(weight, 1)), weight, bias);
    check_takes_bf16(__func__, s);
    linear_bf16_forward_bf16_rows(s, out, inp, weight.data, bias.data);
}

/* dbias += column sums of dout: chunks of LINEAR_BIAS_ROWS rows are summed in parallel (whole rows, read
 * once, in vector-wide steps), then the chunk sums in chunk order, so the result does not depend on the
 * thread count. Column blocks per thread, the way before, read a slice of every row: at 12544 x 32 (the
 * fashion-mnist projections) it took 0.10 ms, as long as the weight gradient's GEMM. */
static GrowBuffer bias_partials;

static void bias_gradient(Tensor dbias, Tensor dout, LinearShape s) {
    if (!dbias.data || s.M == 0) return;
    const size_t M = s.M, Fo = s.Fo, n_chunks = (M + LINEAR_BIAS_ROWS - 1) / LINEAR_BIAS_ROWS;
    float *partial = grow_buffer(&bias_partials, n_chunks * Fo * sizeof(float));
#pragma omp parallel for schedule(static) if (n_chunks > 1 && M * Fo >= LINEAR_PARALLEL_MIN)
    for (size_t c = 0; c < n_chunks; c++) {
        float *sum = partial + c * Fo;
        const size_t r1 = (c + 1) * LINEAR_BIAS_ROWS < M ? (c + 1) * LINEAR_BIAS_ROWS : M;
        memcpy(sum, dout.data + c * LINEAR_BIAS_ROWS * Fo, Fo * sizeof(float));
        for (size_t m = c * LINEAR_BIAS_ROWS + 1; m < r1; m++) {
            const float *row = dout.data + m * Fo;
#pragma omp simd
            for (size_t o = 0; o < Fo; o++) sum[o] += row[o];
        }
    }
    for (size_t c = 1; c < n_chunks; c++)
#pragma omp simd
        for (size_t o = 0; o < Fo; o++) partial[o] += partial[c * Fo + o];
#pragma omp simd
    for (size_t o = 0; o < Fo; o++) dbias.data[o] += partial[o];
}

void linear_bias_backward(Tensor dbias, Tensor dout) {
    CHECK(dout.ndim >= 1, "%s: dout has no dimensions", __func__);
    const size_t fo = dout.shape[dout.ndim - 1];
    tensor_expect(dbias, __func__, "dbias", 1, (size_t[]){fo});
    bias_gradient(dbias, dout, (LinearShape){fo ? tensor_numel(dout) / fo : 0, 0, fo});
}

void linear_backward(Tensor dinp, Tensor dweight, Tensor dbias, Tensor dout, Tensor inp, Tensor weight) {
    LinearShape s = linear_check_backward(__func__, dinp, dweight, dbias, dout, inp, weight);
    const size_t M = s.M, Fi = s.Fi, Fo = s.Fo;
    if (takes_bf16(s)) {
        if (dinp.overwrite) tensor_zero(dinp); /* the bf16 product adds */
        if (dinp.data || dweight.data)
            linear_bf16_backward(s, dinp.data, dweight.data, dout.data, inp.data, NULL, weight.data);
    } else {
        if (dinp.data && narrow_gemm_serves(Fo, Fi))
            narrow_gemm_kco(dinp.data, dinp.overwrite ? NULL : dinp.data, dout.data, Fo, NULL, 0, weight.data, NULL,
                            Fi, M, 1.0f);
        else if (dinp.data)
            linear_sgemm('N', 'N', M, Fi, Fo, dout.data, Fo, weight.data, Fi, dinp.overwrite ? 0.0f : 1.0f, dinp.data,
                         Fi);
        if (dweight.data && narrow_weight_grad_serves(Fo, Fi)) { /* the bias gradient in the same pass */
            narrow_weight_grad(dweight.data, dbias.data, dout.data, Fo, inp.data, Fi, NULL, 0, M);
            return;
        }
        if (dweight.data) linear_sgemm('T', 'N', Fo, Fi, M, dout.data, Fo, inp.data, Fi, 1.0f, dweight.data, Fi);
    }
    bias_gradient(dbias, dout, s);
}

void linear_backward_bf16_input(Tensor dinp, Tensor dweight, Tensor dbias, Tensor dout, const uint16_t *inp,
                                Tensor weight) {
    const Tensor inp_view = view_like(inp, dout, weight_dim(weight, 1));
    LinearShape s = linear_check_backward(__func__, dinp, dweight, dbias, dout, inp_view, weight);
    check_takes_bf16(__func__, s);
    if (dinp.overwrite) tensor_zero(dinp); /* the bf16 product adds */
    if (dinp.data || dweight.data) linear_bf16_backward(s, dinp.data, dweight.data, dout.data, NULL, inp, weight.data);
    bias_gradient(dbias, dout, s);
}
