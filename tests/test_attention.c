/* Attention: the kernels' exp2 against libm, finite-difference gradients of the reference path, both
 * paths against PyTorch fixtures (tools/torchref/fixtures_attention.py: diffusers' AttnProcessor2_0 on
 * F.scaled_dot_product_attention), the fused path against the reference at the U-Net's shapes (guard
 * words, NaN checks, accumulation, thread-count independence, portable kernels bit for bit equal to the
 * AVX-512 ones), the bf16 kernels against the reference on bf16-rounded inputs and which kernels bf16
 * precision runs, and CHECK failures on bad arguments. */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/half.h"
#include "core/tensor.h"
#include "core/timer.h"
#include "core/threads.h"
#include "harness.h"
#include "ops/attention.h"
#include "ops/attention_internal.h"
#include "ops/precision.h"
#include "ops/vec16.h"

typedef void (*AttentionForward)(Tensor out, Tensor lse, Tensor q, Tensor k, Tensor v, int n_heads, float scale);
typedef void (*AttentionBackward)(Tensor dq, Tensor dk, Tensor dv, Tensor dout, Tensor q, Tensor k, Tensor v,
                                  Tensor out, Tensor lse, int n_heads, float scale);

/* ------------------------------------------------------------------------------------------------ */
/* exp2 */

static void test_exp2_accuracy(void) {
    /* Every result in the normal range within 1.5e-7 relative (the polynomial's own error is 8e-8, the
     * rest is the final rounding); results under it are zero, never subnormal (VEC16_EXP2_MIN). */
    double worst = 0, worst_x = 0;
    bool flushed = true;
    for (double xd = -149.5; xd <= 127.9; xd += 1.0 / 4099) {
        const float x = (float)xd, got = vec16_exp2(x);
        const double want = exp2((double)x);
        if (want >= FLT_MIN) {
            const double rel = fabs(got - want) / want;
            if (rel > worst) worst = rel, worst_x = x;
        } else {
            flushed = flushed && got == 0;
        }
    }
    EXPECT(worst <= 1.5e-7, "exp2: worst relative error %.3g at x = %.9g", worst, worst_x);
    EXPECT(flushed, "exp2: a result under the smallest normal float is not zero");
    EXPECT(vec16_exp2(-126) == FLT_MIN && vec16_exp2(nextafterf(-126, 0)) > FLT_MIN,
           "exp2 at the bottom of the normal range: %g", (double)vec16_exp2(-126));
    /* Through base 2, exp(x) = exp2(x log2 e) also carries the rounding of x log2 e (and of log2 e):
     * up to |x| log2(e) 7.3e-8 ln 2 relative. */
    double worst_e = 0;
    for (double xd = -87.0; xd <= 88.0; xd += 1.0 / 1021) {
        const float x = (float)xd;
        const double rel = fabs(vec16_exp2(x * 1.4426950408889634f) - exp((double)x)) / exp((double)x);
        worst_e = fmax(worst_e, rel / (1.5e-7 + 8e-8 * fabs(x)));
    }
    EXPECT(worst_e <= 1, "exp via exp2: error %.3g times the bound 1.5e-7 + 8e-8 |x|", worst_e);
    EXPECT(vec16_exp2(0) == 1 && vec16_exp2(-3) == 0.125f && vec16_exp2(10) == 1024, "exp2 of integers not exact");
    EXPECT(vec16_exp2(-INFINITY) == 0 && vec16_exp2(-1000) == 0 && isinf(vec16_exp2(INFINITY)) &&
               isinf(vec16_exp2(1000)) && isnan(vec16_exp2(NAN)),
           "exp2 special values: %g %g %g %g %g", (double)vec16_exp2(-INFINITY), (double)vec16_exp2(-1000),
           (double)vec16_exp2(INFINITY), (double)vec16_exp2(1000), (double)vec16_exp2(NAN));
}

#if defined(VEC16_HAVE_AVX512)
static bool same_bits(float a, float b) { return memcmp(&a, &b, sizeof a) == 0; }
#endif

static void test_vec16_portable_matches_avx512(void) {
#if defined(VEC16_HAVE_AVX512)
    float x[16], a[16], t_avx[256], t_portable[256];
    size_t exp_mismatches = 0, reduce_mismatches = 0;
    for (int block = 0; block < 40000; block++) {
        for (int i = 0; i < 16; i++) x[i] = -160.0f + (float)(block * 16 + i) * (300.0f / (40000 * 16));
        if (block == 0) x[0] = -INFINITY, x[1] = INFINITY, x[2] = NAN, x[3] = -0.0f, x[4] = 0.5f, x[5] = -0.5f;
        VecP p = vecp_exp2(vecp_load(x));
        veca_store(a, veca_exp2(veca_load(x)));
        for (int i = 0; i < 16; i++) exp_mismatches += !same_bits(a[i], p.f[i]) && !(isnan(a[i]) && isnan(p.f[i]));
        if (block > 0)
            reduce_mismatches += !same_bits(veca_hsum(veca_load(x)), vecp_hsum(vecp_load(x))) +
                                 !same_bits(veca_hmax(veca_load(x)), vecp_hmax(vecp_load(x)));
    }
    EXPECT(exp_mismatches == 0, "exp2: %zu results of the AVX-512 and portable versions differ", exp_mismatches);
    EXPECT(reduce_mismatches == 0, "hsum, hmax: %zu results of the AVX-512 and portable versions differ",
           reduce_mismatches);
    float src[256];
    for (int i = 0; i < 256; i++) src[i] = (float)i;
    veca_transpose16(t_avx, src);
    vecp_transpose16(t_portable, src);
    bool transposed = true;
    for (int i = 0; i < 16; i++)
        for (int j = 0; j < 16; j++) transposed = transposed && t_avx[16 * j + i] == src[16 * i + j];
    EXPECT(transposed && memcmp(t_avx, t_portable, sizeof t_avx) == 0, "transpose16 wrong");
#else
    printf("  (no AVX-512 in this build: the portable kernels are the only ones)\n");
#endif
}

/* ------------------------------------------------------------------------------------------------ */
/* Problems and runs */

typedef struct AttentionProblem {
    size_t N, Lq, Lk, C;
    int heads;
    float scale;
    float *q, *k, *v, *dout;
} AttentionProblem;

