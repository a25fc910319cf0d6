/* The fused attention kernels (flash-attention style: Dao et al. 2022, "FlashAttention", alg. 1 and 2),
 * compiled once per vector implementation of ops/vec16.h from one body, attention_kernels.inc.
 *
 * Nothing of size (Lq, Lk) is stored: the forward keeps, per query, a running maximum m, a running sum l
 * of exp(s - m) and the running output, rescaled when m grows (online softmax), and saves
 * lse = m + log(l); the backward recomputes every probability from q, k and lse (p = exp(s - lse)) and
 * uses D_i = dout_i . out_i. Scores are kept in base 2, multiplied by scale * log2(e) (folded into q by
 * the lanes kernels, applied to each score tile by the tile kernels), so every exponential is an exp2
 * (vec16.h) and lse converts back with ln 2.
 *
 * Two families of kernels work on channels-last (N, L, C) directly, head h being the strided channel
 * slice h*D .. h*D+D-1:
 *  - lanes kernels, heads of 2, 4 or 8 channels (diffusers' default attention_head_dim is 8). A score
 *    costs only 2D multiply-adds, so a GEMM formulation wastes most of each vector (PyTorch's per-head
 *    GEMMs run at a few percent of peak); instead 16 queries sit in the 16 lanes of a vector (their
 *    channels transposed into D registers) and each key row is broadcast channel by channel: one key
 *    costs D fma for the score, one exp2 and D fma for p v, all on full vectors, and the softmax
 *    bookkeeping (max, sum) stays per lane with no horizontal step. The backward puts 16 keys in the
 *    lanes and broadcasts each query: s, p, dp, ds, then dk += ds q and dv += p dO in registers; for dq,
 *    the ds of 16 queries are transposed in registers (a 16 x 16 tile) so that the queries sit in the
 *    lanes again and dq += ds k is broadcast key by key.
 *  - tile kernels, any other head size (32, 64, a single head of 256 or 512 ...): blocks of
 *    ATTENTION_TILE_Q queries x ATTENTION_TILE_K keys as small GEMMs (register blocks of 4 x 64 or
 *    8 x 32, keys and values transposed per head, HeadKeys) around the same online softmax.
 *    The forward takes ATTENTION_FORWARD_TILE_K keys at a time, so sequences of up to 256 tokens (the
 *    U-Nets' attention at 16x16 and below) need no rescaling at all: 64 x 196 tokens, one head of 32,
 *    3.6 -> 2.3 ms at 2 threads against 64-key tiles (the softmax bookkeeping per tile cost as much as
 *    the GEMMs at D = 32).
 * The backward runs either in one pass per (batch, head), over key blocks, summing the head's dq in
 * scratch (each score computed once), or in two passes, dk and dv over key blocks then dq over query
 * blocks (scores computed twice, but twice as many independent units for the threads). Every output
 * element sees the same sequence of operations either way, so both give the same bits; attention.c
 * picks one from the number of heads and threads. One pass measured 1.3x faster for heads of 8
 * (32x32x448 on 1 thread: 150 ms against 198 ms) and 1.4x for heads of 32 (112 ms against 160 ms).
 *
 * Measured against PyTorch 2.15 doing what diffusers' AttnProcessor2_0 does (F.scaled_dot_product_attention
 * on transposed views), forward + backward, 2 threads, alternating the two in one process on an idle
 * machine: 2x32x32x448 (56 heads of 8) 104 ms against 416 ms (4.0x); 2x64x64x224 4.2x, 2x16x16x672 4.0x,
 * 2x8x8x896 4.7x; a single head of 256 at 2x16x16 1.1x (PyTorch's GEMMs are efficient there).
 * Work is split over (batch, head, block) units; a unit's arithmetic does not depend on which thread runs
 * it, so results are identical for any thread count. */
#include <math.h>
#include <omp.h>
#include <stdbool.h>
#include <stdint.h>

#include "ops/attention_internal.h"
#include "ops/vec16.h"

#define ATTENTION_LANES_MAX_D 8
#define ATTENTION_INLINE VEC16_INLINE

/* Per-thread floats of the tile kernels for one block: probabilities and score gradients of a tile,
 * two D-wide accumulators, the running maximum and sum of the forward; whole cache lines. */
static size_t attention_tile_scratch_floats(size_t D) {
    const size_t tile = ATTENTION_TILE_Q > ATTENTION_TILE_K ? ATTENTION_TILE_Q : ATTENTION_TILE_K;
    const size_t backward = 2 * ATTENTION_TILE_Q * ATTENTION_TILE_K + 2 * tile * D + 2 * ATTENTION_TILE_Q;
    const size_t forward = ATTENTION_TILE_Q * ATTENTION_FORWARD_TILE_K + ATTENTION_TILE_Q * D + 2 * ATTENTION_TILE_Q;
    return ((backward > forward ? backward : forward) + 15) / 16 * 16;
}

