/* Group normalisation on channels-last activations (torch.nn.GroupNorm; Wu & He, "Group Normalization",
 * ECCV 2018; https://pytorch.org/docs/stable/generated/torch.nn.GroupNorm.html).
 *
 *   For sample n and group g (channels g Cg .. g Cg + Cg - 1, Cg = C / G), over its M = S Cg values
 *   (S = positions per sample):
 *     mean = sum(x) / M,  var = sum((x - mean)^2) / M (biased),  rstd = 1 / sqrt(var + eps)
 *     xhat = (x - mean) rstd,  y = xhat weight[c] + bias[c]      (weight 1 and bias 0 when absent)
 *   Backward, with A_c = sum_s dy and B_c = sum_s dy (x - mean) per (n, c):
 *     dbias[c] += sum_n A_c,  dweight[c] += sum_n rstd B_c
 *     dx = rstd (w dy - SA / M - xhat rstd SB / M),  SA = sum_{c in g} w_c A_c,  SB = sum_{c in g} w_c B_c
 *
 * Buffers: inp, out, dout, dinp (N, S, C) with S any product of middle dims (H W, or L, or none);
 *          weight, bias, dweight, dbias (C); mean, rstd (N, G), saved by forward as float.
 *
 * Work split. In channels-last memory a group is a sliver of Cg (7 to 28) floats in every row of C, so a
 * task per (n, group) would read a strided fraction of each cache line. Tasks are (sample, chunk of
 * positions) items instead, each reading whole rows into per-channel accumulators vectorised over C;
 * channels fold into groups afterwards. Chunks depend only on the shape (>= 32K elements, <= 64 per sample),
 * never on the thread count, and partial results combine in a fixed order: every result is bitwise the
 * same for any number of threads.
 *
 * Statistics, in double and numerically robust. An item walks its chunk in 64 KB blocks that stay in L2 and
 * makes two passes over each: channel means, then squared deviations from them; blocks merge into the
 * item's per-channel moments and channels into groups by Chan, Golub & LeVeque's pairwise update (mean and
 * M2 of a union), items into the sample likewise. Eight rows of a channel are summed in float before each
 * double accumulation (block_moments says why that is safe). Measured in cache at U-Net widths, one thread,
 * per element: Welford per channel in double 0.16 ns, these two passes all in double 0.20 ns, with the
 * float eight-row steps 0.08 ns. The input comes from memory twice, for the statistics and for the output;
 * for tensors past GN_LARGE_BYTES the statistics pass prefetches its next block and the output is written
 * with non-temporal stores.
 *
 * Output: y = x a_c + b_c with a_c = rstd w_c and b_c = bias_c - mean a_c, PyTorch's formula; its rounding
 * (~ulp(mean) rstd |w|) stays below what the input's own rounding contributes. The row kernel that
 * writes it is where a fused GroupNorm + SiLU applies the activation.
 *
 * Backward: one pass over dy and x for A and B (eight-row float steps into double, as above), then
 * dx += dy alpha_c + x beta_g + gamma_g with the per-(n, g) constants folded from SA and SB. */
#include "ops/group_norm.h"

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#include <math.h>
#include <stdbool.h>
#include <omp.h>
#include <stdint.h>

#include "core/alloc.h"
#include "core/check.h"

/* ------------------------------------------------------------------------------------------------ */
/* Shapes, chunks and scratch */

/* A chunk (one parallel item) has at least this many elements, so per-item partials stay small next to
 * the data, and a sample has at most GN_MAX_CHUNKS chunks. Forward items are walked in blocks of about
 * GN_BLOCK_ELEMS elements (64 KB), which stay in L2 between the two statistics passes. */
#define GN_CHUNK_ELEMS 32768
#define GN_MAX_CHUNKS 64
#define GN_BLOCK_ELEMS 16384
/* Below this many elements one thread does the work: waking a team costs more than it saves. */
#define GN_PARALLEL_ELEMS 16384
/* From this input size on, the statistics pass prefetches its next block while it works on the cached one,
 * and the output is streamed past the cache: a quarter of the 32 MB L3 of the machine this was tuned on. */