static AttentionProblem problem_random(size_t N, size_t Lq, size_t Lk, size_t C, int heads, uint64_t seed) {
    AttentionProblem p = {.N = N, .Lq = Lq, .Lk = Lk, .C = C, .heads = heads,
                          .scale = 1.0f / sqrtf((float)(C / (size_t)heads))};
    p.q = xmalloc(N * Lq * C * sizeof(float)), p.dout = xmalloc(N * Lq * C * sizeof(float));
    p.k = xmalloc(N * Lk * C * sizeof(float)), p.v = xmalloc(N * Lk * C * sizeof(float));
    /* Scores of a few units, as after a GroupNorm and the projections: peaked but not saturated rows. */
    fill_normal(p.q, N * Lq * C, seed), fill_normal(p.k, N * Lk * C, seed + 1);
    fill_normal(p.v, N * Lk * C, seed + 2), fill_normal(p.dout, N * Lq * C, seed + 3);
    for (size_t x = 0; x < N * Lq * C; x++) p.q[x] *= 1.5f;
    return p;
}

static void problem_free(AttentionProblem *p) { free(p->q), free(p->k), free(p->v), free(p->dout); }

typedef struct AttentionResult {
    float *out, *lse, *dq, *dk, *dv;
} AttentionResult;

static Tensor q_shaped(const AttentionProblem *p, float *x) { return tensor_3d(x, p->N, p->Lq, p->C); }
static Tensor k_shaped(const AttentionProblem *p, float *x) { return tensor_3d(x, p->N, p->Lk, p->C); }
static Tensor lse_shaped(const AttentionProblem *p, float *x) {
    return tensor_3d(x, p->N, (size_t)p->heads, p->Lq);
}

/* Forward (out prefilled with NaN: it must be overwritten) and n_backward backward calls accumulating
 * into zeroed gradients; every output guarded. */
static AttentionResult attention_run(const AttentionProblem *p, AttentionForward forward, AttentionBackward backward,
                                     int n_backward) {
    AttentionResult r = {guarded_alloc(p->N * p->Lq * p->C), guarded_alloc(p->N * (size_t)p->heads * p->Lq),
                         guarded_alloc(p->N * p->Lq * p->C), guarded_alloc(p->N * p->Lk * p->C),
                         guarded_alloc(p->N * p->Lk * p->C)};
    for (size_t x = 0; x < p->N * p->Lq * p->C; x++) r.out[x] = NAN;
    for (size_t x = 0; x < p->N * (size_t)p->heads * p->Lq; x++) r.lse[x] = NAN;
    forward(q_shaped(p, r.out), lse_shaped(p, r.lse), q_shaped(p, p->q), k_shaped(p, p->k), k_shaped(p, p->v),
            p->heads, p->scale);
    for (int b = 0; b < n_backward; b++)
        backward(q_shaped(p, r.dq), k_shaped(p, r.dk), k_shaped(p, r.dv), q_shaped(p, p->dout), q_shaped(p, p->q),
                 k_shaped(p, p->k), k_shaped(p, p->v), q_shaped(p, r.out), lse_shaped(p, r.lse), p->heads, p->scale);
    return r;
}

static void result_free(AttentionResult *r) {
    guarded_free(r->out), guarded_free(r->lse), guarded_free(r->dq), guarded_free(r->dk), guarded_free(r->dv);
}

static void result_check_guards(const char *what, const AttentionResult *r) {
    char name[160];
    const char *names[5] = {"out", "lse", "dq", "dk", "dv"};
    float *bufs[5] = {r->out, r->lse, r->dq, r->dk, r->dv};
    for (int t = 0; t < 5; t++) {
        snprintf(name, sizeof name, "%s: %s", what, names[t]);
        guarded_check(name, bufs[t]);
    }
}

static bool same_floats(const float *a, const float *b, size_t n) { return memcmp(a, b, n * sizeof(float)) == 0; }

static bool results_identical(const AttentionProblem *p, const AttentionResult *a, const AttentionResult *b) {
    const size_t nq = p->N * p->Lq * p->C, nk = p->N * p->Lk * p->C;
    return same_floats(a->out, b->out, nq) && same_floats(a->lse, b->lse, p->N * (size_t)p->heads * p->Lq) &&
           same_floats(a->dq, b->dq, nq) && same_floats(a->dk, b->dk, nk) && same_floats(a->dv, b->dv, nk);
}

static void fast_backward_one_pass(Tensor dq, Tensor dk, Tensor dv, Tensor dout, Tensor q, Tensor k, Tensor v,
                                   Tensor out, Tensor lse, int n_heads, float scale) {
    attention_set_tuning((AttentionTuning){.backward = ATTENTION_BACKWARD_ONE_PASS});
    attention_backward(dq, dk, dv, dout, q, k, v, out, lse, n_heads, scale);
    attention_set_tuning((AttentionTuning){0});
}

static void fast_backward_two_pass(Tensor dq, Tensor dk, Tensor dv, Tensor dout, Tensor q, Tensor k, Tensor v,
                                   Tensor out, Tensor lse, int n_heads, float scale) {
    attention_set_tuning((AttentionTuning){.backward = ATTENTION_BACKWARD_TWO_PASS});
    attention_backward(dq, dk, dv, dout, q, k, v, out, lse, n_heads, scale);
    attention_set_tuning((AttentionTuning){0});
}

static void fast_forward_portable(Tensor out, Tensor lse, Tensor q, Tensor k, Tensor v, int n_heads, float scale) {
    attention_set_tuning((AttentionTuning){.portable = true});
    attention_forward(out, lse, q, k, v, n_heads, scale);
    attention_set_tuning((AttentionTuning){0});
}

static void fast_backward_portable(Tensor dq, Tensor dk, Tensor dv, Tensor dout, Tensor q, Tensor k, Tensor v,
                                   Tensor out, Tensor lse, int n_heads, float scale) {
    attention_set_tuning((AttentionTuning){.portable = true});
    attention_backward(dq, dk, dv, dout, q, k, v, out, lse, n_heads, scale);
    attention_set_tuning((AttentionTuning){0});
}

/* ------------------------------------------------------------------------------------------------ */
/* Finite differences of the reference path */

typedef struct AttentionGradcheck {
    AttentionProblem p;
    float *out, *lse;
} AttentionGradcheck;

static double attention_gradcheck_loss(void *ctx) {
    AttentionGradcheck *g = ctx;
    const AttentionProblem *p = &g->p;
    attention_forward_reference(q_shaped(p, g->out), lse_shaped(p, g->lse), q_shaped(p, p->q), k_shaped(p, p->k),
                                k_shaped(p, p->v), p->heads, p->scale);
    return dot_double(g->out, p->dout, p->N * p->Lq * p->C);
}