/* Per-thread floats of the lanes kernels for one block: forward, a channel in lanes and the scores of a
 * key block; backward, keys and values transposed, two 16 x 16 tiles and a query row. */
#define ATTENTION_LANES_SCRATCH (16 * ATTENTION_LANES_MAX_D + 16 * ATTENTION_LANES_BLOCK)
_Static_assert(ATTENTION_LANES_SCRATCH >= 2 * 16 * ATTENTION_LANES_MAX_D + 2 * 256 + 16, "lanes scratch too small");

/* Row stride of the transposed keys and values (HeadKeys): Lk rounded up to whole 64-byte lines, so that
 * the tile GEMMs' vector loads of their rows never straddle two lines (the score GEMM of 64 queries x 196
 * keys, heads of 32: 5.7 -> 5.3 us at 1 thread). */
static inline size_t attention_kt_stride(size_t Lk) { return (Lk + 15) / 16 * 16; }

/* The one-pass backward also sums a whole head's dq; the tile kernels hold a head's keys and values
 * transposed (HeadKeys). */
static size_t attention_dq_head_floats(AttentionShape s) { return (s.Lq * s.D + 15) / 16 * 16; }

size_t attention_scratch_floats(AttentionShape s) {
    if (attention_uses_lanes(s.D)) return ATTENTION_LANES_SCRATCH + (s.Lq + 15) / 16 * 16 * s.D;
    return attention_tile_scratch_floats(s.D) + attention_dq_head_floats(s) + 2 * s.D * attention_kt_stride(s.Lk);
}

/* The keys and values of one head (n, h) transposed, kt[d][j] = k[n][j][h D + d] in rows
 * attention_kt_stride(Lk) apart (so that the score GEMMs read keys as contiguous rows), in a thread's own
 * scratch. Each thread transposes the heads of the blocks it runs as it meets them; a static split keeps
 * a head's blocks together, so that is about once per head (per pass of a two-pass backward), into memory
 * that stays in cache for those blocks. Against one pass over every head before the kernels, fashion-mnist
 * at batch 64 (attention 64x14x14x32 and 64x7x7x64): training step 152.9 -> 148.9 ms, sampling step
 * 45.6 -> 44.7 ms, paired medians of 6. */
typedef struct HeadKeys {
    float *kt, *vt;
    size_t nh; /* the head they hold, SIZE_MAX for none */
} HeadKeys;

/* A thread's HeadKeys in its scratch (none for the lanes kernels, whose scratch has no room for them). */
static HeadKeys head_keys_in(float *scratch, AttentionShape s) {
    if (attention_uses_lanes(s.D)) return (HeadKeys){.nh = SIZE_MAX};
    float *kt = scratch + attention_tile_scratch_floats(s.D) + attention_dq_head_floats(s);
    return (HeadKeys){.kt = kt, .vt = kt + s.D * attention_kt_stride(s.Lk), .nh = SIZE_MAX};
}

/* dst[x] = src[x * stride] for x < n, zero for n <= x < 16: a channel of n rows as one vector. */
static inline void attention_gather16(float *dst, const float *src, size_t stride, int n) {
    for (int x = 0; x < 16; x++) dst[x] = x < n ? src[x * stride] : 0.0f;
}

static inline void attention_scatter16(float *dst, size_t stride, const float *src, int n) {
    for (int x = 0; x < n; x++) dst[x * stride] = src[x];
}

/* dst[x * stride] = src[x] (set) or += src[x], for x < n: a gradient written or accumulated. */
static inline void attention_put_scatter16(bool set, float *dst, size_t stride, const float *src, int n) {
    if (set)
        attention_scatter16(dst, stride, src, n);
    else
        for (int x = 0; x < n; x++) dst[x * stride] += src[x];
}

/* dst[d] = c src[d] (set) or += c src[d], for d < D. */
static inline void attention_put_row(bool set, float *restrict dst, const float *restrict src, float c, size_t D) {
    if (set) {
#pragma omp simd
        for (size_t d = 0; d < D; d++) dst[d] = c * src[d];
    } else {
#pragma omp simd
        for (size_t d = 0; d < D; d++) dst[d] += c * src[d];
    }
}

/* lse = ln(2^m l) = (m + log2 l) ln 2, m and l in base 2. */
static inline void attention_store_lse(float *lse, const float *m, const float *l, int n) {
    for (int x = 0; x < n; x++) lse[x] = (float)(((double)m[x] + log2((double)l[x])) * ATTENTION_LN2);
}

#define VEC VecP
#define V(op) vecp_##op
#define KERNEL(name) name##_portable
#include "ops/attention_kernels.inc"
#undef VEC
#undef V
#undef KERNEL

#if defined(VEC16_HAVE_AVX512)
#define VEC VecA
#define V(op) veca_##op
#define KERNEL(name) name##_avx512
#include "ops/attention_kernels.inc"
#undef VEC
#undef V
#undef KERNEL
#endif