#define GN_LARGE_BYTES (8u << 20)

typedef struct GroupNormShape {
    size_t n, s, c, g, cg; /* samples, positions per sample, channels, groups, channels per group */
    size_t chunk_rows, n_chunks; /* rows per item, items per sample */
} GroupNormShape;

static size_t div_ceil(size_t a, size_t b) { return (a + b - 1) / b; }

static GroupNormShape shape_of(Tensor inp, int n_groups, const char *where) {
    tensor_expect(inp, where, "inp", inp.ndim, NULL);
    char buf[96];
    CHECK(inp.ndim >= 2, "%s: inp has shape %s, expected (N, ..., C)", where, tensor_shape_str(inp, buf, sizeof buf));
    GroupNormShape sh = {.n = inp.shape[0], .c = inp.shape[inp.ndim - 1]};
    sh.s = tensor_numel(inp) / (sh.n * sh.c);
    CHECK(n_groups > 0 && sh.c % (size_t)n_groups == 0, "%s: n_groups %d does not divide the %zu channels of inp %s",
          where, n_groups, sh.c, tensor_shape_str(inp, buf, sizeof buf));
    sh.g = (size_t)n_groups;
    sh.cg = sh.c / sh.g;
    size_t min_rows = div_ceil(GN_CHUNK_ELEMS, sh.c), max_chunks_rows = div_ceil(sh.s, GN_MAX_CHUNKS);
    sh.chunk_rows = div_ceil(min_rows > max_chunks_rows ? min_rows : max_chunks_rows, 8) * 8; /* whole 8-row steps */
    if (sh.chunk_rows > sh.s) sh.chunk_rows = sh.s;
    sh.n_chunks = div_ceil(sh.s, sh.chunk_rows);
    return sh;
}

/* One grow-only scratch buffer for this file: ops run one at a time, so no call overlaps another, and
 * after the first call at the largest shape nothing is allocated. */
static void *scratch_get(size_t n_bytes) {
    static void *buffer;
    static size_t capacity;
    if (n_bytes > capacity) {
        alloc_free(buffer);
        buffer = alloc_aligned(n_bytes);
        capacity = n_bytes;
    }
    return buffer;
}

static size_t align64(size_t n_bytes) { return (n_bytes + 63) / 64 * 64; }

/* ------------------------------------------------------------------------------------------------ */
/* Forward */

/* Count, mean and sum of squared deviations (M2) of a set of values. */
typedef struct Moments {
    double count, mean, m2;
} Moments;

/* Chan, Golub & LeVeque's update: the moments of the union of two disjoint sets. */
static void moments_merge(Moments *acc, double count, double mean, double m2) {
    if (acc->count == 0) {
        *acc = (Moments){count, mean, m2};
        return;
    }
    double total = acc->count + count, delta = mean - acc->mean;
    acc->mean += delta * (count / total);
    acc->m2 += m2 + delta * delta * (acc->count * count / total);
    acc->count = total;
}

/* The moments of each channel over a block of rows (n_rows, C), merged into the item's per-channel
 * moments (mean_c, m2_c over *count rows each), with two passes over the cached block: pass 1 sums x for
 * the channel means m, pass 2 sums (x - m_f)^2 with m_f = m rounded to float, and
 * M2 = sum (x - m_f)^2 - n_rows (m - m_f)^2 (exact, as the deviations from m sum to zero).
 * Accumulators are double. Eight rows of a channel are first combined in float (pass 1: a pairwise sum;
 * pass 2: a chain of eight non-negative squares), a few float roundings per eight terms: a relative error
 * of at most ~5e-7 of the terms' magnitude, which does not grow with the count nor with the mean's offset
 * (nothing cancels), for half the work of converting every element to double.
 * work: 2 C doubles and C floats. */