static void test_attention_reference_gradcheck(void) {
    /* Heads of 2, 4 and 8 channels and a single head; Lq != Lk. */
    const struct { size_t N, Lq, Lk, C; int heads; } cases[] = {
        {1, 3, 5, 4, 2}, {2, 4, 3, 16, 4}, {1, 3, 4, 16, 2}, {1, 4, 3, 5, 1}};
    int saved_threads = threads_get();
    threads_set(1);
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        AttentionGradcheck g = {.p = problem_random(cases[c].N, cases[c].Lq, cases[c].Lk, cases[c].C, cases[c].heads,
                                                    100 + 10 * c)};
        const AttentionProblem *p = &g.p;
        g.out = xmalloc(p->N * p->Lq * p->C * sizeof(float));
        g.lse = xmalloc(p->N * (size_t)p->heads * p->Lq * sizeof(float));
        AttentionResult r = attention_run(p, attention_forward_reference, attention_backward_reference, 1);
        char what[96];
        /* eps 1e-2: truncation error ~eps^2 |f'''| ~1e-4, rounding of the float loss ~1e-7 / eps. */
        snprintf(what, sizeof what, "case %zu dq", c);
        gradcheck(what, attention_gradcheck_loss, &g, p->q, r.dq, p->N * p->Lq * p->C, 200, 1e-2, 1e-3, 1e-2);
        snprintf(what, sizeof what, "case %zu dk", c);
        gradcheck(what, attention_gradcheck_loss, &g, p->k, r.dk, p->N * p->Lk * p->C, 200, 1e-2, 1e-3, 1e-2);
        snprintf(what, sizeof what, "case %zu dv", c);
        gradcheck(what, attention_gradcheck_loss, &g, p->v, r.dv, p->N * p->Lk * p->C, 200, 1e-2, 1e-3, 1e-2);
        result_free(&r);
        free(g.out), free(g.lse);
        problem_free(&g.p);
    }
    threads_set(saved_threads);
}

/* ------------------------------------------------------------------------------------------------ */
/* PyTorch fixtures */

typedef struct AttentionCase {
    const char *name;
    size_t N, Lq, Lk, C;
    int heads;
} AttentionCase;

static const AttentionCase ATTENTION_CASES[] = {
    {"d8", 2, 20, 20, 32, 4},          {"d4", 2, 17, 17, 16, 4},         {"d2_cross", 1, 9, 13, 6, 3},
    {"single24", 2, 16, 16, 24, 1},    {"d32_tiles", 1, 70, 90, 64, 2},
};

static void test_attention_matches_pytorch(void) {
    Fixture *fx = fixture_open("attention");
    const char *paths[3] = {"reference", "fast", "fast portable"};
    const AttentionForward forwards[3] = {attention_forward_reference, attention_forward, fast_forward_portable};
    const AttentionBackward backwards[3] = {attention_backward_reference, attention_backward, fast_backward_portable};
    for (size_t c = 0; c < sizeof ATTENTION_CASES / sizeof ATTENTION_CASES[0]; c++) {
        const AttentionCase *ac = &ATTENTION_CASES[c];
        AttentionProblem p = {.N = ac->N, .Lq = ac->Lq, .Lk = ac->Lk, .C = ac->C, .heads = ac->heads};
        const size_t nq = p.N * p.Lq * p.C, nk = p.N * p.Lk * p.C, nl = p.N * (size_t)p.heads * p.Lq;
        char key[64], what[128];
#define FIXTURE(field, n) (snprintf(key, sizeof key, "%s.%s", ac->name, field), fixture_floats(fx, key, n))
        p.q = FIXTURE("q", nq), p.k = FIXTURE("k", nk), p.v = FIXTURE("v", nk), p.dout = FIXTURE("dout", nq);
        float *want[5] = {FIXTURE("out", nq), FIXTURE("lse", nl), FIXTURE("dq", nq), FIXTURE("dk", nk),
                          FIXTURE("dv", nk)};
        snprintf(key, sizeof key, "%s.scale", ac->name);
        p.scale = (float)fixture_scalar(fx, key);
#undef FIXTURE
        const size_t sizes[5] = {nq, nl, nq, nk, nk};
        const char *names[5] = {"out", "lse", "dq", "dk", "dv"};
        for (int path = 0; path < 3; path++) {
            AttentionResult r = attention_run(&p, forwards[path], backwards[path], 1);
            float *got[5] = {r.out, r.lse, r.dq, r.dk, r.dv};
            for (int t = 0; t < 5; t++) {
                snprintf(what, sizeof what, "%s %s %s", paths[path], ac->name, names[t]);
                /* PyTorch's SDPA on the CPU computes in float with its own blocking: a few ulp apart. */
                expect_close(what, got[t], want[t], sizes[t], 2e-6, 2e-5);
            }
            snprintf(what, sizeof what, "%s %s", paths[path], ac->name);
            result_check_guards(what, &r);
            result_free(&r);
        }
        for (int t = 0; t < 5; t++) free(want[t]);
        problem_free(&p);
    }
    fixture_close(fx);
}

/* ------------------------------------------------------------------------------------------------ */
/* Fused path against the reference at realistic shapes */

/* The channels of heads `heads` (and batches n0 .. N-1) of x (N, L, C) as a new (N - n0, L, count * D). */
static float *heads_slice(const float *x, size_t N, size_t L, size_t C, size_t D, const int *heads, int count,
                          size_t n0) {
    float *s = xmalloc((N - n0) * L * (size_t)count * D * sizeof(float));
    for (size_t n = n0; n < N; n++)
        for (size_t l = 0; l < L; l++)
            for (int h = 0; h < count; h++)
                memcpy(s + (((n - n0) * L + l) * (size_t)count + (size_t)h) * D, x + (n * L + l) * C + (size_t)heads[h] * D,
                       D * sizeof(float));
    return s;
}

/* Same for lse (N, nH, L) -> (N - n0, count, L). */
static float *lse_slice(const float *lse, size_t N, size_t nH, size_t L, const int *heads, int count, size_t n0) {
    float *s = xmalloc((N - n0) * (size_t)count * L * sizeof(float));
    for (size_t n = n0; n < N; n++)
        for (int h = 0; h < count; h++)
            memcpy(s + ((n - n0) * (size_t)count + (size_t)h) * L, lse + (n * nH + (size_t)heads[h]) * L, L * sizeof(float));
    return s;
}

/* The part of problem p (heads of D channels) the reference checks: heads 0, 1, ... and the last,
 * n_check_heads in all (0: every head), of batches n0 .. N-1, as a problem of its own. */
typedef struct CheckedSlice {
    AttentionProblem sub;
    int *heads, count;
    size_t n0, D;
} CheckedSlice;

