/* Multi-head attention, fast path: argument checks, cached scratch, the small pre-passes and the choice
 * of kernel implementation. The fused kernels themselves (online softmax, nothing of size (Lq, Lk)
 * stored) are in attention_kernels.c, which documents the algorithms; the formula and the buffer shapes
 * are in attention.h and attention_reference.c. In bf16 precision, shapes where attention_bf16_applies
 * run attention_bf16.c's kernels instead (bf16 products on AMX), which do their own pre-passes.
 *
 * Pre-pass of the backward, one read of its inputs: lse2 = lse * log2(e) and delta_i = dout_i . out_i per
 * head, (N, n_heads, Lq); for the lanes kernels also q * scale * log2(e). (The tile kernels transpose each
 * head's keys and values themselves, in cache: attention_kernels.c, HeadKeys.)
 * Scratch grows to the largest shape seen and is kept, so a warmed-up call allocates nothing. */
#include <math.h>
#include <omp.h>
#include <stdbool.h>

#include "core/alloc.h"
#include "core/check.h"
#include "ops/attention.h"
#include "ops/attention_internal.h"
#include "ops/precision.h"

/* ------------------------------------------------------------------------------------------------ */
/* Argument checks (shared with the reference path) */

static void attention_check_params(const char *where, size_t C, int n_heads, float scale) {
    CHECK(n_heads > 0, "%s: n_heads is %d, must be positive", where, n_heads);
    CHECK(C % (size_t)n_heads == 0, "%s: C = %zu channels is not divisible by n_heads = %d", where, C, n_heads);
    CHECK(isfinite(scale) && scale > 0, "%s: scale is %g, must be positive and finite", where, (double)scale);
}

AttentionShape attention_check_forward(const char *where, Tensor out, Tensor lse, Tensor q, Tensor k, Tensor v,
                                       int n_heads, float scale) {
    tensor_expect(q, where, "q", 3, NULL);
    tensor_expect(k, where, "k", 3, NULL);
    const size_t N = q.shape[0], Lq = q.shape[1], C = q.shape[2], Lk = k.shape[1];
    attention_check_params(where, C, n_heads, scale);
    tensor_expect(k, where, "k", 3, (size_t[]){N, Lk, C});
    tensor_expect(v, where, "v", 3, (size_t[]){N, Lk, C});
    tensor_expect(out, where, "out", 3, (size_t[]){N, Lq, C});
    tensor_expect(lse, where, "lse", 3, (size_t[]){N, (size_t)n_heads, Lq});
    return (AttentionShape){.N = N, .Lq = Lq, .Lk = Lk, .C = C, .n_heads = (size_t)n_heads, .D = C / (size_t)n_heads};
}

AttentionShape attention_check_backward(const char *where, Tensor dq, Tensor dk, Tensor dv, Tensor dout, Tensor q,
                                        Tensor k, Tensor v, Tensor out, Tensor lse, int n_heads, float scale) {
    AttentionShape s = attention_check_forward(where, out, lse, q, k, v, n_heads, scale);
    tensor_expect(dout, where, "dout", 3, (size_t[]){s.N, s.Lq, s.C});
    if (!tensor_is_none(dq)) tensor_expect(dq, where, "dq", 3, (size_t[]){s.N, s.Lq, s.C});
    if (!tensor_is_none(dk)) tensor_expect(dk, where, "dk", 3, (size_t[]){s.N, s.Lk, s.C});
    if (!tensor_is_none(dv)) tensor_expect(dv, where, "dv", 3, (size_t[]){s.N, s.Lk, s.C});
    return s;
}

/* ------------------------------------------------------------------------------------------------ */
/* Cached scratch */

/* Ops run from one thread at a time (ops.h), so file-level buffers are safe. */
static GrowBuffer thread_scratch, lse2_buffer, delta_buffer, q_scaled_buffer;
static AttentionTuning tuning;

void attention_set_tuning(AttentionTuning t) { tuning = t; }

static float *scratch_reserve(GrowBuffer *b, size_t n_floats) { return grow_buffer(b, n_floats * sizeof(float)); }

