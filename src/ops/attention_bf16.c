/* Multi-head attention in bf16 precision (ops/precision.h) on AMX: what torch.autocast(dtype=bfloat16)
 * makes of F.scaled_dot_product_attention. The four kinds of product take bf16 operands and accumulate in
 * fp32 (oneDNN matmul primitives, brgemm kernels on AMX tiles); softmax and everything elementwise stay
 * fp32. With q, k, v (unless the caller has them in bf16 already: attention_forward_bf16_qkv) and dout
 * rounded to bf16 (to nearest even) on the way in, per batch n and head h:
 *   forward:  S = q k^T;  P = softmax(scale S) row by row, lse_i = log sum_j exp(scale S_ij) (attention.h);
 *             P rounded to bf16;  out = P v
 *   backward: S = q k^T, P = exp(scale S - lse);  dP = dout v^T;  delta_i = dout_i . out_i (fp32);
 *             dS = scale P (dP - delta) and P rounded to bf16;  dq += dS k,  dk += dS^T q,  dv += P^T dout
 * delta takes the rounded dout, as dP does: sum_j P_ij dP_ij = delta_i then holds up to fp32 rounding
 * (what makes each row of dS sum to zero), where fp32 dout would leave it off by dout's rounding.
 * Exponentials are exp2 of scores times scale log2(e), as in the fused kernels (attention_kernels.c).
 *
 * Why it is shaped so:
 *   - oneDNN 2.6 runs its brgemm kernels on AMX for the heads of channels-last tokens as they lie: a
 *     product over (items, heads) with strides (L C, D, C, 1) is its "acbd" layout, k and v transposed
 *     through strides too (measured: brg:avx512_core_amx_bf16 for every product here, ONEDNN_VERBOSE=1).
 *     So the inputs are only rounded into bf16 copies of the same (N, L, C) layout, and out, dq, dk and
 *     dv are written in place, the gradients through a sum post-op. A subset of an item's heads, or a
 *     row or batch stride other than the dense one, falls to gemm:jit (3-10x slower): a chunk always
 *     holds whole items, or one item and a block of query rows.
 *   - Unlike the fused kernels, the scores are materialised, a chunk at a time (CHUNK_SCORES), so a 64x64
 *     image (L = 4096) keeps a block of rows of one item in flight, never (L, L) per head for the batch.
 *     Each product is one batched matmul per chunk, threaded inside oneDNN; the row passes between them
 *     (softmax, P and dS) are OpenMP loops over rows.
 *   - dk and dv of an item split into row blocks are summed over the blocks in scratch and then added, so
 *     that every call adds the same values: a second backward adds exactly the first one's gradients.
 *   - Primitives are cached per (shape, layout, sum, thread count) like conv2d_dnnl.c's, and scratch
 *     buffers grow to the largest chunk seen: no buffer is allocated once warmed up (dnnl_primitive_execute
 *     itself still makes a few small heap allocations for its argument map, see conv2d_dnnl.c).
 * Results are bitwise repeatable for a fixed thread count. The row passes and the rounding do not depend on
 * it, but oneDNN blocks a product's K (and for a long K may split the sum over threads) by the thread count
 * it is created with, so results may differ in the last bits between counts (tests/test_attention.c).
 *
 * When it runs: see attention_bf16_applies. */
#include <math.h>
#include <omp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <oneapi/dnnl/dnnl.h>

#include "core/alloc.h"
#include "core/check.h"
#include "core/half.h"
#include "core/threads.h"
#include "ops/attention_internal.h"
#include "ops/dnnl_runtime.h"
#include "ops/lru_cache.h"
#include "ops/precision.h"
#include "ops/vec16.h"

/* Scores per chunk: whole batch items as long as they fit in CHUNK_SCORES (8 MB of fp32 scores, 24 MB with
 * the backward's dP and the bf16 copies), else one item and a block of query rows, a multiple of 32 (AMX
 * tiles), CHUNK_MIN_ROWS at least (attention_bf16_applies keeps such a chunk within 2 CHUNK_SCORES): dk and dv of an item in row blocks are summed over the blocks, a pass
 * over (Lk, C) per block, which costs too much for fewer rows (2x4096x224, 7 heads of 32: backward 453 ms
 * at 32 rows, 313 ms at 128). Measured per chunk size: 2^20 and 2^19 scores cost 7-16 % more at L 1024
 * (more oneDNN calls), while L 256 shapes did not gain from smaller chunks. */
