/* What the attention files share and the ops API does not show: the argument checks both paths run, and
 * the interface between attention.c (checks, scratch, pre-passes, dispatch), attention_kernels.c (the
 * fused fp32 kernels, compiled once per vector implementation of ops/vec16.h) and attention_bf16.c (bf16
 * products on AMX, in bf16 precision). */
#ifndef DIFFUSE_ATTENTION_INTERNAL_H
#define DIFFUSE_ATTENTION_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/tensor.h"

typedef struct AttentionShape {
    size_t N, Lq, Lk, C, n_heads, D;
} AttentionShape;

/* CHECK every argument of the forward / backward against the others; return the sizes. `where` (the
 * op's name) starts each failure message. */
AttentionShape attention_check_forward(const char *where, Tensor out, Tensor lse, Tensor q, Tensor k, Tensor v,
                                       int n_heads, float scale);
AttentionShape attention_check_backward(const char *where, Tensor dq, Tensor dk, Tensor dv, Tensor dout, Tensor q,
                                        Tensor k, Tensor v, Tensor out, Tensor lse, int n_heads, float scale);

/* Choices the fast path makes by itself, which tests and benchmarks may force. The fused kernels give the
 * same bits whatever portable and backward say; bf16 changes the arithmetic (attention_bf16.c). */
typedef enum AttentionBackwardPlan {
    ATTENTION_BACKWARD_AUTO,     /* one pass per head when there are enough heads for the threads */
    ATTENTION_BACKWARD_ONE_PASS,
    ATTENTION_BACKWARD_TWO_PASS,
} AttentionBackwardPlan;

/* Which kernels run in bf16 precision (ops/precision.h); in fp32 precision always the fused ones. */
typedef enum AttentionBf16Plan {
    ATTENTION_BF16_AUTO,   /* the bf16 kernels where attention_bf16_applies, else the fused fp32 ones */
    ATTENTION_BF16_ALWAYS, /* the bf16 kernels for every shape (needs ops_bf16_supported) */
    ATTENTION_BF16_NEVER,  /* the fused fp32 kernels */
} AttentionBf16Plan;

typedef struct AttentionTuning {
    bool portable; /* the portable kernels even where the AVX-512 ones are compiled in */
    AttentionBackwardPlan backward;
    AttentionBf16Plan bf16;
} AttentionTuning;

/* Defaults: (AttentionTuning){0}. */
void attention_set_tuning(AttentionTuning tuning);

/* Block sizes of the fused kernels. Heads of ATTENTION_LANES_MAX_D channels or fewer (2, 4, 8) run the
 * lanes kernels: 16 queries (or keys) in the lanes of a vector, one key (query) at a time, blocks of
 * ATTENTION_LANES_BLOCK keys per online-softmax step. Other head sizes run the tile kernels on
 * ATTENTION_TILE_Q x ATTENTION_TILE_K blocks of the score matrix (the forward ATTENTION_TILE_Q x
 * ATTENTION_FORWARD_TILE_K). */
#define ATTENTION_LANES_BLOCK 64
#define ATTENTION_LOG2E 1.4426950408889634f
#define ATTENTION_LN2 0.6931471805599453
#define ATTENTION_TILE_Q 64
#define ATTENTION_TILE_K 64
#define ATTENTION_FORWARD_TILE_K 256

/* Head sizes with a lanes kernel. */
static inline bool attention_uses_lanes(size_t D) { return D == 2 || D == 4 || D == 8; }

typedef struct AttentionArgs {
    AttentionShape shape;
    float scale;
    /* forward: writes out and lse */
    float *out, *lse;
    const float *q, *k, *v;
    /* bf16 kernels: q, k, v already rounded to bf16, read in place of q, k, v when not NULL */
    const uint16_t *q16, *k16, *v16;
    /* backward: accumulates into dq, dk, dv (each may be NULL), or writes those whose set_ flag is true
     * (fused kernels only); reads dout, out and lse */
    float *dq, *dk, *dv;
    bool set_dq, set_dk, set_dv;
    const float *dout;
    /* backward pre-pass results, (N, n_heads, Lq): lse * log2(e) and D_i = dout_i . out_i per head;
     * lanes kernels: q * scale * log2(e), (N, Lq, C) */
    const float *lse2, *delta, *q_scaled;
    /* backward in one pass per head (dk, dv and dq together) rather than a dk, dv pass over key blocks
     * and a dq pass over query blocks; the same results either way */
    bool one_pass;
    /* per-thread scratch: thread t owns scratch + t * scratch_floats */
    float *scratch;
    size_t scratch_floats;
} AttentionArgs;

/* Floats of per-thread scratch the kernels need for these sizes. */
size_t attention_scratch_floats(AttentionShape s);

void attention_forward_fused_portable(const AttentionArgs *a);
void attention_backward_fused_portable(const AttentionArgs *a);
#if defined(__AVX512F__)
void attention_forward_fused_avx512(const AttentionArgs *a);
void attention_backward_fused_avx512(const AttentionArgs *a);
#endif

/* bf16 kernels (attention_bf16.c): whether bf16 precision runs them for this shape on this CPU (AMX, and
 * a shape where they measured faster than the fused kernels), and the kernels themselves. They read q, k,
 * v, scale and write out, lse (forward); read dout, q, k, v, out, lse and accumulate into dq, dk, dv
 * (backward); the other fields are not used. */
bool attention_bf16_applies(AttentionShape s);
void attention_forward_bf16(const AttentionArgs *a);
void attention_backward_bf16(const AttentionArgs *a);
/* Frees the cached oneDNN primitives and scratch buffers (rebuilt on the next call). */
void attention_bf16_cache_free(void);

#endif