static CheckedSlice checked_slice(const AttentionProblem *p, size_t D, int n_check_heads, size_t n0) {
    CheckedSlice c = {.heads = xmalloc((size_t)p->heads * sizeof(int)), .n0 = n0, .D = D};
    if (n_check_heads == 0 || n_check_heads >= p->heads) {
        for (int h = 0; h < p->heads; h++) c.heads[c.count++] = h;
    } else {
        for (int h = 0; h < n_check_heads - 1; h++) c.heads[c.count++] = h;
        c.heads[c.count++] = p->heads - 1;
    }
    c.sub = (AttentionProblem){.N = p->N - n0, .Lq = p->Lq, .Lk = p->Lk, .C = (size_t)c.count * D,
                               .heads = c.count, .scale = p->scale};
    c.sub.q = heads_slice(p->q, p->N, p->Lq, p->C, D, c.heads, c.count, n0);
    c.sub.k = heads_slice(p->k, p->N, p->Lk, p->C, D, c.heads, c.count, n0);
    c.sub.v = heads_slice(p->v, p->N, p->Lk, p->C, D, c.heads, c.count, n0);
    c.sub.dout = heads_slice(p->dout, p->N, p->Lq, p->C, D, c.heads, c.count, n0);
    return c;
}

/* A result of the whole problem p cut to the slice: out, lse, dq, dk, dv (each freed by the caller). */
static void result_slices(float *got[5], const AttentionResult *r, const AttentionProblem *p, const CheckedSlice *c) {
    got[0] = heads_slice(r->out, p->N, p->Lq, p->C, c->D, c->heads, c->count, c->n0);
    got[1] = lse_slice(r->lse, p->N, (size_t)p->heads, p->Lq, c->heads, c->count, c->n0);
    got[2] = heads_slice(r->dq, p->N, p->Lq, p->C, c->D, c->heads, c->count, c->n0);
    got[3] = heads_slice(r->dk, p->N, p->Lk, p->C, c->D, c->heads, c->count, c->n0);
    got[4] = heads_slice(r->dv, p->N, p->Lk, p->C, c->D, c->heads, c->count, c->n0);
}

static void checked_slice_free(CheckedSlice *c) {
    free(c->heads);
    problem_free(&c->sub);
}

typedef struct RealisticShape {
    const char *name;
    size_t N, Lq, Lk, C;
    int heads;
    size_t check_from_batch; /* the reference checks batches check_from_batch .. N-1 */
    int n_check_heads;       /* and heads 0, 1, ..., and the last, n_check_heads in all (0: every head) */
    bool thread_count_check; /* also run on 1 thread and compare bit for bit */
    bool portable_check;     /* also run the portable kernels, and the backward in one and in two passes,
                                and compare bit for bit */
} RealisticShape;

static void check_fast_vs_reference(const RealisticShape *s) {
    AttentionProblem p = problem_random(s->N, s->Lq, s->Lk, s->C, s->heads, 7);
    const size_t D = s->C / (size_t)s->heads, nq = p.N * p.Lq * p.C, nk = p.N * p.Lk * p.C;
    char what[160];
    AttentionResult fast = attention_run(&p, attention_forward, attention_backward, 1);
    snprintf(what, sizeof what, "%s", s->name);
    result_check_guards(what, &fast);
    const char *names[5] = {"out", "lse", "dq", "dk", "dv"};
    float *fasts[5] = {fast.out, fast.lse, fast.dq, fast.dk, fast.dv};
    const size_t sizes[5] = {nq, p.N * (size_t)p.heads * p.Lq, nq, nk, nk};
    for (int t = 0; t < 5; t++) {
        snprintf(what, sizeof what, "%s %s", s->name, names[t]);
        expect_all_finite(what, fasts[t], sizes[t]);
    }
    /* A second backward adds the same values again: 0 + g + g = 2g exactly. */
    float *once[3];
    for (int t = 0; t < 3; t++) {
        once[t] = xmalloc(sizes[t + 2] * sizeof(float));
        memcpy(once[t], fasts[t + 2], sizes[t + 2] * sizeof(float));
    }
    attention_backward(q_shaped(&p, fast.dq), k_shaped(&p, fast.dk), k_shaped(&p, fast.dv), q_shaped(&p, p.dout),
                       q_shaped(&p, p.q), k_shaped(&p, p.k), k_shaped(&p, p.v), q_shaped(&p, fast.out),
                       lse_shaped(&p, fast.lse), p.heads, p.scale);
    for (int t = 0; t < 3; t++) {
        bool doubled = true;
        for (size_t x = 0; x < sizes[t + 2] && doubled; x++) doubled = fasts[t + 2][x] == 2 * once[t][x];
        EXPECT(doubled, "%s %s: backward twice is not exactly twice backward once", s->name, names[t + 2]);
        memcpy(fasts[t + 2], once[t], sizes[t + 2] * sizeof(float));
        free(once[t]);
    }
    snprintf(what, sizeof what, "%s, backward twice", s->name);
    result_check_guards(what, &fast);

    /* The reference on a slice of heads and batches (heads are independent). */
    CheckedSlice slice = checked_slice(&p, D, s->n_check_heads, s->check_from_batch);
    AttentionProblem sub = slice.sub; /* slice owns its buffers */
    const int count = slice.count;
    const size_t n0 = slice.n0;
    AttentionResult ref = attention_run(&sub, attention_forward_reference, attention_backward_reference, 1);
    float *got[5];
    result_slices(got, &fast, &p, &slice);
    float *want[5] = {ref.out, ref.lse, ref.dq, ref.dk, ref.dv};
    const size_t sub_sizes[5] = {sub.N * sub.Lq * sub.C, sub.N * (size_t)count * sub.Lq, sub.N * sub.Lq * sub.C,
                                 sub.N * sub.Lk * sub.C, sub.N * sub.Lk * sub.C};
    for (int t = 0; t < 5; t++) {
        snprintf(what, sizeof what, "%s %s (%d heads from batch %zu)", s->name, names[t], count, n0);
        /* Float against double: sums over up to 4096 keys (or queries for dk, dv). */
        if (t == 1)
            expect_close(what, got[t], want[t], sub_sizes[t], 1e-5, 1e-6);
        else
            expect_close_scaled(what, got[t], want[t], sub_sizes[t], 1e-5);
        free(got[t]);
    }

    if (s->thread_count_check && threads_get() > 1) {
        int saved = threads_get();
        threads_set(1);
        AttentionResult one = attention_run(&p, attention_forward, attention_backward, 1);
        threads_set(saved);
        EXPECT(results_identical(&p, &fast, &one), "%s: results on 1 thread differ from %d threads", s->name, saved);
        result_free(&one);
    }
    if (s->portable_check) {
        AttentionResult portable = attention_run(&p, fast_forward_portable, fast_backward_portable, 1);
        snprintf(what, sizeof what, "%s portable", s->name);
        result_check_guards(what, &portable);
        EXPECT(results_identical(&p, &fast, &portable), "%s: the portable kernels differ from the default ones",
               s->name);
        result_free(&portable);
        AttentionResult one_pass = attention_run(&p, attention_forward, fast_backward_one_pass, 1);
        AttentionResult two_pass = attention_run(&p, attention_forward, fast_backward_two_pass, 1);
        EXPECT(results_identical(&p, &fast, &one_pass) && results_identical(&p, &fast, &two_pass),
               "%s: the backward in one pass and in two passes differ", s->name);
        result_free(&one_pass), result_free(&two_pass);
    }
    result_free(&ref), result_free(&fast);
    checked_slice_free(&slice);
    problem_free(&p);
}