#define CHUNK_SCORES ((size_t)1 << 21)
#define CHUNK_MIN_ROWS 128
#define CHUNK_ROW_ALIGN 32

/* ------------------------------------------------------------------------------------------------ */
/* Matmul primitives */

/* How an operand (b, h, rows, cols) of a batched product lies in memory, for b batch items of h heads: */
typedef enum Layout {
    LAYOUT_DENSE,     /* (b, h, rows, cols), row-major: the scores and their bf16 copies */
    LAYOUT_DENSE_T,   /* the same stored transposed, (b, h, cols, rows) */
    LAYOUT_TOKENS,    /* (b, rows, h * cols): tokens, channels-last, head h's cols channels at h * cols */
    LAYOUT_TOKENS_T,  /* (b, cols, h * rows): the same transposed, tokens along cols */
} Layout;

/* dst (batch, heads, m, n) fp32 = (or += with sum) src (batch, heads, m, k) x wei (batch, heads, k, n), src
 * and wei bf16. */
typedef struct MatmulKey {
    size_t batch, heads, m, k, n;
    Layout src, wei, dst;
    bool sum;
    int n_threads; /* oneDNN partitions the work for the thread count it is created with */
} MatmulKey;

typedef struct Matmul {
    MatmulKey key;
    dnnl_primitive_t prim;
    dnnl_memory_t src, wei, dst, scratchpad; /* no buffers of their own: bound to the operands per call */
} Matmul;

/* A chunking has at most 4 shapes (whole and last groups of items or blocks of rows), each of at most 5
 * primitives (S and dP share one; out; dq; dk and dv share one, and one more with a sum). */
enum { MATMUL_CACHE_CAPACITY = 32 };

static GrowBuffer matmul_scratchpad;

/* Whether a cached primitive was built for key (lru_cache.h). */
static bool matmul_matches(const void *matmul, const void *key) {
    const MatmulKey *a = &((const Matmul *)matmul)->key, *b = key;
    return a->batch == b->batch && a->heads == b->heads && a->m == b->m && a->k == b->k && a->n == b->n &&
           a->src == b->src && a->wei == b->wei && a->dst == b->dst && a->sum == b->sum && a->n_threads == b->n_threads;
}

/* An operand of b items of h heads, (b, h, rows, cols) in the layout. Each layout is dense for its
 * (b, h, rows, cols) as a whole (a block of query rows is described as one batch item of those rows). */
static dnnl_memory_desc_t md_4d(size_t b, size_t h, size_t rows, size_t cols, dnnl_data_type_t type, Layout layout) {
    const dnnl_dims_t dims = {(dnnl_dim_t)b, (dnnl_dim_t)h, (dnnl_dim_t)rows, (dnnl_dim_t)cols};
    const dnnl_dim_t item = (dnnl_dim_t)(h * rows * cols), plane = (dnnl_dim_t)(rows * cols);
    const dnnl_dim_t R = (dnnl_dim_t)rows, K = (dnnl_dim_t)cols, H = (dnnl_dim_t)h;
    dnnl_dims_t strides = {item, plane, K, 1};
    if (layout == LAYOUT_DENSE_T) strides[2] = 1, strides[3] = R;
    if (layout == LAYOUT_TOKENS) strides[1] = K, strides[2] = H * K, strides[3] = 1;
    if (layout == LAYOUT_TOKENS_T) strides[1] = R, strides[2] = 1, strides[3] = H * R;
    dnnl_memory_desc_t md;
    DNNL_CALL(dnnl_memory_desc_init_by_strides(&md, 4, dims, type, strides));
    return md;
}