static void block_moments(double *restrict mean_c, double *restrict m2_c, double *count, double *restrict work,
                          const float *restrict x, size_t n_rows, size_t c_all, const float *prefetch) {
    double *restrict s1 = work, *restrict s2 = work + c_all;
    float *restrict m = (float *)(work + 2 * c_all);
    for (size_t c = 0; c < c_all; c++) s1[c] = 0, s2[c] = 0;
    size_t r = 0;
    for (; r + 8 <= n_rows; r += 8) {
        const float *x0 = x + r * c_all;
#pragma omp simd
        for (size_t c = 0; c < c_all; c++) {
            const float *p = x0 + c;
            float q = ((p[0] + p[c_all]) + (p[2 * c_all] + p[3 * c_all])) +
                      ((p[4 * c_all] + p[5 * c_all]) + (p[6 * c_all] + p[7 * c_all]));
            s1[c] += (double)q;
        }
    }
    for (; r < n_rows; r++) {
#pragma omp simd
        for (size_t c = 0; c < c_all; c++) s1[c] += (double)x[r * c_all + c];
    }
    const double rows = (double)n_rows, inv_rows = 1.0 / rows;
#pragma omp simd
    for (size_t c = 0; c < c_all; c++) {
        s1[c] *= inv_rows; /* s1 now holds the block's channel means */
        m[c] = (float)s1[c];
    }
    for (r = 0; r + 8 <= n_rows; r += 8) {
        const float *x0 = x + r * c_all;
#pragma omp simd
        for (size_t c = 0; c < c_all; c++) {
            const float *p = x0 + c;
            const float mc = m[c];
            float d0 = p[0] - mc, d1 = p[c_all] - mc, d2 = p[2 * c_all] - mc, d3 = p[3 * c_all] - mc;
            float d4 = p[4 * c_all] - mc, d5 = p[5 * c_all] - mc, d6 = p[6 * c_all] - mc, d7 = p[7 * c_all] - mc;
            float q = d0 * d0;
            q += d1 * d1, q += d2 * d2, q += d3 * d3, q += d4 * d4, q += d5 * d5, q += d6 * d6, q += d7 * d7;
            s2[c] += (double)q;
        }
        if (prefetch)
            for (size_t i = 0; i < 8 * c_all; i += 16) __builtin_prefetch(prefetch + r * c_all + i);
    }
    for (; r < n_rows; r++) {
#pragma omp simd
        for (size_t c = 0; c < c_all; c++) {
            float d = x[r * c_all + c] - m[c];
            s2[c] += (double)(d * d);
        }
    }
    /* Chan et al.'s update with the moments so far: every channel has the same counts. */
    const double total = *count + rows, weight_new = rows / total, weight_cross = *count * rows / total;
#pragma omp simd
    for (size_t c = 0; c < c_all; c++) {
        double offset = (double)m[c] - s1[c], m2 = s2[c] - rows * offset * offset, delta = s1[c] - mean_c[c];
        mean_c[c] += delta * weight_new;
        m2_c[c] += m2 + delta * delta * weight_cross;
    }
    *count = total;
}

/* Folds per-channel moments (count values each) into the moments of each group of cg channels:
 * mean = average of the channel means, M2 = sum of the channel M2 + count sum (mean_c - mean)^2.
 * The group index runs innermost, so the sums of different groups proceed side by side. */
static void fold_groups(Moments *moments, const double *mean_c, const double *m2_c, double count, size_t n_groups,
                        size_t cg, double *mean_g, double *m2_g) {
    for (size_t g = 0; g < n_groups; g++) mean_g[g] = 0, m2_g[g] = 0;
    for (size_t j = 0; j < cg; j++)
        for (size_t g = 0; g < n_groups; g++) mean_g[g] += mean_c[g * cg + j], m2_g[g] += m2_c[g * cg + j];
    for (size_t g = 0; g < n_groups; g++) mean_g[g] /= (double)cg;
    for (size_t j = 0; j < cg; j++)
        for (size_t g = 0; g < n_groups; g++) {
            double d = mean_c[g * cg + j] - mean_g[g];
            m2_g[g] += count * d * d;
        }
    for (size_t g = 0; g < n_groups; g++) moments[g] = (Moments){count * (double)cg, mean_g[g], m2_g[g]};
}

