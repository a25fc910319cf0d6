/* The resnet block's shortcut, residual add and scale in one pass (shortcut_add.h).
 *
 * The 1x1 convolution is a product of the rows (positions) of concat(a, b) with the weight, transposed once
 * per call to (Ca + Cb, Co). A register block holds R rows x J vectors of 16 output channels (R J <= 24
 * accumulators): for each input channel it loads J weight vectors and broadcasts one input value per row,
 * R J fused multiply-adds; a's channels, then b's. Each output element is bias + one multiply-add chain
 * over the input channels in order, then (out + it) scale: the same bits for any thread count.
 *
 * Measured (build/bench/ops_shortcut_add: the pass against concat_channels + conv2d + add_scaled), 2 threads:
 *   64x28x28 32+16 -> 16  0.46 against 0.88 ms     64x14x14 64+32 -> 32   0.28 against 0.48 ms
 *   64x28x28 16+16 -> 16  0.30 against 0.68 ms     64x7x7 64+64 -> 64     0.15 against 0.20 ms
 *   16x32x32 256+128 -> 128  4.9 against 6.0 ms   16x16x16 256+256 -> 256  3.49 against 3.44 ms
 *   4x32x32 672+448 -> 448   21.7 against 15.9 ms
 * oneDNN's 1x1 convolutions reach 118-260 GFLOP/s at fashion-mnist's narrow outputs, 320-350 at
 * ddpm-cifar10's 128 and 256 and more at the default preset's; hence the limits below, where the step
 * agrees: ddpm-cifar10 b16's sampling step 0.429 -> 0.426 s with 128 outputs fused against 64 (paired
 * medians of 10). fashion-mnist b64's sampling step, with norm1 reading in and skip as they lie (no
 * concatenation left): 41.7 -> 39.0 ms (paired medians of 10). */
#include "ops/shortcut_add.h"

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#include "core/alloc.h"
#include "core/check.h"
#include "ops/precision.h"

/* Below this many output elements one thread does the work. */
#define SHORTCUT_PARALLEL_ELEMS 32768
/* The widest shortcut the pass takes (see shortcut_add_fused). */
#define SHORTCUT_MAX_IN 512
#define SHORTCUT_MAX_OUT 128

static int force_mode = -1;

void shortcut_add_force(int mode) { force_mode = mode; }

bool shortcut_add_fused(size_t ca, size_t cb, size_t co, bool has_weight) {
    if (force_mode == 0) return false;
    if (!has_weight) return ca + cb == co;
#if defined(__AVX512F__)
    if (co % 16 != 0 || ops_precision() != OPS_PRECISION_FP32) return false; /* bf16: oneDNN's bf16 conv */
    return force_mode == 1 || (ca + cb <= SHORTCUT_MAX_IN && co <= SHORTCUT_MAX_OUT);
#else
    (void)ca, (void)cb, (void)co;
    return false;
#endif
}

/* The rows' sources: a's channels, then b's (none: 0 channels). */
typedef struct Sources {
    const float *x[2];
    size_t c[2];
} Sources;

/* out = (out + x) scale for the identity shortcut, x = concat(a, b). */
static void identity_add(float *out, const Sources *src, size_t rows, float scale) {
    const size_t co = src->c[0] + src->c[1];
#pragma omp parallel for schedule(static) if (rows * co >= SHORTCUT_PARALLEL_ELEMS)
    for (size_t r = 0; r < rows; r++) {
        float *o = out + r * co;
        for (int s = 0; s < 2; s++) {
            const float *x = src->x[s] + r * src->c[s];
            const size_t c = src->c[s];
#pragma omp simd
            for (size_t k = 0; k < c; k++) o[k] = (o[k] + x[k]) * scale;
            o += c;
        }
    }
}

#if defined(__AVX512F__)
#define SHORTCUT_INLINE static inline __attribute__((always_inline))