static void *matmul_create(const void *key_ptr) {
    const MatmulKey *key = key_ptr;
    dnnl_memory_desc_t src = md_4d(key->batch, key->heads, key->m, key->k, dnnl_bf16, key->src);
    dnnl_memory_desc_t wei = md_4d(key->batch, key->heads, key->k, key->n, dnnl_bf16, key->wei);
    dnnl_memory_desc_t dst = md_4d(key->batch, key->heads, key->m, key->n, dnnl_f32, key->dst);
    dnnl_matmul_desc_t desc;
    DNNL_CALL(dnnl_matmul_desc_init(&desc, &src, &wei, NULL, &dst));
    dnnl_primitive_attr_t attr = dnnl_runtime_attr(key->sum);
    dnnl_primitive_desc_t pd;
    dnnl_status_t status = dnnl_primitive_desc_create(&pd, &desc, attr, dnnl_runtime_engine(), NULL);
    CHECK(status == dnnl_success,
          "oneDNN call dnnl_primitive_desc_create failed with status %s for the attention matmul (%zu, %zu, %zu, %zu) "
          "x (%zu, %zu, %zu, %zu), layouts %d %d %d%s",
          dnnl_status2str(status), key->batch, key->heads, key->m, key->k, key->batch, key->heads, key->k, key->n,
          (int)key->src, (int)key->wei, (int)key->dst, key->sum ? ", sum" : "");
    Matmul *mm = xcalloc(1, sizeof *mm);
    mm->key = *key;
    DNNL_CALL(dnnl_primitive_create(&mm->prim, pd));
    mm->scratchpad = dnnl_runtime_scratchpad(pd, &matmul_scratchpad);
    mm->src = dnnl_runtime_memory(&src);
    mm->wei = dnnl_runtime_memory(&wei);
    mm->dst = dnnl_runtime_memory(&dst);
    DNNL_CALL(dnnl_primitive_desc_destroy(pd));
    DNNL_CALL(dnnl_primitive_attr_destroy(attr));
    return mm;
}

static void matmul_free(void *entry) {
    Matmul *mm = entry;
    DNNL_CALL(dnnl_primitive_destroy(mm->prim));
    dnnl_memory_t all[] = {mm->src, mm->wei, mm->dst, mm->scratchpad};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) dnnl_runtime_memory_free(all[i]);
    free(mm);
}

static LruCache matmuls = {
    .capacity = MATMUL_CACHE_CAPACITY, .matches = matmul_matches, .create = matmul_create, .destroy = matmul_free};

static Matmul *matmul_get(const MatmulKey *key) { return lru_cache_get(&matmuls, key); }

static void matmul_run(MatmulKey key, float *dst, const uint16_t *src, const uint16_t *wei) {
    key.n_threads = threads_get();
    Matmul *mm = matmul_get(&key);
    dnnl_runtime_bind(mm->src, src);
    dnnl_runtime_bind(mm->wei, wei);
    dnnl_runtime_bind(mm->dst, dst);
    dnnl_runtime_bind(mm->scratchpad, matmul_scratchpad.data);
    DNNL_CALL(dnnl_primitive_execute(mm->prim, dnnl_runtime_stream(), 4,
                                     (dnnl_exec_arg_t[]){{DNNL_ARG_SRC, mm->src}, {DNNL_ARG_WEIGHTS, mm->wei},
                                                         {DNNL_ARG_DST, mm->dst}, {DNNL_ARG_SCRATCHPAD, mm->scratchpad}}));
    DNNL_CALL(dnnl_stream_wait(dnnl_runtime_stream()));
}

/* ------------------------------------------------------------------------------------------------ */
/* Scratch */

/* Ops run from one thread at a time (ops.h), so file-level buffers are safe. bf16 copies of the inputs
 * (N, L, C) and deltas (N, nH, Lq); a chunk's scores and dP (fp32), probabilities and score gradients (bf16);
 * the dk, dv sums of an item split into row blocks (Lk, C); a row of exponentials per thread. */
static GrowBuffer q_bf16, k_bf16, v_bf16, dout_bf16, deltas, scores, dscores, probs, dprobs, dk_sum, dv_sum,
    exp_rows;

void attention_bf16_cache_free(void) {
    lru_cache_clear(&matmuls);
    GrowBuffer *buffers[] = {&matmul_scratchpad, &q_bf16, &k_bf16, &v_bf16, &dout_bf16, &deltas, &scores,
                             &dscores,           &probs,  &dprobs, &dk_sum, &dv_sum,    &exp_rows};
    for (size_t i = 0; i < sizeof buffers / sizeof buffers[0]; i++) grow_buffer_free(buffers[i]);
}

/* ------------------------------------------------------------------------------------------------ */
/* Chunks */

/* A chunk: `items` consecutive batch items, all their heads, and `rows` query rows of each (all of them,
 * or of one item). oneDNN's brgemm takes the heads of channels-last tokens through strides only as the
 * whole (items, heads) block (a subset of heads falls to gemm:jit), hence chunks of whole items. */
typedef struct Chunking {
    size_t items, rows;
} Chunking;

