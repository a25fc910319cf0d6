/* The fused attention kernels (flash-attention style: Dao et al. 2022, "FlashAttention", alg. 1 and 2),
 * compiled once per vector implementation of ops/vec16.h from one body, attention_kernels.inc.
 *
 * Nothing of size (Lq, Lk) is stored: the forward keeps, per query, a running maximum m, a running sum l
 * of exp(s - m) and the running output, rescaled when m grows (online softmax), and saves
 * lse = m + log(l); the backward recomputes every probability from q, k and lse (p = exp(s - lse)) and
 * uses D_i = dout_i . out_i. Scores are kept in base 2: q (or k) is multiplied by scale * log2(e) up front,
 * so every exponential is an exp2 (vec16.h) and lse converts back with ln 2.
 *
 * Two families of kernels work on channels-last (N, L, C) directly, head h being the strided channel
 * slice h*D .. h*D+D-1:
 *  - lanes kernels, heads of 2, 4 or 8 channels (diffusers' default attention_head_dim is 8). A score
 *    costs only 2D multiply-adds, so a GEMM formulation wastes most of each vector; instead 16 queries sit
 *    in the 16 lanes of a vector (their channels transposed into D registers) and each key row is
 *    broadcast channel by channel: one key costs D fma for the score, one exp2 and D fma for p v, all
 *    on full vectors, and the softmax bookkeeping (max, sum) stays per lane with no horizontal step.
 *    The backward runs two passes so that every output element is owned by one block: dk, dv with 16
 *    keys in the lanes looping over all queries, then dq with 16 queries in the lanes looping over all
 *    keys; scores are recomputed in each (about 1.4x the arithmetic of a single pass, but parallel over
 *    (n, head, block) and deterministic without atomics or per-thread partial sums).
 *  - tile kernels, any other head size (32, 64, a single head of 256 or 512 ...): blocks of
 *    ATTENTION_TILE_Q queries x ATTENTION_TILE_K keys as small GEMMs (a 4-row x 64-column register
 *    block, keys pre-transposed per head by attention.c), the same two-pass backward.
 * Work is split over (batch, head, block) units; a unit's arithmetic does not depend on which thread runs
 * it, so results are identical for any thread count. */
#include <math.h>
#include <omp.h>
#include <stdbool.h>

#include "ops/attention_internal.h"
#include "ops/vec16.h"

#define ATTENTION_LOG2E 1.4426950408889634f
#define ATTENTION_LN2 0.6931471805599453
#define ATTENTION_LANES_MAX_D 8
#define ATTENTION_INLINE VEC16_INLINE

size_t attention_scratch_floats(AttentionShape s) {
    const size_t tile = ATTENTION_TILE_Q > ATTENTION_TILE_K ? ATTENTION_TILE_Q : ATTENTION_TILE_K;
    const size_t lanes = 16 * ATTENTION_LANES_MAX_D + 16 * ATTENTION_LANES_BLOCK;
    const size_t tiles = 2 * ATTENTION_TILE_Q * ATTENTION_TILE_K + 2 * tile * s.D + 2 * ATTENTION_TILE_Q;
    /* Rounded to whole cache lines so that threads never share one. */
    return ((lanes > tiles ? lanes : tiles) + 15) / 16 * 16;
}

/* dst[x] = src[x * stride] for x < n, zero for n <= x < 16: a channel of n rows as one vector. */
static inline void attention_gather16(float *dst, const float *src, size_t stride, int n) {
    for (int x = 0; x < 16; x++) dst[x] = x < n ? src[x * stride] : 0.0f;
}

static inline void attention_scatter16(float *dst, size_t stride, const float *src, int n) {
    for (int x = 0; x < n; x++) dst[x * stride] = src[x];
}

static inline void attention_add_scatter16(float *dst, size_t stride, const float *src, int n) {
    for (int x = 0; x < n; x++) dst[x * stride] += src[x];
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