/* Rows [row, row + R), output channels [j0, j0 + 16 J): out = (out + bias + x wt) scale, wt (K, co). */
SHORTCUT_INLINE void conv_block(float *out, size_t co, const Sources *src, size_t row, const float *wt,
                                const float *bias, float scale, size_t j0, const int R, const int J) {
    __m512 acc[24][4];
#pragma GCC unroll 24
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int j = 0; j < J; j++) acc[r][j] = bias ? _mm512_loadu_ps(bias + j0 + 16 * j) : _mm512_setzero_ps();
    const float *w = wt + j0;
    for (int s = 0; s < 2; s++) {
        const size_t c = src->c[s];
        const float *x = src->x[s] + row * c;
        for (size_t k = 0; k < c; k++, w += co) {
            __m512 wv[4];
#pragma GCC unroll 4
            for (int j = 0; j < J; j++) wv[j] = _mm512_loadu_ps(w + 16 * j);
#pragma GCC unroll 24
            for (int r = 0; r < R; r++) {
                const __m512 xb = _mm512_set1_ps(x[r * c + k]);
#pragma GCC unroll 4
                for (int j = 0; j < J; j++) acc[r][j] = _mm512_fmadd_ps(xb, wv[j], acc[r][j]);
            }
        }
    }
    const __m512 vscale = _mm512_set1_ps(scale);
#pragma GCC unroll 24
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int j = 0; j < J; j++) {
            float *o = out + (row + r) * co + j0 + 16 * j;
            __m512 v = _mm512_add_ps(_mm512_loadu_ps(o), acc[r][j]);
            _mm512_storeu_ps(o, scale == 1.0f ? v : _mm512_mul_ps(v, vscale));
        }
}

/* The rows' register block: R J <= 24 with J the vectors of the first (widest) channel block. */
static int block_rows(size_t co) {
    const size_t j = co >= 64 ? 4 : co / 16;
    return (int)(24 / j);
}

/* Rows [row, row + n_rows) (n_rows = block_rows, or 1 for the last rows), every output channel. */
static void conv_rows(float *out, size_t co, const Sources *src, size_t row, int n_rows, const float *wt,
                      const float *bias, float scale) {
    for (size_t j0 = 0; j0 < co; j0 += 64) {
        const int j = co - j0 >= 64 ? 4 : (int)((co - j0) / 16);
#define SHORTCUT_CASE(R, J)                                                                                    \
    case (R) * 8 + (J):                                                                                        \
        conv_block(out, co, src, row, wt, bias, scale, j0, R, J);                                              \
        break
        switch (n_rows * 8 + j) {
            SHORTCUT_CASE(24, 1); SHORTCUT_CASE(12, 2); SHORTCUT_CASE(8, 3); SHORTCUT_CASE(6, 4);
            SHORTCUT_CASE(6, 1); SHORTCUT_CASE(6, 2); SHORTCUT_CASE(6, 3);
            SHORTCUT_CASE(1, 1); SHORTCUT_CASE(1, 2); SHORTCUT_CASE(1, 3); SHORTCUT_CASE(1, 4);
            default: CHECK(0, "shortcut_add: no block for %d rows x %d vectors", n_rows, j);
        }
#undef SHORTCUT_CASE
    }
}

static GrowBuffer transposed;

static void conv_add(float *out, size_t co, const Sources *src, size_t rows, Tensor weight, Tensor bias,
                     float scale) {
    const size_t k_all = src->c[0] + src->c[1];
    float *wt = grow_buffer(&transposed, k_all * co * sizeof(float));
    for (size_t o = 0; o < co; o++)
        for (size_t k = 0; k < k_all; k++) wt[k * co + o] = weight.data[o * k_all + k];
    const int r_block = block_rows(co);
    const size_t n_blocks = rows / (size_t)r_block, tail = n_blocks * (size_t)r_block;
#pragma omp parallel if (rows * co >= SHORTCUT_PARALLEL_ELEMS)
    {
#pragma omp for schedule(static) nowait
        for (size_t blk = 0; blk < n_blocks; blk++)
            conv_rows(out, co, src, blk * (size_t)r_block, r_block, wt, bias.data, scale);
#pragma omp for schedule(static)
        for (size_t row = tail; row < rows; row++) conv_rows(out, co, src, row, 1, wt, bias.data, scale);
    }
}
#endif

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
    const Sources src = {{a.data, cb ? b.data : NULL}, {ca, cb}};
    const size_t rows = n * h * w;
    if (!has_weight) {
        identity_add(out.data, &src, rows, scale);
        return;
    }
#if defined(__AVX512F__)
    conv_add(out.data, co, &src, rows, weight, bias, scale);
#endif
}