/* Whether normalize_rows can write with non-temporal stores, which skip reading the destination's cache
 * lines before overwriting them (a third less memory traffic). Used only for tensors too large to stay
 * in cache for the next layer anyway (GN_LARGE_BYTES). */
static bool can_stream(const float *out, size_t c_all) {
#if defined(__AVX512F__)
    return c_all % 16 == 0 && (uintptr_t)out % 64 == 0;
#else
    (void)out, (void)c_all;
    return false;
#endif
}

/* out = x * a + b for each of n_rows rows of C, with the sample's per-channel a = rstd w and
 * b = bias - mean a. This is (x - mean) rstd w + bias up to the rounding of b, which is below the
 * rounding the input x itself carries (both ~ ulp(mean) rstd |w|). Both paths round the product and
 * the sum separately, so they give the same bits. A fused GroupNorm + SiLU applies the activation to
 * the value stored here. */
static void normalize_rows(float *restrict out, const float *restrict x, size_t n_rows, size_t c_all,
                           const float *restrict a, const float *restrict b, bool stream) {
#if defined(__AVX512F__)
    if (stream) {
        for (size_t r = 0; r < n_rows; r++)
            for (size_t c = 0; c < c_all; c += 16) {
                __m512 v = _mm512_mul_ps(_mm512_loadu_ps(x + r * c_all + c), _mm512_loadu_ps(a + c));
                _mm512_stream_ps(out + r * c_all + c, _mm512_add_ps(v, _mm512_loadu_ps(b + c)));
            }
        _mm_sfence(); /* order the streamed stores before the barrier that publishes them */
        return;
    }
#else
    (void)stream;
#endif
    for (size_t r = 0; r < n_rows; r++) {
        const float *row = x + r * c_all;
        float *orow = out + r * c_all;
#pragma omp simd
        for (size_t c = 0; c < c_all; c++) orow[c] = row[c] * a[c] + b[c];
    }
}