static void test_attention_fast_matches_reference(void) {
    const RealisticShape shapes[] = {
        /* Edge cases: one query, one key (softmax of one element: dq = dk = 0), a head of one channel. */
        {"Lq 1, Lk 1, 2 heads of 8", 1, 1, 1, 16, 2, 0, 0, true, true},
        {"Lq 5, Lk 1, 2 heads of 8", 3, 5, 1, 16, 2, 0, 0, true, true},
        {"Lq 17, Lk 1, 1 head of 20", 1, 17, 1, 20, 1, 0, 0, true, true},
        {"Lq 1, Lk 65, 2 heads of 32", 1, 1, 65, 64, 2, 0, 0, true, true},
        {"Lq 33, Lk 3, 1 head of 1", 2, 33, 3, 1, 1, 0, 0, true, true},
#ifdef __SANITIZE_ADDRESS__
        {"16x16x224 (28 heads of 8)", 2, 256, 256, 224, 28, 1, 3, true, true},
        {"8x8x896 (112 heads of 8)", 2, 64, 64, 896, 112, 0, 0, true, false},
        {"8x8x256 (1 head of 256)", 2, 64, 64, 256, 1, 0, 0, true, true},
        {"Lq 40, Lk 75, 4 heads of 4", 2, 40, 75, 16, 4, 0, 0, false, true},
        {"Lq 70, Lk 33, 3 heads of 32", 1, 70, 33, 96, 3, 0, 0, false, true},
        {"Lq 100, Lk 600, 2 heads of 32 (forward key tiles of 256, 256, 88)", 1, 100, 600, 64, 2, 0, 0, true, true},
#else
        {"64x64x224 (28 heads of 8)", 2, 4096, 4096, 224, 28, 1, 2, false, false},
        {"32x32x448 (56 heads of 8)", 2, 1024, 1024, 448, 56, 0, 3, true, false},
        {"16x16x672 (84 heads of 8)", 2, 256, 256, 672, 84, 0, 0, true, true},
        {"8x8x896 (112 heads of 8)", 2, 64, 64, 896, 112, 0, 0, true, true},
        {"16x16x256 (1 head of 256)", 2, 256, 256, 256, 1, 0, 0, true, true},
        {"32x32x448 (14 heads of 32)", 2, 1024, 1024, 448, 14, 1, 2, false, false},
        {"16x16x512 (8 heads of 64)", 2, 256, 256, 512, 8, 0, 0, true, true},
        {"8x8x512 (1 head of 512)", 2, 64, 64, 512, 1, 0, 0, true, true},
        {"Lq 100, Lk 300, 8 heads of 8", 2, 100, 300, 64, 8, 0, 0, true, true},
        {"Lq 150, Lk 70, 4 heads of 2", 2, 150, 70, 8, 4, 0, 0, true, true},
        {"Lq 90, Lk 130, 3 heads of 12", 2, 90, 130, 36, 3, 0, 0, true, true},
        /* stored tiles of 256 keys, then 88 in registers, after the first (tile_softmax_rows) */
        {"Lq 100, Lk 600, 2 heads of 32 (forward key tiles of 256, 256, 88)", 1, 100, 600, 64, 2, 0, 0, true, true},
#endif
    };
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        double t0 = time_now();
        check_fast_vs_reference(&shapes[i]);
        printf("  %s: %.2f s\n", shapes[i].name, time_now() - t0);
    }
}

/* ------------------------------------------------------------------------------------------------ */
/* bf16 precision (attention_bf16.c) */

static void round_to_bf16(float *x, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] = bfloat16_to_float(float_to_bfloat16(x[i]));
}

static AttentionShape shape_of(const AttentionProblem *p) {
    return (AttentionShape){.N = p->N, .Lq = p->Lq, .Lk = p->Lk, .C = p->C, .n_heads = (size_t)p->heads,
                            .D = p->C / (size_t)p->heads};
}

/* attention_run in bf16 precision with the bf16 kernels forced (bf16 ALWAYS) or chosen (AUTO). */
static AttentionResult attention_run_bf16(const AttentionProblem *p, AttentionBf16Plan plan, int n_backward) {
    ops_set_precision(OPS_PRECISION_BF16);
    attention_set_tuning((AttentionTuning){.bf16 = plan});
    AttentionResult r = attention_run(p, attention_forward, attention_backward, n_backward);
    attention_set_tuning((AttentionTuning){0});
    ops_set_precision(OPS_PRECISION_FP32);
    return r;
}

static double rms_ratio(const float *got, const float *want, size_t n) {
    double err = 0, norm = 0;
    for (size_t i = 0; i < n; i++) {
        err += ((double)got[i] - want[i]) * ((double)got[i] - want[i]);
        norm += (double)want[i] * want[i];
    }
    return norm > 0 ? sqrt(err / norm) : sqrt(err);
}

typedef struct Bf16Shape {
    const char *name;
    size_t N, Lq, Lk, C;
    int heads;
    size_t check_from_batch; /* the reference checks batches check_from_batch .. N-1 */
    int n_check_heads;       /* and heads 0, 1, ..., and the last, n_check_heads in all (0: every head) */
} Bf16Shape;

