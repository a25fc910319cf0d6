/* Reference multi-head attention: the formula in plain loops, one query row at a time, in double, against
 * which the fused kernels (attention.c) are tested.
 *
 * Forward, for batch n, head h (channels h*D .. h*D+D-1), query i (Vaswani et al. 2017, eq. 1; PyTorch's
 * torch.nn.functional.scaled_dot_product_attention):
 *   s_ij = scale * q_i . k_j        p_ij = exp(s_ij - lse_i),  lse_i = log sum_j exp(s_ij)
 *   out_i = sum_j p_ij v_j
 * computed with the row maximum subtracted before exp. Backward, with dO = dout:
 *   dP_ij = dO_i . v_j    D_i = dO_i . out_i  (= sum_j p_ij dP_ij)    dS_ij = p_ij (dP_ij - D_i)
 *   dq_i += scale sum_j dS_ij k_j    dk_j += scale sum_i dS_ij q_i    dv_j += sum_i p_ij dO_i
 * Buffers: q, out, dq, dout (N, Lq, C); k, v, dk, dv (N, Lk, C); lse (N, n_heads, Lq).
 * Threads split the (n, h) pairs; each pair owns its channels of every output, so nothing is shared. */
#include <math.h>
#include <stdlib.h>

#include "core/alloc.h"
#include "core/check.h"
#include "ops/attention.h"
#include "ops/attention_internal.h"

/* Per-(n, h) double buffers: a row of scores and the dk, dv, dq accumulators. */
typedef struct ReferenceScratch {
    double *scores, *dk, *dv, *dq;
} ReferenceScratch;

static ReferenceScratch reference_scratch_alloc(size_t Lk, size_t D) {
    return (ReferenceScratch){
        .scores = xcalloc(Lk, sizeof(double)),
        .dk = xcalloc(Lk * D, sizeof(double)),
        .dv = xcalloc(Lk * D, sizeof(double)),
        .dq = xcalloc(D, sizeof(double)),
    };
}

static void reference_scratch_free(ReferenceScratch *s) {
    free(s->scores);
    free(s->dk);
    free(s->dv);
    free(s->dq);
}

/* s_j = scale * q_i . k_j for every key j of head (n, h). */
static void reference_scores(double *scores, const float *q_row, const float *k_head, size_t Lk, size_t C, size_t D,
                             float scale) {
    for (size_t j = 0; j < Lk; j++) {
        const float *k_row = k_head + j * C;
        double dot = 0;
        for (size_t d = 0; d < D; d++) dot += (double)q_row[d] * k_row[d];
        scores[j] = (double)scale * dot;
    }
}

void attention_forward_reference(Tensor out, Tensor lse, Tensor q, Tensor k, Tensor v, int n_heads, float scale) {
    AttentionShape s = attention_check_forward(__func__, out, lse, q, k, v, n_heads, scale);
    const size_t N = s.N, Lq = s.Lq, Lk = s.Lk, C = s.C, nH = s.n_heads, D = s.D;
#pragma omp parallel
    {
        ReferenceScratch scratch = reference_scratch_alloc(Lk, D);
        double *scores = scratch.scores, *o = scratch.dq;
#pragma omp for schedule(static)
        for (size_t nh = 0; nh < N * nH; nh++) {
            const size_t n = nh / nH, h = nh % nH;
            const float *k_head = k.data + n * Lk * C + h * D, *v_head = v.data + n * Lk * C + h * D;
            for (size_t i = 0; i < Lq; i++) {
                const float *q_row = q.data + (n * Lq + i) * C + h * D;
                reference_scores(scores, q_row, k_head, Lk, C, D, scale);
                double max = -INFINITY;
                for (size_t j = 0; j < Lk; j++) max = fmax(max, scores[j]);
                double sum = 0;
                for (size_t d = 0; d < D; d++) o[d] = 0;
                for (size_t j = 0; j < Lk; j++) {
                    double p = exp(scores[j] - max);
                    sum += p;
                    for (size_t d = 0; d < D; d++) o[d] += p * v_head[j * C + d];
                }
                float *out_row = out.data + (n * Lq + i) * C + h * D;
                for (size_t d = 0; d < D; d++) out_row[d] = (float)(o[d] / sum);
                lse.data[nh * Lq + i] = (float)(max + log(sum));
            }
        }
        reference_scratch_free(&scratch);
    }
}

void attention_backward_reference(Tensor dq, Tensor dk, Tensor dv, Tensor dout, Tensor q, Tensor k, Tensor v,
                                  Tensor out, Tensor lse, int n_heads, float scale) {
    AttentionShape s = attention_check_backward(__func__, dq, dk, dv, dout, q, k, v, out, lse, n_heads, scale);
    const size_t N = s.N, Lq = s.Lq, Lk = s.Lk, C = s.C, nH = s.n_heads, D = s.D;
#pragma omp parallel
    {
        ReferenceScratch scratch = reference_scratch_alloc(Lk, D);
#pragma omp for schedule(static)
        for (size_t nh = 0; nh < N * nH; nh++) {
            const size_t n = nh / nH, h = nh % nH;
            const float *k_head = k.data + n * Lk * C + h * D, *v_head = v.data + n * Lk * C + h * D;
            for (size_t x = 0; x < Lk * D; x++) scratch.dk[x] = scratch.dv[x] = 0;
            for (size_t i = 0; i < Lq; i++) {
                const size_t row = (n * Lq + i) * C + h * D;
                const float *q_row = q.data + row, *dout_row = dout.data + row, *out_row = out.data + row;
                /* The forward: p_ij = exp(s_ij - lse_i), out_i = sum_j p_ij v_j. */
                reference_scores(scratch.scores, q_row, k_head, Lk, C, D, scale);
                double delta = 0;
                for (size_t d = 0; d < D; d++) delta += (double)dout_row[d] * out_row[d];
                for (size_t d = 0; d < D; d++) scratch.dq[d] = 0;
                for (size_t j = 0; j < Lk; j++) {
                    const float *k_row = k_head + j * C, *v_row = v_head + j * C;
                    double p = exp(scratch.scores[j] - lse.data[nh * Lq + i]);
                    double dp = 0;
                    for (size_t d = 0; d < D; d++) dp += (double)dout_row[d] * v_row[d];
                    double ds = p * (dp - delta);
                    for (size_t d = 0; d < D; d++) {
                        scratch.dq[d] += ds * k_row[d];
                        scratch.dk[j * D + d] += ds * q_row[d];
                        scratch.dv[j * D + d] += p * dout_row[d];
                    }
                }
                if (dq.data)
                    for (size_t d = 0; d < D; d++) dq.data[row + d] += (float)(scale * scratch.dq[d]);
            }
            for (size_t j = 0; j < Lk; j++) {
                const size_t row = (n * Lk + j) * C + h * D;
                for (size_t d = 0; d < D; d++) {
                    if (dk.data) dk.data[row + d] += (float)(scale * scratch.dk[j * D + d]);
                    if (dv.data) dv.data[row + d] += (float)scratch.dv[j * D + d];
                }
            }
        }
        reference_scratch_free(&scratch);
    }
}