static AttentionArgs attention_args(AttentionShape s, float scale) {
    AttentionArgs a = {.shape = s, .scale = scale, .scratch_floats = attention_scratch_floats(s)};
    a.scratch = scratch_reserve(&thread_scratch, a.scratch_floats * (size_t)omp_get_max_threads());
    return a;
}

/* ------------------------------------------------------------------------------------------------ */
/* Pre-passes */

/* lse2 = lse * log2(e); delta[(n, h)][i] = sum_d dout[n][i][h*D + d] * out[n][i][h*D + d]; when
 * q_scaled is not NULL also q_scaled = q * scale * log2(e) (the lanes backward broadcasts every query row
 * once per key block). One pass over the rows. */
static void attention_backward_prepass(float *lse2, float *delta, float *q_scaled, const float *lse,
                                       const float *dout, const float *out, const float *q, float scale,
                                       AttentionShape s) {
    const size_t nH = s.n_heads, D = s.D, Lq = s.Lq, C = s.C;
    const float c = scale * ATTENTION_LOG2E;
#pragma omp parallel for schedule(static)
    for (size_t ni = 0; ni < s.N * Lq; ni++) {
        const size_t n = ni / Lq, i = ni % Lq;
        const float *dout_row = dout + ni * C, *out_row = out + ni * C;
        for (size_t h = 0; h < nH; h++) {
            float sum = 0;
            for (size_t d = 0; d < D; d++) sum = fmaf(dout_row[h * D + d], out_row[h * D + d], sum);
            delta[(n * nH + h) * Lq + i] = sum;
            lse2[(n * nH + h) * Lq + i] = lse[(n * nH + h) * Lq + i] * ATTENTION_LOG2E;
        }
        if (q_scaled)
            for (size_t x = 0; x < C; x++) q_scaled[ni * C + x] = q[ni * C + x] * c;
    }
}

/* ------------------------------------------------------------------------------------------------ */
/* Entry points */

static bool attention_uses_bf16(AttentionShape s) {
    if (ops_precision() != OPS_PRECISION_BF16 || tuning.bf16 == ATTENTION_BF16_NEVER) return false;
    return tuning.bf16 == ATTENTION_BF16_ALWAYS || attention_bf16_applies(s);
}

void attention_forward(Tensor out, Tensor lse, Tensor q, Tensor k, Tensor v, int n_heads, float scale) {
    AttentionShape s = attention_check_forward(__func__, out, lse, q, k, v, n_heads, scale);
    if (attention_uses_bf16(s)) {
        attention_forward_bf16(&(AttentionArgs){
            .shape = s, .scale = scale, .out = out.data, .lse = lse.data, .q = q.data, .k = k.data, .v = v.data});
        return;
    }
    AttentionArgs a = attention_args(s, scale);
    a.out = out.data, a.lse = lse.data, a.q = q.data, a.k = k.data, a.v = v.data;
#if defined(__AVX512F__)
    if (!tuning.portable) {
        attention_forward_fused_avx512(&a);
        return;
    }
#endif
    attention_forward_fused_portable(&a);
}

bool attention_reads_bf16(size_t N, size_t L, size_t C, int n_heads) {
    if (n_heads <= 0 || C % (size_t)n_heads != 0) return false;
    const size_t heads = (size_t)n_heads;
    return attention_uses_bf16((AttentionShape){.N = N, .Lq = L, .Lk = L, .C = C, .n_heads = heads, .D = C / heads});
}

/* The checks of attention_forward, q, k and v of out's shape (self-attention), and that the shape takes
 * the bf16 kernels. */
static AttentionShape check_bf16_qkv(const char *where, Tensor out, Tensor lse, const uint16_t *q, const uint16_t *k,
                                     const uint16_t *v, int n_heads, float scale) {
    CHECK(q && k && v, "%s: q, k or v is NULL", where);
    AttentionShape s = attention_check_forward(where, out, lse, out, out, out, n_heads, scale);
    CHECK(attention_uses_bf16(s), "%s: N %zu, L %zu, C %zu in %zu heads does not take the bf16 kernels (see "
          "attention_reads_bf16)", where, s.N, s.Lq, s.C, s.n_heads);
    return s;
}