/* The bf16 kernels round q, k, v and dout to bf16, so the reference runs on rounded copies; its backward
 * also reads the bf16 forward's out and lse, as the bf16 backward does (delta and P come from them).
 * What remains is one rounding to bf16 per term of each product (P in out and dv, dS in dq and dk) and
 * fp32 accumulation (~1e-6). bf16 keeps 8 significant bits: round to nearest even is off by 2^-8 =
 * 3.9e-3 of a value at most and by 1.7e-3 rms (half an ulp, uniform, over the values of a binade); a sum
 * of terms rounded independently carries the same relative rms error. Measured (this file's shapes, AMX):
 * rms error 1.1e-3 .. 2.1e-3 of the rms value, max error up to 3.9e-3 of the max |value|. Tolerances: rms
 * 2.5e-3 (rounding toward zero, or a bias, would show as 2x), max 8e-3 = 2^-7; lse, from fp32 scores of
 * the rounded inputs, 2e-6 relative + 2e-6. Against fp32 on the unrounded inputs, the bf16 out must
 * differ by 1e-4 .. 2e-2 (the rounding of q, k and v shows). */
#define BF16_RMS_TOL 2.5e-3
#define BF16_MAX_TOL 8e-3

static void check_bf16_vs_reference(const Bf16Shape *s) {
    AttentionProblem p = problem_random(s->N, s->Lq, s->Lk, s->C, s->heads, 11);
    const size_t D = s->C / (size_t)s->heads, nq = p.N * p.Lq * p.C, nk = p.N * p.Lk * p.C;
    const size_t nl = p.N * (size_t)p.heads * p.Lq;
    const char *names[5] = {"out", "lse", "dq", "dk", "dv"};
    const size_t sizes[5] = {nq, nl, nq, nk, nk};
    char what[200];
    AttentionResult fast = attention_run_bf16(&p, ATTENTION_BF16_ALWAYS, 1);
    snprintf(what, sizeof what, "bf16 %s", s->name);
    result_check_guards(what, &fast);
    float *fasts[5] = {fast.out, fast.lse, fast.dq, fast.dk, fast.dv};
    for (int t = 0; t < 5; t++) {
        snprintf(what, sizeof what, "bf16 %s %s", s->name, names[t]);
        expect_all_finite(what, fasts[t], sizes[t]);
    }

    /* Repeatable: the same bits again, and a second backward adds exactly the same gradients. */
    AttentionResult again = attention_run_bf16(&p, ATTENTION_BF16_ALWAYS, 2);
    bool doubled = same_floats(again.out, fast.out, nq) && same_floats(again.lse, fast.lse, nl);
    for (int t = 2; t < 5; t++) {
        const float *twice = t == 2 ? again.dq : t == 3 ? again.dk : again.dv;
        for (size_t x = 0; x < sizes[t] && doubled; x++) doubled = twice[x] == 2 * fasts[t][x];
    }
    EXPECT(doubled, "bf16 %s: a second run differs, or a second backward does not add the same gradients", s->name);
    result_free(&again);
    /* Across thread counts: oneDNN's brgemm picks its blocking of a product's K (and for a long K may split
     * the sum over threads) from the thread count, so results may differ in the last bits between counts
     * (measured, 1 against 2 threads: dk and dv of "Lq 2200, Lk 1000" below, products with K = 2080, differ;
     * everything else is the same bits). Held to fp32 summation-order differences, and the outcome printed. */
    if (threads_get() > 1) {
        int saved = threads_get();
        threads_set(1);
        AttentionResult one = attention_run_bf16(&p, ATTENTION_BF16_ALWAYS, 1);
        threads_set(saved);
        const float *ones[5] = {one.out, one.lse, one.dq, one.dk, one.dv};
        printf("  %s, 1 vs %d threads:", s->name, saved);
        for (int t = 0; t < 5; t++) {
            snprintf(what, sizeof what, "bf16 %s %s, 1 vs %d threads", s->name, names[t], saved);
            expect_close_scaled(what, ones[t], fasts[t], sizes[t], 1e-5);
            printf(" %s %s", names[t], same_floats(ones[t], fasts[t], sizes[t]) ? "same" : "differs");
        }
        printf("\n");
        result_free(&one);
    }

    /* The rounding shows: against the fused fp32 kernels on the unrounded inputs. */
    AttentionResult fp32 = attention_run(&p, attention_forward, attention_backward, 1);
    const double out_change = rms_ratio(fast.out, fp32.out, nq);
    EXPECT(out_change > 1e-4 && out_change < 2e-2, "bf16 %s: out differs from fp32 by %.2g (rms, relative), expected "
           "bf16 rounding (1e-4 .. 2e-2)", s->name, out_change);
    result_free(&fp32);

    /* The reference on rounded inputs, for a slice of heads and batches (heads are independent). */
    CheckedSlice slice = checked_slice(&p, D, s->n_check_heads, s->check_from_batch);
    AttentionProblem sub = slice.sub; /* slice owns its buffers */
    const int count = slice.count;
    const size_t n0 = slice.n0;
    const size_t sq = sub.N * sub.Lq * sub.C, sk = sub.N * sub.Lk * sub.C, sl = sub.N * (size_t)count * sub.Lq;
    round_to_bf16(sub.q, sq), round_to_bf16(sub.k, sk), round_to_bf16(sub.v, sk), round_to_bf16(sub.dout, sq);
    float *got[5];
    result_slices(got, &fast, &p, &slice);
    float *want[5] = {guarded_alloc(sq), guarded_alloc(sl), xcalloc(sq, sizeof(float)), xcalloc(sk, sizeof(float)),
                      xcalloc(sk, sizeof(float))};
    attention_forward_reference(q_shaped(&sub, want[0]), lse_shaped(&sub, want[1]), q_shaped(&sub, sub.q),
                                k_shaped(&sub, sub.k), k_shaped(&sub, sub.v), sub.heads, sub.scale);
    attention_backward_reference(q_shaped(&sub, want[2]), k_shaped(&sub, want[3]), k_shaped(&sub, want[4]),
                                 q_shaped(&sub, sub.dout), q_shaped(&sub, sub.q), k_shaped(&sub, sub.k),
                                 k_shaped(&sub, sub.v), q_shaped(&sub, got[0]), lse_shaped(&sub, got[1]), sub.heads,
                                 sub.scale);
    const size_t sub_sizes[5] = {sq, sl, sq, sk, sk};
    for (int t = 0; t < 5; t++) {
        snprintf(what, sizeof what, "bf16 %s %s (%d heads from batch %zu)", s->name, names[t], count, n0);
        if (t == 1) {
            expect_close(what, got[t], want[t], sub_sizes[t], 2e-6, 2e-6);
        } else {
            expect_close_scaled(what, got[t], want[t], sub_sizes[t], BF16_MAX_TOL);
            const double rms = rms_ratio(got[t], want[t], sub_sizes[t]);
            EXPECT(rms <= BF16_RMS_TOL, "%s: rms error %.3g of the rms value, over %.2g", what, rms, BF16_RMS_TOL);
        }
        free(got[t]);
    }
    guarded_free(want[0]), guarded_free(want[1]), free(want[2]), free(want[3]), free(want[4]);
    result_free(&fast);
    checked_slice_free(&slice);
    problem_free(&p);
}