void group_norm_forward(Tensor out, Tensor mean, Tensor rstd, Tensor inp, Tensor weight, Tensor bias, int n_groups,
                        float eps) {
    const GroupNormShape sh = shape_of(inp, n_groups, __func__);
    tensor_expect(out, __func__, "out", inp.ndim, inp.shape);
    EXPECT_SHAPE(mean, "mean", sh.n, sh.g);
    EXPECT_SHAPE(rstd, "rstd", sh.n, sh.g);
    if (!tensor_is_none(weight)) EXPECT_SHAPE(weight, "weight", sh.c);
    if (!tensor_is_none(bias)) EXPECT_SHAPE(bias, "bias", sh.c);
    CHECK(eps >= 0 && isfinite(eps), "%s: eps is %g, expected a finite value >= 0", __func__, (double)eps);

    const size_t n_items = sh.n * sh.n_chunks, c_all = sh.c;
    /* block_moments' and fold_groups' work space, then the item's per-channel moments */
    const size_t work_doubles = 4 * c_all + (c_all + 1) / 2 + 2 * sh.g;
    const size_t moments_bytes = align64(n_items * sh.g * sizeof(Moments));
    const size_t work_bytes = align64((size_t)omp_get_max_threads() * work_doubles * sizeof(double));
    const size_t coef_bytes = align64(sh.n * 2 * c_all * sizeof(float));
    char *scratch = scratch_get(moments_bytes + work_bytes + coef_bytes);
    Moments *item_moments = (Moments *)scratch;                   /* (items, G) */
    double *work = (double *)(scratch + moments_bytes);            /* (threads, work_doubles) */
    float *coef = (float *)(scratch + moments_bytes + work_bytes); /* (N, 2, C): a, b */
    size_t block_rows = GN_BLOCK_ELEMS / c_all / 8 * 8;
    if (block_rows < 8) block_rows = 8;
    const float *w = weight.data, *bi = bias.data;
    const bool large = tensor_numel(inp) * sizeof(float) >= GN_LARGE_BYTES;
    const bool stream = large && can_stream(out.data, c_all);

#pragma omp parallel if (n_items > 1 && sh.n * sh.s * c_all >= GN_PARALLEL_ELEMS)
    {
        double *my_work = work + (size_t)omp_get_thread_num() * work_doubles;
        double *mean_c = my_work + 2 * c_all + (c_all + 1) / 2, *m2_c = mean_c + c_all, *fold = m2_c + c_all;
#pragma omp for schedule(static)
        for (size_t item = 0; item < n_items; item++) {
            size_t n = item / sh.n_chunks, r0 = item % sh.n_chunks * sh.chunk_rows;
            size_t r1 = r0 + sh.chunk_rows < sh.s ? r0 + sh.chunk_rows : sh.s;
            double count = 0;
            for (size_t c = 0; c < c_all; c++) mean_c[c] = 0, m2_c[c] = 0;
            for (size_t r = r0; r < r1; r += block_rows) {
                size_t rows = r1 - r < block_rows ? r1 - r : block_rows;
                const float *next = r + rows < r1 && large ? inp.data + (n * sh.s + r + rows) * c_all : NULL;
                block_moments(mean_c, m2_c, &count, my_work, inp.data + (n * sh.s + r) * c_all, rows, c_all, next);
            }
            fold_groups(item_moments + item * sh.g, mean_c, m2_c, count, sh.g, sh.cg, fold, fold + sh.g);
        }
        /* The items of a sample merge in chunk order, whichever thread computed them. */
#pragma omp for schedule(static)
        for (size_t ng = 0; ng < sh.n * sh.g; ng++) {
            size_t n = ng / sh.g, g = ng % sh.g;
            Moments total = {0, 0, 0};
            for (size_t k = 0; k < sh.n_chunks; k++) {
                const Moments *part = &item_moments[(n * sh.n_chunks + k) * sh.g + g];
                moments_merge(&total, part->count, part->mean, part->m2);
            }
            double var = total.m2 > 0 ? total.m2 / total.count : 0; /* M2 of a constant group may round below 0 */
            double r = 1.0 / sqrt(var + (double)eps);
            mean.data[ng] = (float)total.mean;
            rstd.data[ng] = (float)r;
            float *a = coef + n * 2 * c_all, *b = a + c_all;
            for (size_t c = g * sh.cg; c < (g + 1) * sh.cg; c++) {
                double ac = r * (w ? (double)w[c] : 1.0);
                a[c] = (float)ac;
                b[c] = (float)((bi ? (double)bi[c] : 0.0) - total.mean * ac);
            }
        }
#pragma omp for schedule(static)
        for (size_t item = 0; item < n_items; item++) {
            size_t n = item / sh.n_chunks, r0 = item % sh.n_chunks * sh.chunk_rows;
            size_t r1 = r0 + sh.chunk_rows < sh.s ? r0 + sh.chunk_rows : sh.s;
            const float *a = coef + n * 2 * c_all;
            size_t offset = (n * sh.s + r0) * c_all;
            normalize_rows(out.data + offset, inp.data + offset, r1 - r0, c_all, a, a + c_all, stream);
        }
    }
}

/* ------------------------------------------------------------------------------------------------ */
/* Backward */

/* Adds to A[c] the sum of dy and to B[c] the sum of dy (x - mu) over n_rows rows, eight rows at a time
 * summed pairwise in float before the double accumulators (as block_moments does). */