static size_t min_size(size_t a, size_t b) { return a < b ? a : b; }

static Chunking chunking_of(AttentionShape s) {
    const size_t item_scores = s.n_heads * s.Lq * s.Lk;
    if (item_scores <= CHUNK_SCORES) {
        /* Equal groups as far as they go: at most two matmul shapes, the last group the smaller. */
        const size_t most = CHUNK_SCORES / item_scores, groups = (s.N + most - 1) / most;
        return (Chunking){.items = (s.N + groups - 1) / groups, .rows = s.Lq};
    }
    size_t rows = CHUNK_SCORES / (s.n_heads * s.Lk) / CHUNK_ROW_ALIGN * CHUNK_ROW_ALIGN;
    if (rows < CHUNK_MIN_ROWS) rows = CHUNK_MIN_ROWS;
    return (Chunking){.items = 1, .rows = rows < s.Lq ? rows : s.Lq};
}

/* ------------------------------------------------------------------------------------------------ */
/* When it runs */

/* The bf16 kernels run on CPUs with AMX (elsewhere unmeasured: the fused kernels), for heads of 32 channels
 * or more, for at least BF16_MIN_WORK multiply-adds per product (N nH Lq Lk D; below, the fixed costs of six
 * oneDNN calls per chunk and the rounding passes win), and where a chunk of CHUNK_MIN_ROWS query rows of
 * every head of an item stays within 2 CHUNK_SCORES (the memory bound; beyond, 9 or more heads at L 4096).
 * Measured on the 2-core AMX Xeon this was written on, 2 threads, fused fp32 time / bf16 time for forward
 * + backward (bench/ops_attention, or forward then backward alternating the two, minimum of 3-20 rounds):
 *   D 512  N 2 L 64: 2.4x
 *   D 256  N 16 L 256 (ddpm-cifar10): 3.0-4.0x;  N 128 L 256: 2.8x;  N 2 L 64: 1.7x;  N 2 L 16: 0.75x
 *   D 128  N 2 L 1024, 4 heads: 2.7x;  N 2 L 64, 2 heads: 1.6x
 *   D 64   N 2 L 256, 14 heads: 2.1-2.2x;  N 2 L 4096, 2 heads: 1.9x;  N 2 L 64, 4 heads: 1.4x
 *   D 32   N 64 L 196 (fashion-mnist): 1.2-1.3x;  N 64 L 49, 2 heads: 1.2x;  N 2 L 1024, 14 heads: 1.1-1.2x;
 *          N 2 L 4096, 7 heads: 1.3x;  N 2 L 64, 4 heads: 1.0x;  N 2 L 49, 2 heads: 0.7x
 *   D 16   N 2 L 256, 16 heads: 0.9-1.0x;  N 2 L 1024, 16 heads: 0.9x
 *   D 8    N 2 L 1024, 56 heads: 0.4x
 * Small heads lose because the products' work per score (2 D multiply-adds each) no longer covers what
 * every score costs here and not in the fused kernels: written in fp32 and read back, exp2 and rounding,
 * read again in bf16 by the next products. */
#define BF16_MIN_WORK ((size_t)1 << 21)

bool attention_bf16_applies(AttentionShape s) {
    const Chunking ch = chunking_of(s);
    return ops_amx_supported() && s.D >= 32 && s.N * s.n_heads * s.Lq * s.Lk * s.D >= BF16_MIN_WORK &&
           ch.items * s.n_heads * ch.rows * s.Lk <= 2 * CHUNK_SCORES;
}

/* ------------------------------------------------------------------------------------------------ */
/* Vectors: ops/vec16.h's AVX-512 implementation where compiled in, else the portable one */

#if defined(VEC16_HAVE_AVX512)
#define VEC VecA
#define V(op) veca_##op
/* Rounds x to bf16 (to nearest even), stores the first n lanes and returns the rounded values. */
VEC16_INLINE VecA store_bf16(uint16_t *dst, VecA x, int n) {
    const __m256i b = bfloat16_round16(x);
    if (n == 16) {
        _mm256_storeu_si256((__m256i *)dst, b);
    } else {
        uint16_t lanes[16];
        _mm256_storeu_si256((__m256i *)lanes, b);
        memcpy(dst, lanes, (size_t)n * sizeof(uint16_t));
    }
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(b), 16));
}
#else
#define VEC VecP
#define V(op) vecp_##op
VEC16_INLINE VecP store_bf16(uint16_t *dst, VecP x, int n) {
    VecP rounded;
    for (int i = 0; i < 16; i++) {
        union {
            uint32_t u;
            float f;
        } v = {(uint32_t)bfloat16_round(x.f[i]) << 16};
        if (i < n) dst[i] = (uint16_t)(v.u >> 16);
        rounded.f[i] = v.f;
    }
    return rounded;
}
#endif