void attention_forward_bf16_qkv(Tensor out, Tensor lse, const uint16_t *q, const uint16_t *k, const uint16_t *v,
                                int n_heads, float scale) {
    AttentionShape s = check_bf16_qkv(__func__, out, lse, q, k, v, n_heads, scale);
    attention_forward_bf16(&(AttentionArgs){
        .shape = s, .scale = scale, .out = out.data, .lse = lse.data, .q16 = q, .k16 = k, .v16 = v});
}

/* The bf16 kernels add into their gradients: those marked to be overwritten start from zero. */
static void zero_overwritten(Tensor dq, Tensor dk, Tensor dv) {
    const Tensor grads[3] = {dq, dk, dv};
    for (int i = 0; i < 3; i++)
        if (grads[i].overwrite) tensor_zero(grads[i]);
}

void attention_backward_bf16_qkv(Tensor dq, Tensor dk, Tensor dv, Tensor dout, const uint16_t *q, const uint16_t *k,
                                 const uint16_t *v, Tensor out, Tensor lse, int n_heads, float scale) {
    AttentionShape s = check_bf16_qkv(__func__, out, lse, q, k, v, n_heads, scale);
    attention_check_backward(__func__, dq, dk, dv, dout, out, out, out, out, lse, n_heads, scale);
    if (!dq.data && !dk.data && !dv.data) return;
    zero_overwritten(dq, dk, dv);
    attention_backward_bf16(&(AttentionArgs){.shape = s, .scale = scale, .out = out.data, .lse = lse.data, .q16 = q,
                                             .k16 = k, .v16 = v, .dq = dq.data, .dk = dk.data, .dv = dv.data,
                                             .dout = dout.data});
}

void attention_backward(Tensor dq, Tensor dk, Tensor dv, Tensor dout, Tensor q, Tensor k, Tensor v, Tensor out,
                        Tensor lse, int n_heads, float scale) {
    AttentionShape s = attention_check_backward(__func__, dq, dk, dv, dout, q, k, v, out, lse, n_heads, scale);
    if (!dq.data && !dk.data && !dv.data) return;
    if (attention_uses_bf16(s)) {
        zero_overwritten(dq, dk, dv);
        attention_backward_bf16(&(AttentionArgs){.shape = s, .scale = scale, .out = out.data, .lse = lse.data,
                                                 .q = q.data, .k = k.data, .v = v.data, .dq = dq.data, .dk = dk.data,
                                                 .dv = dv.data, .dout = dout.data});
        return;
    }
    AttentionArgs a = attention_args(s, scale);
    a.q = q.data, a.k = k.data, a.v = v.data, a.out = NULL, a.dout = dout.data;
    a.dq = dq.data, a.dk = dk.data, a.dv = dv.data;
    a.set_dq = dq.overwrite, a.set_dk = dk.overwrite, a.set_dv = dv.overwrite;
    float *lse2 = scratch_reserve(&lse2_buffer, s.N * s.n_heads * s.Lq);
    float *delta = scratch_reserve(&delta_buffer, s.N * s.n_heads * s.Lq);
    float *q_scaled = attention_uses_lanes(s.D) ? scratch_reserve(&q_scaled_buffer, s.N * s.Lq * s.C) : NULL;
    attention_backward_prepass(lse2, delta, q_scaled, lse.data, dout.data, out.data, q.data, scale, s);
    a.lse2 = lse2, a.delta = delta, a.q_scaled = q_scaled;
    /* One pass computes each score once rather than twice (5 of the 7 tile products), but parallelises
     * over (n, head) only; both give the same bits, so the choice may depend on the thread count. */
    const size_t heads = s.N * s.n_heads, threads = (size_t)omp_get_max_threads();
    a.one_pass = tuning.backward == ATTENTION_BACKWARD_ONE_PASS ||
                 (tuning.backward == ATTENTION_BACKWARD_AUTO && (heads % threads == 0 || heads >= 4 * threads));
    a.one_pass = a.one_pass && dq.data && (dk.data || dv.data);
#if defined(__AVX512F__)
    if (!tuning.portable) {
        attention_backward_fused_avx512(&a);
        return;
    }
#endif
    attention_backward_fused_portable(&a);
}