static void chunk_grad_sums(double *restrict a_sum, double *restrict b_sum, const float *restrict dy,
                            const float *restrict x, const float *restrict mu, size_t n_rows, size_t c_all) {
    size_t r = 0;
    for (; r + 8 <= n_rows; r += 8) {
        const float *g = dy + r * c_all, *v = x + r * c_all;
#pragma omp simd
        for (size_t c = 0; c < c_all; c++) {
            const float *p = g + c, *q = v + c, m = mu[c];
            float t0 = p[0] * (q[0] - m), t1 = p[c_all] * (q[c_all] - m);
            float t2 = p[2 * c_all] * (q[2 * c_all] - m), t3 = p[3 * c_all] * (q[3 * c_all] - m);
            float t4 = p[4 * c_all] * (q[4 * c_all] - m), t5 = p[5 * c_all] * (q[5 * c_all] - m);
            float t6 = p[6 * c_all] * (q[6 * c_all] - m), t7 = p[7 * c_all] * (q[7 * c_all] - m);
            float sa = ((p[0] + p[c_all]) + (p[2 * c_all] + p[3 * c_all])) +
                       ((p[4 * c_all] + p[5 * c_all]) + (p[6 * c_all] + p[7 * c_all]));
            a_sum[c] += (double)sa;                                          /* y = ... + bias */
            b_sum[c] += (double)(((t0 + t1) + (t2 + t3)) + ((t4 + t5) + (t6 + t7))); /* y = xhat w + ... */
        }
    }
    for (; r < n_rows; r++) {
        const float *g = dy + r * c_all, *v = x + r * c_all;
#pragma omp simd
        for (size_t c = 0; c < c_all; c++) {
            a_sum[c] += (double)g[c];
            b_sum[c] += (double)(g[c] * (v[c] - mu[c]));
        }
    }
}

/* dx += dy alpha + x beta + gamma over n_rows rows of C. */
static void input_grad_rows(float *restrict dx, const float *restrict dy, const float *restrict x, size_t n_rows,
                            size_t c_all, const float *restrict alpha, const float *restrict beta,
                            const float *restrict gamma) {
    for (size_t r = 0; r < n_rows; r++) {
        float *d = dx + r * c_all;
        const float *g = dy + r * c_all, *v = x + r * c_all;
#pragma omp simd
        for (size_t c = 0; c < c_all; c++) d[c] += (g[c] * alpha[c] + v[c] * beta[c]) + gamma[c];
    }
}