static bool bf16_skipped(void) {
    if (ops_bf16_supported()) return false;
    printf("  skipped: this CPU has no bf16 arithmetic (AVX-512 BF16 or AMX)\n");
    return true;
}

static void test_attention_bf16_matches_rounded_reference(void) {
    if (bf16_skipped()) return;
    const Bf16Shape shapes[] = {
        /* Edge cases, and heads too small for the bf16 kernels to be chosen (forced here). */
        {"Lq 5, Lk 1, 2 heads of 8", 3, 5, 1, 16, 2, 0, 0},
        {"Lq 1, Lk 65, 2 heads of 32", 1, 1, 65, 64, 2, 0, 0},
        {"Lq 100, Lk 300, 8 heads of 8", 2, 100, 300, 64, 8, 0, 0},
        {"7x7x64 (2 heads of 32)", 3, 49, 49, 64, 2, 0, 0},
#ifdef __SANITIZE_ADDRESS__
        {"8x8x256 (1 head of 256)", 2, 64, 64, 256, 1, 0, 0},
        {"14x14x32 (1 head of 32)", 3, 196, 196, 32, 1, 0, 0},
        {"Lq 200, Lk 2000, 9 heads of 32 (blocks of 128 rows)", 1, 200, 2000, 288, 9, 0, 2},
#else
        /* The U-Net's: ddpm-cifar10's one head of 256 at 16x16 (batch 16: one chunk of 16 heads); heads of
         * 64 at 32x32 and 16x16 (groups of heads with a smaller last one); a head of 32 at 14x14. */
        {"16x16x256 (1 head of 256)", 16, 256, 256, 256, 1, 13, 0},
        {"32x32x448 (7 heads of 64)", 2, 1024, 1024, 448, 7, 1, 1},
        {"16x16x320 (5 heads of 64)", 5, 256, 256, 320, 5, 4, 0},
        {"16x16x896 (14 heads of 64)", 2, 256, 256, 896, 14, 1, 3},
        {"14x14x32 (1 head of 32)", 16, 196, 196, 32, 1, 12, 0},
        /* More scores per item than a chunk holds: blocks of query rows with a shorter last one (the
         * fewest rows a block may have, 128, in the last case). */
        {"Lq 2200, Lk 1000, 1 head of 32 (row blocks)", 1, 2200, 1000, 32, 1, 0, 0},
        {"Lq 2000, Lk 600, 2 heads of 64 (row blocks)", 1, 2000, 600, 128, 2, 0, 0},
        {"Lq 300, Lk 3000, 6 heads of 32 (blocks of 128 rows)", 1, 300, 3000, 192, 6, 0, 2},
#endif
    };
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        double t0 = time_now();
        check_bf16_vs_reference(&shapes[i]);
        printf("  %s: %.2f s\n", shapes[i].name, time_now() - t0);
    }
}

/* attention_forward / attention_backward through the entry points on bf16 q, k, v, rounded here. */
static uint16_t *rounded_copy(Tensor t) {
    uint16_t *r = xmalloc(tensor_numel(t) * sizeof(uint16_t));
    floats_to_bfloat16(r, t.data, tensor_numel(t));
    return r;
}

static void forward_bf16_qkv(Tensor out, Tensor lse, Tensor q, Tensor k, Tensor v, int n_heads, float scale) {
    uint16_t *q16 = rounded_copy(q), *k16 = rounded_copy(k), *v16 = rounded_copy(v);
    attention_forward_bf16_qkv(out, lse, q16, k16, v16, n_heads, scale);
    free(q16), free(k16), free(v16);
}

static void backward_bf16_qkv(Tensor dq, Tensor dk, Tensor dv, Tensor dout, Tensor q, Tensor k, Tensor v, Tensor out,
                              Tensor lse, int n_heads, float scale) {
    uint16_t *q16 = rounded_copy(q), *k16 = rounded_copy(k), *v16 = rounded_copy(v);
    attention_backward_bf16_qkv(dq, dk, dv, dout, q16, k16, v16, out, lse, n_heads, scale);
    free(q16), free(k16), free(v16);
}

/* In bf16 precision the bf16 kernels run where attention_bf16_applies (the same bits as forcing them, and
 * as the entry points on bf16 q, k, v, which take exactly those shapes), the fused fp32 kernels elsewhere
 * (the same bits as fp32 precision); after attention_bf16_cache_free the rebuilt primitives give the same
 * bits again. */
static void test_attention_bf16_dispatch(void) {
    if (bf16_skipped()) return;
    const struct { size_t N, L, C; int heads; } cases[] = {
        {2, 64, 256, 1}, {2, 256, 64, 2}, {2, 49, 64, 2}, {2, 256, 64, 8}, {2, 64, 64, 4}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        AttentionProblem p = problem_random(cases[c].N, cases[c].L, cases[c].L, cases[c].C, cases[c].heads, 41);
        const bool applies = attention_bf16_applies(shape_of(&p));
        AttentionResult chosen = attention_run_bf16(&p, ATTENTION_BF16_AUTO, 1);
        AttentionResult expected = applies ? attention_run_bf16(&p, ATTENTION_BF16_ALWAYS, 1)
                                           : attention_run(&p, attention_forward, attention_backward, 1);
        EXPECT(results_identical(&p, &chosen, &expected), "bf16 precision, C %zu, %d heads: not the %s kernels",
               p.C, p.heads, applies ? "bf16" : "fused fp32");
        printf("  N %zu, L %zu, %d x %zu channels: %s kernels\n", p.N, p.Lq, p.heads, p.C / (size_t)p.heads,
               applies ? "bf16" : "fused fp32");
        ops_set_precision(OPS_PRECISION_BF16);
        EXPECT(attention_reads_bf16(p.N, p.Lq, p.C, p.heads) == applies, "C %zu, %d heads: attention_reads_bf16 is %d",
               p.C, p.heads, !applies);
        if (applies) {
            AttentionResult given = attention_run(&p, forward_bf16_qkv, backward_bf16_qkv, 1);
            EXPECT(results_identical(&p, &chosen, &given), "bf16, C %zu: other results from bf16 q, k, v", p.C);
            result_free(&given);
        }
        ops_set_precision(OPS_PRECISION_FP32);
        if (applies) {
            attention_bf16_cache_free();
            AttentionResult rebuilt = attention_run_bf16(&p, ATTENTION_BF16_AUTO, 1);
            EXPECT(results_identical(&p, &chosen, &rebuilt), "bf16, C %zu: other results after attention_bf16_cache_free",
                   p.C);
            result_free(&rebuilt);
        }
        result_free(&chosen), result_free(&expected);
        problem_free(&p);
    }
}