/* ------------------------------------------------------------------------------------------------ */
/* Rounding the inputs */

/* dst = bf16(dout), same layout, and delta[n][h][l] = sum_d bf16(dout[n][l][h D + d]) out[n][l][h D + d] in
 * the same pass (fp32, 16 lanes then a fixed tree). */
static void round_dout_delta(uint16_t *dst, float *delta, const float *dout, const float *out, AttentionShape s) {
    const size_t nH = s.n_heads, D = s.D, L = s.Lq, C = s.C;
#pragma omp parallel for schedule(static)
    for (size_t nl = 0; nl < s.N * L; nl++) {
        const size_t n = nl / L, l = nl % L;
        for (size_t h = 0; h < nH; h++) {
            const size_t at = nl * C + h * D;
            VEC sum = V(zero)();
            for (size_t x = 0; x < D; x += 16) {
                const int m = D - x < 16 ? (int)(D - x) : 16;
                sum = V(fma)(store_bf16(dst + at + x, V(load_n)(dout + at + x, m), m), V(load_n)(out + at + x, m), sum);
            }
            delta[(n * nH + h) * L + l] = V(hsum)(sum);
        }
    }
}

/* dst[x] += src[x]: an item's dk or dv, summed over its row blocks, joins the caller's gradient. */
static void add_into(float *restrict dst, const float *restrict src, size_t n) {
#pragma omp parallel for simd schedule(static)
    for (size_t x = 0; x < n; x++) dst[x] += src[x];
}

/* ------------------------------------------------------------------------------------------------ */
/* Row passes */

/* Forward: a row of Lk scores to bf16 probabilities, with e (Lk floats) for the exponentials; returns the
 * row's lse. In base 2: s2 = s scale log2(e), m = max s2, p = 2^(s2 - m) / l with l = sum 2^(s2 - m), and
 * lse = (m + log2 l) ln 2. Lanes past the end read -inf, whose exp2 is 0. (The exponentials go to a
 * row of the thread's own, which stays in L1, rather than back over the scores, which would then be
 * written back to memory.) */
static float softmax_row(uint16_t *p_row, const float *s_row, float *e, size_t Lk, float c) {
    const int tail = (int)(Lk % 16);
    const size_t whole = Lk - (size_t)tail;
    VEC vmax = V(set1)(-INFINITY);
    for (size_t j = 0; j < whole; j += 16) vmax = V(max)(vmax, V(load)(s_row + j));
    if (tail) vmax = V(max)(vmax, V(load_n_or)(s_row + whole, tail, -INFINITY));
    /* c > 0 and rounding is monotonic: max(s c) = max(s) c */
    const float m = V(hmax)(vmax) * c;
    const VEC vc = V(set1)(c), vm = V(set1)(m);
    VEC vsum = V(zero)();
    for (size_t j = 0; j < whole; j += 16) {
        const VEC p = V(exp2)(V(sub)(V(mul)(V(load)(s_row + j), vc), vm));
        V(store)(e + j, p);
        vsum = V(add)(vsum, p);
    }
    if (tail) {
        const VEC p = V(exp2)(V(sub)(V(mul)(V(load_n_or)(s_row + whole, tail, -INFINITY), vc), vm));
        V(store_n)(e + whole, p, tail);
        vsum = V(add)(vsum, p);
    }
    const float l = V(hsum)(vsum);
    const VEC inv_l = V(set1)(1.0f / l);
    for (size_t j = 0; j < whole; j += 16) store_bf16(p_row + j, V(mul)(V(load)(e + j), inv_l), 16);
    if (tail) store_bf16(p_row + whole, V(mul)(V(load_n)(e + whole, tail), inv_l), tail);
    return (float)(((double)m + log2((double)l)) * ATTENTION_LN2);
}

/* Backward: p = 2^(s scale log2(e) - lse2) from a row of scores, and ds = scale p (dp - delta) from a row
 * of dP = dout v^T, both rounded to bf16 (p_row or ds_row NULL: not wanted, dp_row then may be NULL). */