void group_norm_backward(Tensor dinp, Tensor dweight, Tensor dbias, Tensor dout, Tensor inp, Tensor mean, Tensor rstd,
                         Tensor weight, int n_groups) {
    const GroupNormShape sh = shape_of(inp, n_groups, __func__);
    tensor_expect(dout, __func__, "dout", inp.ndim, inp.shape);
    if (!tensor_is_none(dinp)) tensor_expect(dinp, __func__, "dinp", inp.ndim, inp.shape);
    EXPECT_SHAPE(mean, "mean", sh.n, sh.g);
    EXPECT_SHAPE(rstd, "rstd", sh.n, sh.g);
    if (!tensor_is_none(weight)) EXPECT_SHAPE(weight, "weight", sh.c);
    if (!tensor_is_none(dweight)) {
        CHECK(!tensor_is_none(weight), "%s: dweight is requested but weight is none", __func__);
        EXPECT_SHAPE(dweight, "dweight", sh.c);
    }
    if (!tensor_is_none(dbias)) EXPECT_SHAPE(dbias, "dbias", sh.c);
    if (tensor_is_none(dinp) && tensor_is_none(dweight) && tensor_is_none(dbias)) return;

    const size_t n_items = sh.n * sh.n_chunks, c_all = sh.c;
    const size_t partial_bytes = align64(n_items * 2 * c_all * sizeof(double));
    const size_t sums_bytes = align64(sh.n * 2 * c_all * sizeof(double));
    const size_t coef_bytes = align64(sh.n * 4 * c_all * sizeof(float));
    char *scratch = scratch_get(partial_bytes + sums_bytes + coef_bytes);
    double *partial = (double *)scratch;                           /* (items, 2, C): A, B of each chunk */
    double *sums = (double *)(scratch + partial_bytes);            /* (N, 2, C): A, B of each sample */
    float *coef = (float *)(scratch + partial_bytes + sums_bytes); /* (N, 4, C): mu, alpha, beta, gamma */
    const float *w = weight.data;
    for (size_t ng = 0; ng < sh.n * sh.g; ng++) {
        float *mu = coef + ng / sh.g * 4 * c_all + ng % sh.g * sh.cg;
        for (size_t j = 0; j < sh.cg; j++) mu[j] = mean.data[ng];
    }

#pragma omp parallel if (n_items > 1 && sh.n * sh.s * c_all >= GN_PARALLEL_ELEMS)
    {
#pragma omp for schedule(static)
        for (size_t item = 0; item < n_items; item++) {
            size_t n = item / sh.n_chunks, r0 = item % sh.n_chunks * sh.chunk_rows;
            size_t r1 = r0 + sh.chunk_rows < sh.s ? r0 + sh.chunk_rows : sh.s;
            double *a_sum = partial + item * 2 * c_all, *b_sum = a_sum + c_all;
            for (size_t c = 0; c < c_all; c++) a_sum[c] = 0, b_sum[c] = 0;
            size_t offset = (n * sh.s + r0) * c_all;
            chunk_grad_sums(a_sum, b_sum, dout.data + offset, inp.data + offset, coef + n * 4 * c_all, r1 - r0, c_all);
        }
        /* The chunks of a sample add up in order, whichever thread computed them. */
#pragma omp for schedule(static)
        for (size_t n = 0; n < sh.n; n++) {
            double *sum_n = sums + n * 2 * c_all;
            for (size_t c = 0; c < 2 * c_all; c++) sum_n[c] = 0;
            for (size_t k = 0; k < sh.n_chunks; k++) {
                const double *part = partial + (n * sh.n_chunks + k) * 2 * c_all;
#pragma omp simd
                for (size_t c = 0; c < 2 * c_all; c++) sum_n[c] += part[c];
            }
        }
        if (dinp.data) {
            /* y = (x - mean) rstd w + bias, with mean and rstd functions of every x of the group:
             * dx = rstd w dy - rstd SA / M - (x - mean) rstd^3 SB / M = dy alpha + x beta + gamma. */
#pragma omp for schedule(static)
            for (size_t ng = 0; ng < sh.n * sh.g; ng++) {
                size_t n = ng / sh.g, g = ng % sh.g;
                const double *a_n = sums + n * 2 * c_all, *b_n = a_n + c_all;
                double sa = 0, sb = 0;
                for (size_t c = g * sh.cg; c < (g + 1) * sh.cg; c++) {
                    double wc = w ? (double)w[c] : 1.0;
                    sa += wc * a_n[c], sb += wc * b_n[c];
                }
                double r = rstd.data[ng], mu = mean.data[ng], m = (double)(sh.s * sh.cg);
                double beta = -r * r * r * sb / m, gamma = -r * sa / m - mu * beta;
                float *alpha_c = coef + n * 4 * c_all + c_all, *beta_c = alpha_c + c_all, *gamma_c = beta_c + c_all;
                for (size_t c = g * sh.cg; c < (g + 1) * sh.cg; c++) {
                    alpha_c[c] = (float)(r * (w ? (double)w[c] : 1.0));
                    beta_c[c] = (float)beta;
                    gamma_c[c] = (float)gamma;
                }
            }
#pragma omp for schedule(static)
            for (size_t item = 0; item < n_items; item++) {
                size_t n = item / sh.n_chunks, r0 = item % sh.n_chunks * sh.chunk_rows;
                size_t r1 = r0 + sh.chunk_rows < sh.s ? r0 + sh.chunk_rows : sh.s;
                const float *alpha = coef + n * 4 * c_all + c_all, *beta = alpha + c_all, *gamma = beta + c_all;
                size_t offset = (n * sh.s + r0) * c_all;
                input_grad_rows(dinp.data + offset, dout.data + offset, inp.data + offset, r1 - r0, c_all, alpha, beta,
                                gamma);
            }
        }
        /* y = xhat w + bias: dbias = sum dy, dweight = sum dy xhat = rstd B, over samples in order. */
#pragma omp for schedule(static)
        for (size_t g = 0; g < sh.g; g++)
            for (size_t c = g * sh.cg; c < (g + 1) * sh.cg; c++) {
                double dw = 0, db = 0;
                for (size_t n = 0; n < sh.n; n++) {
                    db += sums[n * 2 * c_all + c];
                    dw += (double)rstd.data[n * sh.g + g] * sums[n * 2 * c_all + c_all + c];
                }
                if (dbias.data) dbias.data[c] += (float)db;
                if (dweight.data) dweight.data[c] += (float)dw;
            }
    }
}