/* A gradient passed as none is neither computed nor written, and the others do not change; with the fused
 * kernels and (where the CPU has bf16) the bf16 ones. */
static void test_attention_optional_gradients(void) {
    const struct { size_t C; int heads; bool bf16; } cases[] = {
        {64, 8, false}, {96, 3, false}, {64, 8, true}, {96, 3, true}, {64, 1, true}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        if (cases[c].bf16 && !ops_bf16_supported()) continue;
        AttentionProblem p = problem_random(2, 50, 70, cases[c].C, cases[c].heads, 31);
        AttentionResult all = cases[c].bf16 ? attention_run_bf16(&p, ATTENTION_BF16_ALWAYS, 1)
                                            : attention_run(&p, attention_forward, attention_backward, 1);
        if (cases[c].bf16) {
            ops_set_precision(OPS_PRECISION_BF16);
            attention_set_tuning((AttentionTuning){.bf16 = ATTENTION_BF16_ALWAYS});
        }
        const size_t nq = p.N * p.Lq * p.C, nk = p.N * p.Lk * p.C;
        for (int mask = 0; mask < 8; mask++) {
            float *dq = guarded_alloc(nq), *dk = guarded_alloc(nk), *dv = guarded_alloc(nk);
            attention_backward(mask & 1 ? q_shaped(&p, dq) : tensor_none(), mask & 2 ? k_shaped(&p, dk) : tensor_none(),
                               mask & 4 ? k_shaped(&p, dv) : tensor_none(), q_shaped(&p, p.dout), q_shaped(&p, p.q),
                               k_shaped(&p, p.k), k_shaped(&p, p.v), q_shaped(&p, all.out), lse_shaped(&p, all.lse),
                               p.heads, p.scale);
            EXPECT(mask & 1 ? same_floats(dq, all.dq, nq) : max_abs(dq, nq) == 0, "C %zu, gradients %d: dq", p.C, mask);
            EXPECT(mask & 2 ? same_floats(dk, all.dk, nk) : max_abs(dk, nk) == 0, "C %zu, gradients %d: dk", p.C, mask);
            EXPECT(mask & 4 ? same_floats(dv, all.dv, nk) : max_abs(dv, nk) == 0, "C %zu, gradients %d: dv", p.C, mask);
            guarded_check("dq", dq), guarded_check("dk", dk), guarded_check("dv", dv);
            guarded_free(dq), guarded_free(dk), guarded_free(dv);
        }
        attention_set_tuning((AttentionTuning){0});
        ops_set_precision(OPS_PRECISION_FP32);
        result_free(&all);
        problem_free(&p);
    }
}

/* ------------------------------------------------------------------------------------------------ */
/* CHECK failures */

static void call_bad_attention(void *ctx) {
    static float a[2 * 4 * 12], b[2 * 4 * 12], c[2 * 4 * 12], o[2 * 4 * 12], l[2 * 4 * 12];
    Tensor q = tensor_3d(a, 2, 4, 12), k = tensor_3d(b, 2, 4, 12), v = tensor_3d(c, 2, 4, 12);
    Tensor out = tensor_3d(o, 2, 4, 12), lse = tensor_3d(l, 2, 3, 4);
    switch (*(int *)ctx) {
    case 0: attention_forward(out, lse, q, k, v, 5, 0.5f); break;
    case 1: attention_forward(out, lse, q, tensor_3d(b, 2, 4, 6), v, 3, 0.5f); break;
    case 2: attention_forward_reference(out, lse, q, k, tensor_3d(c, 2, 3, 12), 3, 0.5f); break;
    case 3: attention_forward(out, tensor_3d(l, 2, 4, 4), q, k, v, 3, 0.5f); break;
    case 4: attention_forward(out, lse, tensor_3d(NULL, 2, 4, 12), k, v, 3, 0.5f); break;
    case 5: attention_forward(out, lse, q, k, v, 0, 0.5f); break;
    case 6: attention_forward(out, lse, q, k, v, 3, -1.0f); break;
    case 7: attention_backward(tensor_3d(o, 2, 3, 12), tensor_none(), tensor_none(), q, q, k, v, out, lse, 3, 0.5f); break;
    case 8: attention_backward_reference(tensor_none(), tensor_none(), tensor_none(), tensor_3d(o, 1, 4, 12), q, k, v,
                                         out, lse, 3, 0.5f);
        break;
    case 9: attention_forward(tensor_2d(o, 8, 12), lse, q, k, v, 3, 0.5f); break;
    default: attention_forward_bf16_qkv(out, lse, (uint16_t *)a, (uint16_t *)b, (uint16_t *)c, 3, 0.5f); break;
    }
}

static void test_attention_rejects_bad_arguments(void) {
    static const char *expected[] = {
        "attention_forward: C = 12 channels is not divisible by n_heads = 5",
        "attention_forward: k has shape (2, 4, 6), expected (2, 4, 12)",
        "attention_forward_reference: v has shape (2, 3, 12), expected (2, 4, 12)",
        "attention_forward: lse has shape (2, 4, 4), expected (2, 3, 4)",
        "attention_forward: q is NULL",
        "attention_forward: n_heads is 0, must be positive",
        "attention_forward: scale is -1, must be positive and finite",
        "attention_backward: dq has shape (2, 3, 12), expected (2, 4, 12)",
        "attention_backward_reference: dout has shape (1, 4, 12), expected (2, 4, 12)",
        "attention_forward: out has shape (8, 12), expected (2, 4, 12)",
        "attention_forward_bf16_qkv: N 2, L 4, C 12 in 3 heads does not take the bf16 kernels",
    };
    for (int i = 0; i < (int)(sizeof expected / sizeof expected[0]); i++)
        expect_check_failure(expected[i], call_bad_attention, &i, expected[i]);
}

int main(void) {
    RUN(test_exp2_accuracy);
    RUN(test_vec16_portable_matches_avx512);
    RUN(test_attention_reference_gradcheck);
    RUN(test_attention_matches_pytorch);
    RUN(test_attention_fast_matches_reference);
    RUN(test_attention_optional_gradients);
    RUN(test_attention_bf16_matches_rounded_reference);
    RUN(test_attention_bf16_dispatch);
    RUN(test_attention_rejects_bad_arguments);
    return harness_finish();
}