static void backward_row(uint16_t *p_row, uint16_t *ds_row, const float *s_row, const float *dp_row, size_t Lk,
                         float c, float lse2, float delta, float scale) {
    const VEC vc = V(set1)(c), vlse2 = V(set1)(lse2), vdelta = V(set1)(delta), vscale = V(set1)(scale);
    for (size_t j = 0; j < Lk; j += 16) {
        const int n = Lk - j < 16 ? (int)(Lk - j) : 16;
        const VEC p = V(exp2)(V(sub)(V(mul)(V(load_n)(s_row + j, n), vc), vlse2));
        if (p_row) store_bf16(p_row + j, p, n);
        if (ds_row) {
            const VEC ds = V(mul)(V(mul)(p, V(sub)(V(load_n)(dp_row + j, n), vdelta)), vscale);
            store_bf16(ds_row + j, ds, n);
        }
    }
}

#undef VEC
#undef V

/* The bf16 operand: `given` when the caller has it already, else x rounded into b. */
static const uint16_t *rounded(GrowBuffer *b, const uint16_t *given, const float *x, size_t n) {
    if (given) return given;
    uint16_t *copy = grow_buffer(b, n * sizeof(uint16_t));
    floats_to_bfloat16(copy, x, n);
    return copy;
}

/* ------------------------------------------------------------------------------------------------ */
/* Forward */

void attention_forward_bf16(const AttentionArgs *a) {
    const AttentionShape s = a->shape;
    const size_t nH = s.n_heads, Lq = s.Lq, Lk = s.Lk, C = s.C, D = s.D;
    const Chunking ch = chunking_of(s);
    const size_t chunk_scores = ch.items * nH * ch.rows * Lk, row_floats = (Lk + 15) / 16 * 16;
    const uint16_t *qb = rounded(&q_bf16, a->q16, a->q, s.N * Lq * C);
    const uint16_t *kb = rounded(&k_bf16, a->k16, a->k, s.N * Lk * C);
    const uint16_t *vb = rounded(&v_bf16, a->v16, a->v, s.N * Lk * C);
    float *sc = grow_buffer(&scores, chunk_scores * sizeof(float));
    uint16_t *pb = grow_buffer(&probs, chunk_scores * sizeof(uint16_t));
    float *rows = grow_buffer(&exp_rows, (size_t)threads_get() * row_floats * sizeof(float));
    const float c = a->scale * ATTENTION_LOG2E;
    for (size_t n0 = 0; n0 < s.N; n0 += ch.items) {
        const size_t items = min_size(ch.items, s.N - n0);
        for (size_t i0 = 0; i0 < Lq; i0 += ch.rows) {
            const size_t r = min_size(ch.rows, Lq - i0);
            /* S = q k^T, (items, nH, r, Lk) */
            const MatmulKey scores_key = {.batch = items, .heads = nH, .m = r, .k = D, .n = Lk,
                                          .src = LAYOUT_TOKENS, .wei = LAYOUT_TOKENS_T, .dst = LAYOUT_DENSE};
            matmul_run(scores_key, sc, qb + (n0 * Lq + i0) * C, kb + n0 * Lk * C);
            /* Row x of the chunk is query i0 + x % r of head (n0 nH + x / r). */
#pragma omp parallel
            {
                float *e = rows + (size_t)omp_get_thread_num() * row_floats;
#pragma omp for schedule(static)
                for (size_t x = 0; x < items * nH * r; x++)
                    a->lse[(n0 * nH + x / r) * Lq + i0 + x % r] = softmax_row(pb + x * Lk, sc + x * Lk, e, Lk, c);
            }
            /* out = P v */
            const MatmulKey out_key = {.batch = items, .heads = nH, .m = r, .k = Lk, .n = D,
                                       .src = LAYOUT_DENSE, .wei = LAYOUT_TOKENS, .dst = LAYOUT_TOKENS};
            matmul_run(out_key, a->out + (n0 * Lq + i0) * C, pb, vb + n0 * Lk * C);
        }
    }
}

/* ------------------------------------------------------------------------------------------------ */
/* Backward */

