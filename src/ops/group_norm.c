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
 * task per (n, group) would read a strided fraction of each cache line. Two splits, chosen by the shape
 * alone (never by the thread count, so every result is bitwise the same for any number of threads):
 *   - slabs, for few positions (a slab's data <= GN_SLAB_MAX_BYTES, e.g. 32 x 32 images of 128 channels)
 *     when a slab's part of a row is wide enough (GN_SLAB_MIN_WIDTH) or the whole row: a task
 *     per (sample, slab of k groups), k Cg channels a whole number of cache lines wide, or every group when
 *     that is narrower than GN_SLAB_MIN_WIDTH; it computes its groups' statistics and output from its
 *     cached slab alone: no merge between tasks, one parallel loop;
 *   - chunks, otherwise: a task per (sample, chunk of positions) reading whole rows into per-channel
 *     accumulators vectorised over C; chunks depend only on the shape (>= 32K elements, <= 64 per sample)
 *     and their partial results merge in chunk order.
 * In both, channels fold into groups after their per-channel sums. Tasks go to the threads in static
 * shares, so that each keeps the samples it had in the ops before (dynamic scheduling measured slower:
 * attention_kernels.inc).
 *
 * Statistics, in double and numerically robust. A task walks its chunk in 64 KB blocks (a slab is one
 * block) that stay in L2 and makes two passes over each: channel means, then squared deviations from them;
 * blocks merge into the task's per-channel moments and channels into groups by Chan, Golub & LeVeque's
 * pairwise update (mean and M2 of a union), chunks into the sample likewise. Eight rows of a channel are
 * summed in float before each double accumulation (block_moments says why that is safe). Measured in cache
 * at U-Net widths, one thread, per element: Welford per channel in double 0.16 ns, these two passes all in
 * double 0.20 ns, with the float eight-row steps 0.08 ns. The input comes from memory twice, for the
 * statistics and for the output; for tensors past GN_LARGE_BYTES the statistics pass prefetches its next
 * block and the output is written with non-temporal stores.
 *
 * Output: y = x a_c + b_c with a_c = rstd w_c and b_c = bias_c - mean a_c, PyTorch's formula; its rounding
 * (~ulp(mean) rstd |w|) is the size of the error the input's own rounding already carries.
 *
 * Backward: one pass over dy and x for A and B (eight-row float steps into double, as above), then
 * dx += dy alpha_c + x beta_g + gamma_g with the per-(n, g) constants folded from SA and SB.
 *
 * Fused GroupNorm + SiLU: forward applies the SiLU in the row kernel that writes y, so the normalised values
 * are never stored; backward recomputes them from x and the saved statistics (y = x a + b with a = rstd w,
 * b = bias - mean a, in float) and turns the SiLU's output gradient into the dy = dout silu'(y) that the two
 * passes above read: a slab's whole dy once, into a per-thread buffer (it fits in L2); a chunk's a block of
 * rows at a time, in each pass.
 *
 * Shift (the fused ops, group_norm.h): the input is x + shift[n, c], never formed. Its channel means are x's
 * moved by the shift before channels fold into groups (M2 is unchanged), the output offset b takes
 * shift a, and backward's centres become mean - shift and its constant term gamma + shift beta. */
#include "ops/group_norm.h"

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#include <math.h>
#include <omp.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "core/alloc.h"
#include "core/check.h"
#include "core/half.h"
#include "ops/silu_math.h"

/* ------------------------------------------------------------------------------------------------ */
/* Shapes, plans and scratch */

/* Chunk split: a chunk has at least GN_CHUNK_ELEMS elements, so per-chunk partials stay small next to the
 * data, and a sample has at most GN_MAX_CHUNKS chunks. Forward chunks are walked in blocks of about
 * GN_BLOCK_ELEMS elements (64 KB), which stay in L2 between the two statistics passes. */
#define GN_CHUNK_ELEMS 32768
#define GN_MAX_CHUNKS 64
#define GN_BLOCK_ELEMS 16384
/* Slab split: when a slab (all positions of k groups) fits in this much of L2 (half of the 2 MB of the
 * machine measured below; 384 KB before, tuned for 1 MB: 128x32x32x128, whole rows of 512 KB, forward /
 * backward 8.0 / 24.3 -> 6.8 / 15.8 ms against the chunks; slabs of 2 and 3.6 MB gained in backward but
 * lost in forward, 4x64x64x224 1.35 -> 1.69 ms),
 * and its part of a row is the whole row or at least GN_SLAB_MIN_WIDTH floats: a slab of one or two cache
 * lines out of every row of a wide sample costs more than the chunks' second pass over whole rows. Fused
 * op, 2 threads, forward / backward, slabs against chunks: 16x16x16x256 (16 of 256 floats a row)
 * 0.50 / 0.93 against 0.35 / 0.78 ms, 128x32x32x128 9.9 / 31.7 against 6.9 / 21.1 ms; backward
 * 2x8x8x896 (112 of 896) 0.053 against 0.086 ms, 64x28x28x48 (whole rows) 0.99 against 1.97 ms.
 * Where the fewest whole lines are narrower than GN_SLAB_MIN_WIDTH, a slab takes the whole row (up to
 * GN_SLAB_MAX_GROUPS groups): a task then owns a sample, and its second pass reads it from L2 rather than
 * memory. Against the chunks (one per sample at these sizes), 2 threads, forward / backward:
 * 64x28x28x32 0.53 / 1.16 -> 0.47 / 0.61 ms, 64x14x14x96 (two parts) 0.38 / 0.83 -> 0.36 / 0.47,
 * 16x16x16x256 0.36 / 0.65 -> 0.30 / 0.39; fashion-mnist b64 training step 155.8 -> 152.2 ms. */
#define GN_SLAB_MAX_BYTES (1u << 20)
#define GN_SLAB_MAX_WIDTH 512
#define GN_SLAB_MIN_WIDTH 64
#define GN_SLAB_MAX_GROUPS 32
/* Fused backward: rows of the recomputed dy per block, about this many elements (a multiple of 8 rows). */
#define GN_SILU_BLOCK_ELEMS 4096
/* Below this many elements one thread does the work: waking a team costs more than it saves. */
#define GN_PARALLEL_ELEMS 16384
/* From this input size on, the statistics pass prefetches its next block while it works on the cached one,
 * and the output is streamed past the cache: a quarter of the 32 MB L3 of the machine this was tuned on. */
#define GN_LARGE_BYTES (8u << 20)

typedef struct GroupNormPlan {
    size_t n, s, c, g, cg;       /* samples, positions per sample, channels, groups, channels per group */
    bool slabs;                  /* which split */
    size_t slab_groups, slab_width, n_slabs; /* slabs: k groups, k cg channels, slabs per sample */
    size_t chunk_rows, n_chunks; /* chunks: rows per chunk, chunks per sample */
    size_t n_tasks;
} GroupNormPlan;

static size_t div_ceil(size_t a, size_t b) { return (a + b - 1) / b; }

static size_t gcd(size_t a, size_t b) {
    while (b) {
        size_t t = a % b;
        a = b, b = t;
    }
    return a;
}

static GroupNormPlan plan_of(Tensor inp, int n_groups, const char *where) {
    tensor_expect(inp, where, "inp", inp.ndim, NULL);
    char buf[96];
    CHECK(inp.ndim >= 2, "%s: inp has shape %s, expected (N, ..., C)", where, tensor_shape_str(inp, buf, sizeof buf));
    GroupNormPlan pl = {.n = inp.shape[0], .c = inp.shape[inp.ndim - 1]};
    pl.s = tensor_numel(inp) / (pl.n * pl.c);
    CHECK(n_groups > 0 && pl.c % (size_t)n_groups == 0, "%s: n_groups %d does not divide the %zu channels of inp %s",
          where, n_groups, pl.c, tensor_shape_str(inp, buf, sizeof buf));
    pl.g = (size_t)n_groups;
    pl.cg = pl.c / pl.g;
    /* The fewest whole groups that make whole 64-byte lines: k Cg a multiple of 16 floats. */
    pl.slab_groups = 16 / gcd(pl.cg, 16);
    pl.slab_width = pl.slab_groups * pl.cg;
    if (pl.slab_width < GN_SLAB_MIN_WIDTH && pl.g <= GN_SLAB_MAX_GROUPS) pl.slab_groups = pl.g, pl.slab_width = pl.c;
    pl.slabs = pl.g % pl.slab_groups == 0 && pl.slab_width <= GN_SLAB_MAX_WIDTH &&
               (pl.slab_width == pl.c || pl.slab_width >= GN_SLAB_MIN_WIDTH) &&
               pl.s * pl.slab_width * sizeof(float) <= GN_SLAB_MAX_BYTES && pl.n * (pl.g / pl.slab_groups) >= 2;
    if (pl.slabs) {
        pl.n_slabs = pl.g / pl.slab_groups;
        pl.n_tasks = pl.n * pl.n_slabs;
    } else {
        size_t min_rows = div_ceil(GN_CHUNK_ELEMS, pl.c), max_chunks_rows = div_ceil(pl.s, GN_MAX_CHUNKS);
        pl.chunk_rows = div_ceil(min_rows > max_chunks_rows ? min_rows : max_chunks_rows, 8) * 8; /* 8-row steps */
        if (pl.chunk_rows > pl.s) pl.chunk_rows = pl.s;
        pl.n_chunks = div_ceil(pl.s, pl.chunk_rows);
        pl.n_tasks = pl.n * pl.n_chunks;
    }
    return pl;
}

/* Rows [r0, r1) of chunk task `task`, and its sample. */
static size_t chunk_rows_of(const GroupNormPlan *pl, size_t task, size_t *r0, size_t *r1) {
    *r0 = task % pl->n_chunks * pl->chunk_rows;
    *r1 = *r0 + pl->chunk_rows < pl->s ? *r0 + pl->chunk_rows : pl->s;
    return task / pl->n_chunks;
}

/* One scratch buffer for this file: ops run one at a time, so no call overlaps another. */
static GrowBuffer scratch;

static void *scratch_get(size_t n_bytes) { return grow_buffer(&scratch, n_bytes); }

static size_t align64(size_t n_bytes) { return (n_bytes + 63) / 64 * 64; }

/* ------------------------------------------------------------------------------------------------ */
/* Statistics */

/* Count, mean and sum of squared deviations (M2) of a set of values. */
typedef struct Moments {
    double count, mean, m2;
} Moments;

/* Chan, Golub & LeVeque's update: the moments of the union of two disjoint sets. */
static void moments_merge(Moments *acc, Moments part) {
    if (acc->count == 0) {
        *acc = part;
        return;
    }
    double total = acc->count + part.count, delta = part.mean - acc->mean;
    acc->mean += delta * (part.count / total);
    acc->m2 += part.m2 + delta * delta * (acc->count * part.count / total);
    acc->count = total;
}

/* The moments of each of `width` channels over a block of rows (row stride ld), merged into per-channel
 * moments (mean_c, m2_c over *count rows each), with two passes over the cached block: pass 1 sums x for
 * the channel means m, pass 2 sums (x - m_f)^2 with m_f = m rounded to float, and
 * M2 = sum (x - m_f)^2 - n_rows (m - m_f)^2 (exact, as the deviations from m sum to zero).
 * Accumulators are double. Eight rows of a channel are first combined in float (pass 1: a pairwise sum;
 * pass 2: a chain of eight non-negative squares), a few float roundings per eight terms: a relative error
 * of at most ~5e-7 of the terms' magnitude, which does not grow with the count nor with the mean's offset
 * (nothing cancels), for half the work of converting every element to double. When prefetch is given,
 * pass 2 pulls in the block that follows. work: 2 width doubles and width floats. */
static void block_moments(double *restrict mean_c, double *restrict m2_c, double *count, double *restrict work,
                          const float *restrict x, size_t n_rows, size_t width, size_t ld, const float *prefetch) {
    double *restrict s1 = work, *restrict s2 = work + width;
    float *restrict m = (float *)(work + 2 * width);
    for (size_t c = 0; c < width; c++) s1[c] = 0, s2[c] = 0;
    size_t r = 0;
    for (; r + 8 <= n_rows; r += 8) {
        const float *x0 = x + r * ld;
#pragma omp simd
        for (size_t c = 0; c < width; c++) {
            const float *p = x0 + c;
            float q = ((p[0] + p[ld]) + (p[2 * ld] + p[3 * ld])) + ((p[4 * ld] + p[5 * ld]) + (p[6 * ld] + p[7 * ld]));
            s1[c] += (double)q;
        }
    }
    for (; r < n_rows; r++) {
#pragma omp simd
        for (size_t c = 0; c < width; c++) s1[c] += (double)x[r * ld + c];
    }
    const double rows = (double)n_rows, inv_rows = 1.0 / rows;
#pragma omp simd
    for (size_t c = 0; c < width; c++) {
        s1[c] *= inv_rows; /* s1 now holds the block's channel means */
        m[c] = (float)s1[c];
    }
    for (r = 0; r + 8 <= n_rows; r += 8) {
        const float *x0 = x + r * ld;
#pragma omp simd
        for (size_t c = 0; c < width; c++) {
            const float *p = x0 + c;
            const float mc = m[c];
            float d0 = p[0] - mc, d1 = p[ld] - mc, d2 = p[2 * ld] - mc, d3 = p[3 * ld] - mc;
            float d4 = p[4 * ld] - mc, d5 = p[5 * ld] - mc, d6 = p[6 * ld] - mc, d7 = p[7 * ld] - mc;
            float q = d0 * d0;
            q += d1 * d1, q += d2 * d2, q += d3 * d3, q += d4 * d4, q += d5 * d5, q += d6 * d6, q += d7 * d7;
            s2[c] += (double)q;
        }
        if (prefetch)
            for (size_t i = 0; i < 8 * ld; i += 16) __builtin_prefetch(prefetch + r * ld + i);
    }
    for (; r < n_rows; r++) {
#pragma omp simd
        for (size_t c = 0; c < width; c++) {
            float d = x[r * ld + c] - m[c];
            s2[c] += (double)(d * d);
        }
    }
    /* Chan et al.'s update with the moments so far: every channel has the same counts. */
    const double total = *count + rows, weight_new = rows / total, weight_cross = *count * rows / total;
#pragma omp simd
    for (size_t c = 0; c < width; c++) {
        double offset = (double)m[c] - s1[c], m2 = s2[c] - rows * offset * offset, delta = s1[c] - mean_c[c];
        mean_c[c] += delta * weight_new;
        m2_c[c] += m2 + delta * delta * weight_cross;
    }
    *count = total;
}

/* Folds per-channel moments (count values each) into the moments of each group of cg channels:
 * mean = average of the channel means, M2 = sum of the channel M2 + count sum (mean_c - mean)^2.
 * The group index runs innermost, so the sums of different groups proceed side by side.
 * work: 2 n_groups doubles. */
static void fold_groups(Moments *moments, const double *mean_c, const double *m2_c, double count, size_t n_groups,
                        size_t cg, double *work) {
    double *mean_g = work, *m2_g = work + n_groups;
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

/* ------------------------------------------------------------------------------------------------ */
/* Forward */

/* From a group's moments: its saved mean and rstd, and the output coefficients a, b of its cg channels
 * (offset c0) such that y = x a + b; with the sample's shift (C floats, or NULL), y = (x + shift) a + b'
 * written as x a + b. */
static void group_output_coefficients(float *mean, float *rstd, float *a, float *b, Moments m, float eps,
                                      const float *w, const float *bias, const float *shift, size_t c0, size_t cg) {
    double var = m.m2 > 0 ? m.m2 / m.count : 0; /* M2 of a constant group may round below 0 */
    double r = 1.0 / sqrt(var + (double)eps);
    *mean = (float)m.mean;
    *rstd = (float)r;
    for (size_t j = 0; j < cg; j++) {
        double ac = r * (w ? (double)w[c0 + j] : 1.0), centre = m.mean - (shift ? (double)shift[c0 + j] : 0.0);
        a[j] = (float)ac;
        b[j] = (float)((bias ? (double)bias[c0 + j] : 0.0) - centre * ac);
    }
}

/* The moments of x + shift from those of x, per channel: the means move by the shift, M2 stays. */
static void shift_means(double *mean_c, const float *shift, size_t width) {
    if (shift)
        for (size_t c = 0; c < width; c++) mean_c[c] += (double)shift[c];
}

#if defined(__AVX512F__)
/* x a + b for the lanes in m (0 elsewhere), rounding the product and the sum as the scalar loops do. */
static inline __attribute__((always_inline)) __m512 affine16(const float *x, const float *a, const float *b,
                                                             __mmask16 m) {
    return _mm512_add_ps(_mm512_mul_ps(_mm512_maskz_loadu_ps(m, x), _mm512_maskz_loadu_ps(m, a)),
                         _mm512_maskz_loadu_ps(m, b));
}
#endif

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

/* out = x a + b for n_rows rows of `width` channels (row strides ld for out, ld_x for x), with per-channel
 * a = rstd w and b = bias - mean a. This is (x - mean) rstd w + bias up to the rounding of b, which is below
 * the rounding the input x itself carries (both ~ ulp(mean) rstd |w|). Both paths round the product and
 * the sum separately, so they give the same bits. stream needs width == ld == ld_x and can_stream(). With silu,
 * out = silu(x a + b): the fused GroupNorm + SiLU, whose output a convolution reads next, so it is never
 * streamed past the cache. */
static void normalize_rows(float *restrict out, size_t ld, const float *restrict x, size_t ld_x, size_t n_rows,
                           size_t width, const float *restrict a, const float *restrict b, bool silu, bool stream);

/* out = bf16(silu(x a + b)), or bf16(x a + b) without silu: the output rounded to bf16 as it is written,
 * for a bf16 convolution or projection to read (group_norm_silu_forward_bf16, group_norm_forward_bf16).
 * Row strides ld (out) and ld_x (x). */
static void normalize_rows_bf16(uint16_t *restrict out, size_t ld, const float *restrict x, size_t ld_x,
                                size_t n_rows, size_t width, const float *restrict a, const float *restrict b,
                                bool silu) {
#if defined(__AVX512F__)
    for (size_t r = 0; r < n_rows; r++)
        for (size_t c = 0; c < width; c += 16) {
            const __mmask16 m = silu16_lanes(width - c);
            const __m512 y32 = affine16(x + r * ld_x + c, a + c, b + c, m);
            __m256i y = bfloat16_round16(silu ? silu_value16(y32) : y32);
            if (m == 0xFFFF) _mm256_storeu_si256((__m256i *)(out + r * ld + c), y);
            else {
                uint16_t tail[16];
                _mm256_storeu_si256((__m256i *)tail, y);
                memcpy(out + r * ld + c, tail, (width - c) * sizeof *tail);
            }
        }
    return;
#endif
    for (size_t r = 0; r < n_rows; r++) {
        const float *row = x + r * ld_x;
        uint16_t *orow = out + r * ld;
#pragma omp simd
        for (size_t c = 0; c < width; c++) {
            const float y = row[c] * a[c] + b[c];
            orow[c] = bfloat16_round(silu ? silu_value(y) : y);
        }
    }
}

static void normalize_rows(float *restrict out, size_t ld, const float *restrict x, size_t ld_x, size_t n_rows,
                           size_t width, const float *restrict a, const float *restrict b, bool silu, bool stream) {
#if defined(__AVX512F__)
    if (stream && !silu) {
        for (size_t r = 0; r < n_rows; r++)
            for (size_t c = 0; c < width; c += 16) {
                __m512 v = _mm512_mul_ps(_mm512_loadu_ps(x + r * ld + c), _mm512_loadu_ps(a + c));
                _mm512_stream_ps(out + r * ld + c, _mm512_add_ps(v, _mm512_loadu_ps(b + c)));
            }
        _mm_sfence(); /* order the streamed stores before the barrier that publishes them */
        return;
    }
    if (silu) {
        for (size_t r = 0; r < n_rows; r++)
            for (size_t c = 0; c < width; c += 16) {
                const __mmask16 m = silu16_lanes(width - c);
                _mm512_mask_storeu_ps(out + r * ld + c, m, silu_value16(affine16(x + r * ld_x + c, a + c, b + c, m)));
            }
        return;
    }
#else
    (void)stream;
#endif
    for (size_t r = 0; r < n_rows; r++) {
        const float *row = x + r * ld_x;
        float *orow = out + r * ld;
        if (silu) {
#pragma omp simd
            for (size_t c = 0; c < width; c++) orow[c] = silu_value(row[c] * a[c] + b[c]);
        } else {
#pragma omp simd
            for (size_t c = 0; c < width; c++) orow[c] = row[c] * a[c] + b[c];
        }
    }
}

/* The forward's input, channels [0, C): part 0's c[0] channels, then part 1's c[1] (0 for a one-part input). */
typedef struct Input {
    const float *x[2];
    size_t c[2];
} Input;

/* Where channels [c0, c0 + width) of the input's row `row` (of all N S rows) lie: a run in each part they
 * reach, each with its data, row stride, first channel within [c0, c0 + width) and width. */
typedef struct Run {
    const float *x;
    size_t ld, first, width;
    int part;
} Run;

static int input_runs(const Input *in, size_t row, size_t c0, size_t width, Run runs[2]) {
    int n_runs = 0;
    size_t lo = 0;
    for (int p = 0; p < 2; p++) {
        const size_t hi = lo + in->c[p];
        const size_t from = c0 > lo ? c0 : lo, to = c0 + width < hi ? c0 + width : hi;
        if (from < to)
            runs[n_runs++] = (Run){in->x[p] + row * in->c[p] + (from - lo), in->c[p], from - c0, to - from, p};
        lo = hi;
    }
    return n_runs;
}

/* block_moments over each run of n_rows rows, into the per-channel moments of channels [c0, c0 + width);
 * with prefetch, each run's next block of n_rows rows is pulled in. */
static void runs_moments(double *mean_c, double *m2_c, double *count, double *work, const Run *runs, int n_runs,
                         size_t n_rows, bool prefetch) {
    const double before = *count;
    for (int i = 0; i < n_runs; i++) {
        double c = before;
        block_moments(mean_c + runs[i].first, m2_c + runs[i].first, &c, work, runs[i].x, n_rows, runs[i].width,
                      runs[i].ld, prefetch ? runs[i].x + n_rows * runs[i].ld : NULL);
        *count = c;
    }
}

typedef struct ForwardArgs {
    Tensor out, mean, rstd;
    Input in;
    const float *w, *bias, *shift; /* shift (N, C) or NULL */
    float eps;
    bool silu;
    uint16_t *out_bf16; /* the bf16 output, in place of out */
} ForwardArgs;

/* Rows [row, row + n_rows) of the output's channels [c0, c0 + width) (of C), from their coefficients a, b. */
static void write_rows(const ForwardArgs *f, size_t row, size_t n_rows, size_t c0, size_t width, size_t c_all,
                       const float *a, const float *b, bool stream) {
    Run runs[2];
    const int n_runs = input_runs(&f->in, row, c0, width, runs);
    for (int i = 0; i < n_runs; i++) {
        const size_t at = row * c_all + c0 + runs[i].first, first = runs[i].first;
        if (f->out_bf16)
            normalize_rows_bf16(f->out_bf16 + at, c_all, runs[i].x, runs[i].ld, n_rows, runs[i].width, a + first,
                                b + first, f->silu);
        else
            normalize_rows(f->out.data + at, c_all, runs[i].x, runs[i].ld, n_rows, runs[i].width, a + first,
                           b + first, f->silu, stream);
    }
}

/* Slab split: each task owns k groups of one sample from statistics to output. */
static void forward_slabs(const GroupNormPlan *pl, const ForwardArgs *f) {
    const size_t width = pl->slab_width, k = pl->slab_groups;
    /* per thread: mean_c, m2_c, block_moments' work (2 width + width / 2), fold work 2 k, a and b */
    const size_t work_doubles = 5 * width + 2 * k + (width + 1) / 2;
    double *work = scratch_get((size_t)omp_get_max_threads() * work_doubles * sizeof(double));
#pragma omp parallel if (pl->n * pl->s * pl->c >= GN_PARALLEL_ELEMS)
    {
        double *mean_c = work + (size_t)omp_get_thread_num() * work_doubles, *m2_c = mean_c + width;
        double *block_work = m2_c + width, *fold_work = block_work + 2 * width + (width + 1) / 2;
        float *a = (float *)(fold_work + 2 * k), *b = a + width;
        Moments moments[GN_SLAB_MAX_GROUPS];
#pragma omp for schedule(static)
        for (size_t task = 0; task < pl->n_tasks; task++) {
            size_t n = task / pl->n_slabs, c0 = task % pl->n_slabs * width, g0 = c0 / pl->cg;
            double count = 0;
            for (size_t c = 0; c < width; c++) mean_c[c] = 0, m2_c[c] = 0;
            const float *shift = f->shift ? f->shift + n * pl->c : NULL;
            Run runs[2];
            const int n_runs = input_runs(&f->in, n * pl->s, c0, width, runs);
            runs_moments(mean_c, m2_c, &count, block_work, runs, n_runs, pl->s, false);
            shift_means(mean_c, shift ? shift + c0 : NULL, width);
            fold_groups(moments, mean_c, m2_c, count, k, pl->cg, fold_work);
            for (size_t j = 0; j < k; j++)
                group_output_coefficients(&f->mean.data[n * pl->g + g0 + j], &f->rstd.data[n * pl->g + g0 + j],
                                          a + j * pl->cg, b + j * pl->cg, moments[j], f->eps, f->w, f->bias, shift,
                                          c0 + j * pl->cg, pl->cg);
            write_rows(f, n * pl->s, pl->s, c0, width, pl->c, a, b, false);
        }
    }
}

/* Chunk split: statistics per chunk, merged per sample in chunk order, then the output per chunk. */
static void forward_chunks(const GroupNormPlan *pl, const ForwardArgs *f) {
    const size_t c_all = pl->c, n_groups = pl->g;
    const size_t work_doubles = 4 * c_all + (c_all + 1) / 2 + 2 * n_groups; /* mean_c, m2_c, block, fold */
    const size_t moments_bytes = align64(pl->n_tasks * n_groups * sizeof(Moments));
    const size_t work_bytes = align64((size_t)omp_get_max_threads() * work_doubles * sizeof(double));
    char *scratch = scratch_get(moments_bytes + work_bytes + pl->n * 2 * c_all * sizeof(float));
    Moments *chunk_moments = (Moments *)scratch;                   /* (tasks, G) */
    double *work = (double *)(scratch + moments_bytes);             /* (threads, work_doubles) */
    float *coef = (float *)(scratch + moments_bytes + work_bytes);  /* (N, 2, C): a, b */
    size_t block_rows = GN_BLOCK_ELEMS / c_all / 8 * 8;
    if (block_rows < 8) block_rows = 8;
    const bool large = pl->n * pl->s * c_all * sizeof(float) >= GN_LARGE_BYTES;
    const bool stream = large && !f->out_bf16 && f->in.c[1] == 0 && can_stream(f->out.data, c_all);
#pragma omp parallel if (pl->n_tasks > 1 && pl->n * pl->s * c_all >= GN_PARALLEL_ELEMS)
    {
        double *mean_c = work + (size_t)omp_get_thread_num() * work_doubles, *m2_c = mean_c + c_all;
        double *block_work = m2_c + c_all, *fold_work = block_work + 2 * c_all + (c_all + 1) / 2;
#pragma omp for schedule(static)
        for (size_t task = 0; task < pl->n_tasks; task++) {
            size_t r0, r1, n = chunk_rows_of(pl, task, &r0, &r1);
            double count = 0;
            for (size_t c = 0; c < c_all; c++) mean_c[c] = 0, m2_c[c] = 0;
            for (size_t r = r0; r < r1; r += block_rows) {
                size_t rows = r1 - r < block_rows ? r1 - r : block_rows;
                Run runs[2];
                const int n_runs = input_runs(&f->in, n * pl->s + r, 0, c_all, runs);
                runs_moments(mean_c, m2_c, &count, block_work, runs, n_runs, rows, r + rows < r1 && large);
            }
            shift_means(mean_c, f->shift ? f->shift + n * c_all : NULL, c_all);
            fold_groups(chunk_moments + task * n_groups, mean_c, m2_c, count, n_groups, pl->cg, fold_work);
        }
#pragma omp for schedule(static)
        for (size_t ng = 0; ng < pl->n * n_groups; ng++) {
            size_t n = ng / n_groups, g = ng % n_groups;
            Moments total = {0, 0, 0};
            for (size_t k = 0; k < pl->n_chunks; k++)
                moments_merge(&total, chunk_moments[(n * pl->n_chunks + k) * n_groups + g]);
            float *a = coef + n * 2 * c_all + g * pl->cg;
            group_output_coefficients(&f->mean.data[ng], &f->rstd.data[ng], a, a + c_all, total, f->eps, f->w, f->bias,
                                      f->shift ? f->shift + n * c_all : NULL, g * pl->cg, pl->cg);
        }
#pragma omp for schedule(static)
        for (size_t task = 0; task < pl->n_tasks; task++) {
            size_t r0, r1, n = chunk_rows_of(pl, task, &r0, &r1);
            const float *a = coef + n * 2 * c_all;
            write_rows(f, n * pl->s + r0, r1 - r0, 0, c_all, c_all, a, a + c_all, stream);
        }
    }
}

/* shift (N, C): the per-sample channel offsets of the fused ops (see group_norm.h), or none. */
static void expect_shift(Tensor shift, const GroupNormPlan *pl, const char *where) {
    if (!tensor_is_none(shift)) tensor_expect(shift, where, "shift", 2, (size_t[]){pl->n, pl->c});
}

/* The input concat(inp, inp2) along channels (inp2 may be none), CHECKed, and its whole shape. */
static Input input_of(Tensor inp, Tensor inp2, Tensor *whole, const char *where) {
    tensor_expect(inp, where, "inp", inp.ndim, NULL);
    *whole = inp;
    if (tensor_is_none(inp2)) return (Input){{inp.data, NULL}, {inp.shape[inp.ndim - 1], 0}};
    Tensor want = inp;
    want.shape[inp.ndim - 1] = inp2.ndim == inp.ndim ? inp2.shape[inp.ndim - 1] : 0;
    tensor_expect(inp2, where, "inp2", inp.ndim, want.shape);
    whole->shape[inp.ndim - 1] += inp2.shape[inp.ndim - 1];
    return (Input){{inp.data, inp2.data}, {inp.shape[inp.ndim - 1], inp2.shape[inp.ndim - 1]}};
}

static void forward(Tensor out, uint16_t *out_bf16, Tensor mean, Tensor rstd, Tensor inp, Tensor inp2, Tensor shift,
                    Tensor weight, Tensor bias, int n_groups, float eps, bool silu, const char *where) {
    const Input in = input_of(inp, inp2, &inp, where); /* inp now has the whole shape */
    const GroupNormPlan pl = plan_of(inp, n_groups, where);
    size_t stats_shape[2] = {pl.n, pl.g}, channels[1] = {pl.c};
    expect_shift(shift, &pl, where);
    if (out_bf16) CHECK(tensor_is_none(out), "%s: two outputs", where);
    else tensor_expect(out, where, "out", inp.ndim, inp.shape);
    tensor_expect(mean, where, "mean", 2, stats_shape);
    tensor_expect(rstd, where, "rstd", 2, stats_shape);
    if (!tensor_is_none(weight)) tensor_expect(weight, where, "weight", 1, channels);
    if (!tensor_is_none(bias)) tensor_expect(bias, where, "bias", 1, channels);
    CHECK(eps >= 0 && isfinite(eps), "%s: eps is %g, expected a finite value >= 0", where, (double)eps);
    const ForwardArgs f = {out, mean, rstd, in, weight.data, bias.data, shift.data, eps, silu, out_bf16};
    if (pl.slabs) forward_slabs(&pl, &f);
    else forward_chunks(&pl, &f);
}

void group_norm_forward(Tensor out, Tensor mean, Tensor rstd, Tensor inp, Tensor weight, Tensor bias, int n_groups,
                        float eps) {
    forward(out, NULL, mean, rstd, inp, tensor_none(), tensor_none(), weight, bias, n_groups, eps, false, __func__);
}

void group_norm_silu_forward(Tensor out, Tensor mean, Tensor rstd, Tensor inp, Tensor inp2, Tensor shift,
                             Tensor weight, Tensor bias, int n_groups, float eps) {
    forward(out, NULL, mean, rstd, inp, inp2, shift, weight, bias, n_groups, eps, true, __func__);
}

void group_norm_forward_bf16(uint16_t *out, Tensor mean, Tensor rstd, Tensor inp, Tensor weight, Tensor bias,
                             int n_groups, float eps) {
    CHECK(out, "%s: out is NULL", __func__);
    forward(tensor_none(), out, mean, rstd, inp, tensor_none(), tensor_none(), weight, bias, n_groups, eps, false,
            __func__);
}

void group_norm_silu_forward_bf16(uint16_t *out, Tensor mean, Tensor rstd, Tensor inp, Tensor inp2, Tensor shift,
                                  Tensor weight, Tensor bias, int n_groups, float eps) {
    CHECK(out, "%s: out is NULL", __func__);
    forward(tensor_none(), out, mean, rstd, inp, inp2, shift, weight, bias, n_groups, eps, true, __func__);
}

/* ------------------------------------------------------------------------------------------------ */
/* Backward */

/* Adds to A[c] the sum of dy and to B[c] the sum of dy (x - mu) over n_rows rows of `width` channels (row
 * strides ld_dy and ld), eight rows at a time summed pairwise in float before the double accumulators (as
 * block_moments does). */
static void grad_sums(double *restrict a_sum, double *restrict b_sum, const float *restrict dy, size_t ld_dy,
                      const float *restrict x, const float *restrict mu, size_t n_rows, size_t width, size_t ld) {
    size_t r = 0;
    for (; r + 8 <= n_rows; r += 8) {
        const float *g = dy + r * ld_dy, *v = x + r * ld;
        const size_t lg = ld_dy;
#pragma omp simd
        for (size_t c = 0; c < width; c++) {
            const float *p = g + c, *q = v + c, m = mu[c];
            float t0 = p[0] * (q[0] - m), t1 = p[lg] * (q[ld] - m);
            float t2 = p[2 * lg] * (q[2 * ld] - m), t3 = p[3 * lg] * (q[3 * ld] - m);
            float t4 = p[4 * lg] * (q[4 * ld] - m), t5 = p[5 * lg] * (q[5 * ld] - m);
            float t6 = p[6 * lg] * (q[6 * ld] - m), t7 = p[7 * lg] * (q[7 * ld] - m);
            float sa = ((p[0] + p[lg]) + (p[2 * lg] + p[3 * lg])) + ((p[4 * lg] + p[5 * lg]) + (p[6 * lg] + p[7 * lg]));
            a_sum[c] += (double)sa;                                                   /* y = ... + bias */
            b_sum[c] += (double)(((t0 + t1) + (t2 + t3)) + ((t4 + t5) + (t6 + t7))); /* y = xhat w + ... */
        }
    }
    for (; r < n_rows; r++) {
        const float *g = dy + r * ld_dy, *v = x + r * ld;
#pragma omp simd
        for (size_t c = 0; c < width; c++) {
            a_sum[c] += (double)g[c];
            b_sum[c] += (double)(g[c] * (v[c] - mu[c]));
        }
    }
}

/* The input-gradient coefficients of one group (channels c0 .. c0 + cg - 1) from its sums A, B:
 * y = (x - mean) rstd w + bias, with mean and rstd functions of every x of the group, gives
 * dx = rstd w dy - rstd SA / M - (x - mean) rstd^3 SB / M = dy alpha + x beta + gamma; with the sample's
 * shift (C floats, or NULL) x + shift stands for x, so gamma takes shift beta. */
static void group_grad_coefficients(float *alpha, float *beta, float *gamma, const double *a_sum, const double *b_sum,
                                    const float *w, const float *shift, size_t c0, size_t cg, double mean, double rstd,
                                    double count) {
    double sa = 0, sb = 0;
    for (size_t j = 0; j < cg; j++) {
        double wc = w ? (double)w[c0 + j] : 1.0;
        sa += wc * a_sum[j], sb += wc * b_sum[j];
    }
    double be = -rstd * rstd * rstd * sb / count, ga = -rstd * sa / count - mean * be;
    for (size_t j = 0; j < cg; j++) {
        alpha[j] = (float)(rstd * (w ? (double)w[c0 + j] : 1.0));
        beta[j] = (float)be;
        gamma[j] = (float)(ga + (shift ? (double)shift[c0 + j] * be : 0.0));
    }
}

/* dx += dy alpha + x beta + gamma over n_rows rows of `width` channels (row strides ld_dy and ld). */
static void input_grad_rows(float *restrict dx, bool overwrite, const float *restrict dy, size_t ld_dy,
                            const float *restrict x, size_t n_rows, size_t width, size_t ld,
                            const float *restrict alpha, const float *restrict beta, const float *restrict gamma) {
    for (size_t r = 0; r < n_rows; r++) {
        float *d = dx + r * ld;
        const float *g = dy + r * ld_dy, *v = x + r * ld;
        if (overwrite) {
#pragma omp simd
            for (size_t c = 0; c < width; c++) d[c] = (g[c] * alpha[c] + v[c] * beta[c]) + gamma[c];
        } else {
#pragma omp simd
            for (size_t c = 0; c < width; c++) d[c] += (g[c] * alpha[c] + v[c] * beta[c]) + gamma[c];
        }
    }
}

/* The input gradient, in the input's parts (Input): part p's channels in dx[p] (row stride Input.c[p]),
 * written or added to (overwrite[p]); dx[0] NULL when not wanted. */
typedef struct InputGrad {
    float *dx[2];
    bool overwrite[2];
} InputGrad;

/* Where run r (of input_runs) lies in the input gradient. */
static float *run_grad(const InputGrad *grad, const Input *in, const Run *r) {
    return grad->dx[r->part] + (r->x - in->x[r->part]);
}

typedef struct BackwardArgs {
    Tensor dweight, dbias, dout, mean, rstd;
    Input in;
    InputGrad grad;
    const float *w, *bias, *shift; /* shift (N, C) or NULL */
    bool silu; /* the fused op: dout is the gradient of silu(y) */
} BackwardArgs;

/* The centre mu = mean - shift that x's values deviate from, for channels [c0, c0 + width) of sample n. */
static void centres(float *restrict mu, const BackwardArgs *args, const GroupNormPlan *pl, size_t n, size_t c0,
                    size_t width) {
    for (size_t c = 0; c < width; c++)
        mu[c] = args->mean.data[n * pl->g + (c0 + c) / pl->cg] - (args->shift ? args->shift[n * pl->c + c0 + c] : 0.0f);
}

/* The fused op's y = x a + b coefficients of channels [c0, c0 + width) of sample n, from the saved
 * statistics and the centres mu. */
static void recompute_coefficients(float *restrict a, float *restrict b, const float *restrict mu,
                                   const BackwardArgs *args, const GroupNormPlan *pl, size_t n, size_t c0,
                                   size_t width) {
    for (size_t c = 0; c < width; c++) {
        float r = args->rstd.data[n * pl->g + (c0 + c) / pl->cg];
        a[c] = args->w ? r * args->w[c0 + c] : r;
        b[c] = (args->bias ? args->bias[c0 + c] : 0.0f) - mu[c] * a[c];
    }
}

/* The fused op's dy = dout silu'(x a + b) for n_rows rows of `width` channels (row strides ld_dy, ld_dout
 * and ld_x). */
static void silu_grad_rows(float *restrict dy, size_t ld_dy, const float *restrict dout, size_t ld_dout,
                           const float *restrict x, size_t ld_x, size_t n_rows, size_t width, const float *restrict a,
                           const float *restrict b) {
#if defined(__AVX512F__)
    for (size_t r = 0; r < n_rows; r++)
        for (size_t c = 0; c < width; c += 16) {
            const __mmask16 m = silu16_lanes(width - c);
            const __m512 g = _mm512_maskz_loadu_ps(m, dout + r * ld_dout + c);
            _mm512_mask_storeu_ps(dy + r * ld_dy + c, m,
                                  _mm512_mul_ps(g, silu_derivative16(affine16(x + r * ld_x + c, a + c, b + c, m))));
        }
    return;
#endif
    for (size_t r = 0; r < n_rows; r++) {
        const float *g = dout + r * ld_dout, *v = x + r * ld_x;
        float *d = dy + r * ld_dy;
#pragma omp simd
        for (size_t c = 0; c < width; c++) d[c] = g[c] * silu_derivative(v[c] * a[c] + b[c]);
    }
}

/* Rows of the fused op's dy per block: a multiple of 8, so grad_sums' eight-row steps are the same. */
static size_t silu_block_rows(size_t width) {
    size_t rows = GN_SILU_BLOCK_ELEMS / width / 8 * 8;
    return rows < 8 ? 8 : rows;
}

/* A chunk: rows [row, row + n_rows) of all C channels (row counts every sample's rows). The fused op's dy
 * is recomputed in each of the two passes over it (a sample's chunks meet between them, so it cannot be
 * kept), a block of rows at a time into buf (silu_block_rows(C) C floats) with the coefficients ya, yb. */
typedef struct ChunkSpan {
    size_t row, n_rows, c;
    const float *ya, *yb;
    float *buf;
} ChunkSpan;

/* The fused op's dy of rows [r, r + rows) of the span, run by run, into buf (row stride C). */
static void chunk_silu_grads(const BackwardArgs *b, const ChunkSpan *span, const Run *runs, int n_runs, size_t r,
                             size_t rows) {
    const size_t c = span->c;
    for (int i = 0; i < n_runs; i++) {
        const size_t first = runs[i].first;
        silu_grad_rows(span->buf + first, c, b->dout.data + (span->row + r) * c + first, c,
                       runs[i].x + r * runs[i].ld, runs[i].ld, rows, runs[i].width, span->ya + first,
                       span->yb + first);
    }
}

static void chunk_sums(const BackwardArgs *b, const ChunkSpan *span, double *a_sum, double *b_sum, const float *mu) {
    const size_t c = span->c;
    Run runs[2];
    const int n_runs = input_runs(&b->in, span->row, 0, c, runs);
    const size_t step = b->silu ? silu_block_rows(c) : span->n_rows;
    for (size_t r = 0; r < span->n_rows; r += step) {
        size_t rows = span->n_rows - r < step ? span->n_rows - r : step;
        if (b->silu) chunk_silu_grads(b, span, runs, n_runs, r, rows);
        const float *dy = b->silu ? span->buf : b->dout.data + (span->row + r) * c;
        for (int i = 0; i < n_runs; i++) {
            const Run *run = &runs[i];
            grad_sums(a_sum + run->first, b_sum + run->first, dy + run->first, c, run->x + r * run->ld,
                      mu + run->first, rows, run->width, run->ld);
        }
    }
}

static void chunk_input_grad(const BackwardArgs *b, const ChunkSpan *span, const float *alpha, const float *beta,
                             const float *gamma) {
    const size_t c = span->c;
    Run runs[2];
    const int n_runs = input_runs(&b->in, span->row, 0, c, runs);
    const size_t step = b->silu ? silu_block_rows(c) : span->n_rows;
    for (size_t r = 0; r < span->n_rows; r += step) {
        size_t rows = span->n_rows - r < step ? span->n_rows - r : step;
        if (b->silu) chunk_silu_grads(b, span, runs, n_runs, r, rows);
        const float *dy = b->silu ? span->buf : b->dout.data + (span->row + r) * c;
        for (int i = 0; i < n_runs; i++) {
            const Run *run = &runs[i];
            const size_t f = run->first;
            input_grad_rows(run_grad(&b->grad, &b->in, run) + r * run->ld, b->grad.overwrite[run->part], dy + f, c,
                            run->x + r * run->ld, rows, run->width, run->ld, alpha + f, beta + f, gamma + f);
        }
    }
}

/* y = xhat w + bias: dbias = sum dy, dweight = sum dy xhat = rstd B, over samples in order, from the
 * per-sample sums (N, 2, C). Runs inside a parallel region. */
static void param_grads(const GroupNormPlan *pl, const BackwardArgs *b, const double *sums) {
#pragma omp for schedule(static)
    for (size_t g = 0; g < pl->g; g++)
        for (size_t c = g * pl->cg; c < (g + 1) * pl->cg; c++) {
            double dw = 0, db = 0;
            for (size_t n = 0; n < pl->n; n++) {
                db += sums[n * 2 * pl->c + c];
                dw += (double)b->rstd.data[n * pl->g + g] * sums[n * 2 * pl->c + pl->c + c];
            }
            if (b->dbias.data) b->dbias.data[c] += (float)db;
            if (b->dweight.data) b->dweight.data[c] += (float)dw;
        }
}

/* Slab split: each task owns k groups of one sample; only the parameter gradients meet across tasks. */
static void backward_slabs(const GroupNormPlan *pl, const BackwardArgs *b) {
    const size_t width = pl->slab_width, c_all = pl->c, count = pl->s * pl->cg;
    /* per thread: mu, alpha, beta, gamma, ya, yb, and the fused op's dy of the whole slab (it fits in L2, so
     * both passes read it instead of recomputing it) */
    const size_t work_floats = 6 * width + (b->silu ? pl->s * width : 0);
    const size_t sums_bytes = align64(pl->n * 2 * c_all * sizeof(double));
    char *scratch = scratch_get(sums_bytes + (size_t)omp_get_max_threads() * work_floats * sizeof(float));
    double *sums = (double *)scratch; /* (N, 2, C): A, B of each sample */
    float *work = (float *)(scratch + sums_bytes);
#pragma omp parallel if (pl->n * pl->s * c_all >= GN_PARALLEL_ELEMS)
    {
        float *mu = work + (size_t)omp_get_thread_num() * work_floats, *alpha = mu + width, *beta = alpha + width;
        float *gamma = beta + width, *ya = gamma + width, *yb = ya + width;
#pragma omp for schedule(static)
        for (size_t task = 0; task < pl->n_tasks; task++) {
            size_t n = task / pl->n_slabs, c0 = task % pl->n_slabs * width, g0 = c0 / pl->cg;
            size_t ld_dy = c_all;
            const float *dy = b->dout.data + n * pl->s * c_all + c0;
            double *a_sum = sums + n * 2 * c_all + c0, *b_sum = a_sum + c_all;
            Run runs[2];
            const int n_runs = input_runs(&b->in, n * pl->s, c0, width, runs);
            centres(mu, b, pl, n, c0, width);
            for (size_t c = 0; c < width; c++) a_sum[c] = 0, b_sum[c] = 0;
            if (b->silu) {
                recompute_coefficients(ya, yb, mu, b, pl, n, c0, width);
                for (int i = 0; i < n_runs; i++) {
                    const size_t f = runs[i].first;
                    silu_grad_rows(yb + width + f, width, dy + f, c_all, runs[i].x, runs[i].ld, pl->s, runs[i].width,
                                   ya + f, yb + f);
                }
                dy = yb + width, ld_dy = width;
            }
            for (int i = 0; i < n_runs; i++) {
                const size_t f = runs[i].first;
                grad_sums(a_sum + f, b_sum + f, dy + f, ld_dy, runs[i].x, mu + f, pl->s, runs[i].width, runs[i].ld);
            }
            if (!b->grad.dx[0]) continue;
            for (size_t j = 0; j < pl->slab_groups; j++) {
                size_t g = g0 + j, at = j * pl->cg;
                group_grad_coefficients(alpha + at, beta + at, gamma + at, a_sum + at, b_sum + at, b->w,
                                        b->shift ? b->shift + n * c_all : NULL, c0 + at, pl->cg,
                                        b->mean.data[n * pl->g + g], b->rstd.data[n * pl->g + g], (double)count);
            }
            for (int i = 0; i < n_runs; i++) {
                const size_t f = runs[i].first;
                input_grad_rows(run_grad(&b->grad, &b->in, &runs[i]), b->grad.overwrite[runs[i].part], dy + f, ld_dy,
                                runs[i].x, pl->s, runs[i].width, runs[i].ld, alpha + f, beta + f, gamma + f);
            }
        }
        param_grads(pl, b, sums);
    }
}

/* Chunk split: sums per chunk, added per sample in chunk order, then the input gradient per chunk. */
static void backward_chunks(const GroupNormPlan *pl, const BackwardArgs *b) {
    const size_t c_all = pl->c, count = pl->s * pl->cg;
    const size_t block_floats = b->silu ? silu_block_rows(c_all) * c_all : 0; /* per thread: the fused op's dy */
    const size_t partial_bytes = align64(pl->n_tasks * 2 * c_all * sizeof(double));
    const size_t sums_bytes = align64(pl->n * 2 * c_all * sizeof(double));
    const size_t coef_bytes = align64(pl->n * 6 * c_all * sizeof(float));
    char *scratch = scratch_get(partial_bytes + sums_bytes + coef_bytes +
                                (size_t)omp_get_max_threads() * block_floats * sizeof(float));
    double *partial = (double *)scratch;                           /* (tasks, 2, C): A, B of each chunk */
    double *sums = (double *)(scratch + partial_bytes);            /* (N, 2, C): A, B of each sample */
    float *coef = (float *)(scratch + partial_bytes + sums_bytes); /* (N, 6, C): mu, alpha, beta, gamma, ya, yb */
    float *blocks = (float *)(scratch + partial_bytes + sums_bytes + coef_bytes);
#pragma omp parallel if (pl->n_tasks > 1 && pl->n * pl->s * c_all >= GN_PARALLEL_ELEMS)
    {
        float *buf = blocks + (size_t)omp_get_thread_num() * block_floats;
#pragma omp for schedule(static)
        for (size_t n = 0; n < pl->n; n++) {
            float *mu = coef + n * 6 * c_all;
            centres(mu, b, pl, n, 0, c_all);
            if (b->silu) recompute_coefficients(mu + 4 * c_all, mu + 5 * c_all, mu, b, pl, n, 0, c_all);
        }
#pragma omp for schedule(static)
        for (size_t task = 0; task < pl->n_tasks; task++) {
            size_t r0, r1, n = chunk_rows_of(pl, task, &r0, &r1);
            const float *ya = coef + n * 6 * c_all + 4 * c_all;
            const ChunkSpan span = {n * pl->s + r0, r1 - r0, c_all, ya, ya + c_all, buf};
            double *a_sum = partial + task * 2 * c_all, *b_sum = a_sum + c_all;
            for (size_t c = 0; c < c_all; c++) a_sum[c] = 0, b_sum[c] = 0;
            chunk_sums(b, &span, a_sum, b_sum, coef + n * 6 * c_all);
        }
        /* The chunks of a sample add up in order, whichever thread computed them. */
#pragma omp for schedule(static)
        for (size_t n = 0; n < pl->n; n++) {
            double *sum_n = sums + n * 2 * c_all;
            for (size_t c = 0; c < 2 * c_all; c++) sum_n[c] = 0;
            for (size_t k = 0; k < pl->n_chunks; k++) {
                const double *part = partial + (n * pl->n_chunks + k) * 2 * c_all;
#pragma omp simd
                for (size_t c = 0; c < 2 * c_all; c++) sum_n[c] += part[c];
            }
        }
        if (b->grad.dx[0]) {
#pragma omp for schedule(static)
            for (size_t ng = 0; ng < pl->n * pl->g; ng++) {
                size_t n = ng / pl->g, c0 = ng % pl->g * pl->cg;
                float *alpha = coef + n * 6 * c_all + c_all + c0;
                group_grad_coefficients(alpha, alpha + c_all, alpha + 2 * c_all, sums + n * 2 * c_all + c0,
                                        sums + n * 2 * c_all + c_all + c0, b->w,
                                        b->shift ? b->shift + n * c_all : NULL, c0, pl->cg, b->mean.data[ng],
                                        b->rstd.data[ng], (double)count);
            }
#pragma omp for schedule(static)
            for (size_t task = 0; task < pl->n_tasks; task++) {
                size_t r0, r1, n = chunk_rows_of(pl, task, &r0, &r1);
                const float *alpha = coef + n * 6 * c_all + c_all, *ya = alpha + 3 * c_all;
                const ChunkSpan span = {n * pl->s + r0, r1 - r0, c_all, ya, ya + c_all, buf};
                chunk_input_grad(b, &span, alpha, alpha + c_all, alpha + 2 * c_all);
            }
        }
        param_grads(pl, b, sums);
    }
}

static void backward(Tensor dinp, Tensor dinp2, Tensor dweight, Tensor dbias, Tensor dout, Tensor inp, Tensor inp2,
                     Tensor shift, Tensor mean, Tensor rstd, Tensor weight, Tensor bias, int n_groups, bool silu,
                     const char *where) {
    Tensor part = inp;
    const Input in = input_of(inp, inp2, &inp, where); /* inp now has the whole shape */
    const GroupNormPlan pl = plan_of(inp, n_groups, where);
    size_t stats_shape[2] = {pl.n, pl.g}, channels[1] = {pl.c};
    expect_shift(shift, &pl, where);
    tensor_expect(dout, where, "dout", inp.ndim, inp.shape);
    if (!tensor_is_none(dinp)) tensor_expect(dinp, where, "dinp", part.ndim, part.shape);
    if (!tensor_is_none(inp2)) {
        CHECK(tensor_is_none(dinp) == tensor_is_none(dinp2), "%s: one of dinp and dinp2 is none", where);
        if (!tensor_is_none(dinp2)) tensor_expect(dinp2, where, "dinp2", inp2.ndim, inp2.shape);
    } else {
        CHECK(tensor_is_none(dinp2), "%s: dinp2 is given without inp2", where);
    }
    tensor_expect(mean, where, "mean", 2, stats_shape);
    tensor_expect(rstd, where, "rstd", 2, stats_shape);
    if (!tensor_is_none(weight)) tensor_expect(weight, where, "weight", 1, channels);
    if (!tensor_is_none(bias)) tensor_expect(bias, where, "bias", 1, channels);
    if (!tensor_is_none(dweight)) {
        CHECK(!tensor_is_none(weight), "%s: dweight is requested but weight is none", where);
        tensor_expect(dweight, where, "dweight", 1, channels);
    }
    if (!tensor_is_none(dbias)) tensor_expect(dbias, where, "dbias", 1, channels);
    if (tensor_is_none(dinp) && tensor_is_none(dweight) && tensor_is_none(dbias)) return;
    const InputGrad grad = {{dinp.data, dinp2.data}, {dinp.overwrite, dinp2.overwrite}};
    const BackwardArgs b = {dweight, dbias, dout, mean, rstd, in, grad, weight.data, bias.data, shift.data, silu};
    if (pl.slabs) backward_slabs(&pl, &b);
    else backward_chunks(&pl, &b);
}

void group_norm_backward(Tensor dinp, Tensor dweight, Tensor dbias, Tensor dout, Tensor inp, Tensor mean, Tensor rstd,
                         Tensor weight, int n_groups) {
    backward(dinp, tensor_none(), dweight, dbias, dout, inp, tensor_none(), tensor_none(), mean, rstd, weight,
             tensor_none(), n_groups, false, __func__);
}

void group_norm_silu_backward(Tensor dinp, Tensor dinp2, Tensor dweight, Tensor dbias, Tensor dout, Tensor inp,
                              Tensor inp2, Tensor shift, Tensor mean, Tensor rstd, Tensor weight, Tensor bias,
                              int n_groups) {
    backward(dinp, dinp2, dweight, dbias, dout, inp, inp2, shift, mean, rstd, weight, bias, n_groups, true, __func__);
}