void attention_backward_bf16(const AttentionArgs *a) {
    const AttentionShape s = a->shape;
    const size_t nH = s.n_heads, Lq = s.Lq, Lk = s.Lk, C = s.C, D = s.D;
    const Chunking ch = chunking_of(s);
    const bool want_ds = a->dq || a->dk;
    /* With whole items per chunk, the dk and dv products add straight into the caller's gradients. */
    const bool whole_items = ch.rows == Lq;
    const size_t chunk_scores = ch.items * nH * ch.rows * Lk;
    const uint16_t *qb = rounded(&q_bf16, a->q16, a->q, s.N * Lq * C);
    const uint16_t *kb = rounded(&k_bf16, a->k16, a->k, s.N * Lk * C);
    const uint16_t *vb = want_ds ? rounded(&v_bf16, a->v16, a->v, s.N * Lk * C) : NULL;
    uint16_t *dob = grow_buffer(&dout_bf16, s.N * Lq * C * sizeof(uint16_t));
    float *delta = grow_buffer(&deltas, s.N * nH * Lq * sizeof(float));
    float *sc = grow_buffer(&scores, chunk_scores * sizeof(float));
    float *dps = want_ds ? grow_buffer(&dscores, chunk_scores * sizeof(float)) : NULL;
    uint16_t *pb = a->dv ? grow_buffer(&probs, chunk_scores * sizeof(uint16_t)) : NULL;
    uint16_t *dsb = want_ds ? grow_buffer(&dprobs, chunk_scores * sizeof(uint16_t)) : NULL;
    float *dks = a->dk && !whole_items ? grow_buffer(&dk_sum, Lk * C * sizeof(float)) : NULL;
    float *dvs = a->dv && !whole_items ? grow_buffer(&dv_sum, Lk * C * sizeof(float)) : NULL;
    round_dout_delta(dob, delta, a->dout, a->out, s);
    const float c = a->scale * ATTENTION_LOG2E;
    for (size_t n0 = 0; n0 < s.N; n0 += ch.items) {
        const size_t items = min_size(ch.items, s.N - n0);
        for (size_t i0 = 0; i0 < Lq; i0 += ch.rows) {
            const size_t r = min_size(ch.rows, Lq - i0);
            const uint16_t *q_rows = qb + (n0 * Lq + i0) * C, *dout_rows = dob + (n0 * Lq + i0) * C;
            const uint16_t *k_items = kb + n0 * Lk * C;
            /* S = q k^T, dP = dout v^T */
            const MatmulKey scores_key = {.batch = items, .heads = nH, .m = r, .k = D, .n = Lk,
                                          .src = LAYOUT_TOKENS, .wei = LAYOUT_TOKENS_T, .dst = LAYOUT_DENSE};
            matmul_run(scores_key, sc, q_rows, k_items);
            if (want_ds) matmul_run(scores_key, dps, dout_rows, vb + n0 * Lk * C);
#pragma omp parallel for schedule(static)
            for (size_t x = 0; x < items * nH * r; x++) {
                const size_t row = (n0 * nH + x / r) * Lq + i0 + x % r;
                backward_row(pb ? pb + x * Lk : NULL, dsb ? dsb + x * Lk : NULL, sc + x * Lk, dps ? dps + x * Lk : NULL,
                             Lk, c, a->lse[row] * ATTENTION_LOG2E, delta[row], a->scale);
            }
            /* dq += dS k: each row block once, straight into dq */
            if (a->dq) {
                const MatmulKey key = {.batch = items, .heads = nH, .m = r, .k = Lk, .n = D, .src = LAYOUT_DENSE,
                                       .wei = LAYOUT_TOKENS, .dst = LAYOUT_TOKENS, .sum = true};
                matmul_run(key, a->dq + (n0 * Lq + i0) * C, dsb, k_items);
            }
            /* dk += dS^T q, dv += P^T dout: summed over row blocks in scratch first (the first block writes) */
            const MatmulKey kv_key = {.batch = items, .heads = nH, .m = Lk, .k = r, .n = D, .src = LAYOUT_DENSE_T,
                                      .wei = LAYOUT_TOKENS, .dst = LAYOUT_TOKENS, .sum = whole_items || i0 > 0};
            if (a->dk) matmul_run(kv_key, dks ? dks : a->dk + n0 * Lk * C, dsb, q_rows);
            if (a->dv) matmul_run(kv_key, dvs ? dvs : a->dv + n0 * Lk * C, pb, dout_rows);
        }
        if (dks) add_into(a->dk + n0 * Lk * C, dks, Lk * C);
        if (dvs) add_into(a->dv + n0 * Lk * C, dvs, Lk * C);
    }
}
