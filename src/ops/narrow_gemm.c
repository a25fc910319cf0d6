/* Rows times a narrow weight, plus bias and residual, scaled, and the weight gradient (narrow_gemm.h).
 *
 * narrow_gemm transposes the weight once per call to (K, co), K = ca + cb (narrow_gemm_kco is given it so).
 * A register block holds R rows x J vectors of 16 output channels (R J <= 24 accumulators): for each input
 * channel it loads J weight vectors and broadcasts one input value per row, R J fused multiply-adds; a's
 * channels, then b's. Output channels go in blocks of 64 (J = 4), the last block narrower. Each output
 * element is bias + one multiply-add chain over the input channels in order, then (residual + it) scale:
 * the same bits for any thread count.
 * The caller's measurements say where it beats oneDNN (shortcut_add.c, linear.c); the limits below are
 * the widest shapes measured. */
#include "ops/narrow_gemm.h"

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#include <omp.h>

#include "core/alloc.h"
#include "core/check.h"
#include "core/threads.h"
#include "core/work_steal.h"

/* Below this many output elements one thread does the work. */
#define NARROW_PARALLEL_ELEMS 32768
#define NARROW_PIECE_ELEMS 16384
#define NARROW_MAX_IN 512
#define NARROW_MAX_OUT 128

bool narrow_gemm_can(size_t co) {
#if defined(__AVX512F__)
    return co > 0 && co % 16 == 0;
#else
    (void)co;
    return false;
#endif
}

bool narrow_gemm_serves(size_t k, size_t co) {
    return narrow_gemm_can(co) && k <= NARROW_MAX_IN && co <= NARROW_MAX_OUT;
}

#if defined(__AVX512F__)
#define NARROW_INLINE static inline __attribute__((always_inline))

/* What every block of a call reads and writes: out's first co_a channels in out[0] (rows co_a wide), the
 * rest in out[1] (co = co_a with one output), each with its residual or NULL. */
typedef struct Product {
    float *out[2];
    const float *residual[2], *x[2], *wt, *bias; /* wt: the weight transposed, (K, co) */
    size_t c[2], co, co_a;
    float scale;
} Product;

/* Rows [row, row + R), output channels [j0, j0 + 16 J). */
NARROW_INLINE void block(const Product *p, size_t row, size_t j0, const int R, const int J) {
    const size_t co = p->co;
    __m512 acc[24][4];
#pragma GCC unroll 24
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int j = 0; j < J; j++) acc[r][j] = p->bias ? _mm512_loadu_ps(p->bias + j0 + 16 * j) : _mm512_setzero_ps();
    const float *w = p->wt + j0;
    for (int s = 0; s < 2; s++) {
        const size_t c = p->c[s];
        const float *x = p->x[s] + row * c;
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
    const bool scaled = p->scale != 1.0f;
    const __m512 scale = _mm512_set1_ps(p->scale);
#pragma GCC unroll 24
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int j = 0; j < J; j++) {
            const size_t ch = j0 + 16 * j, part = ch >= p->co_a;
            const size_t at = part ? (row + r) * (co - p->co_a) + ch - p->co_a : (row + r) * p->co_a + ch;
            __m512 v = acc[r][j];
            if (p->residual[part]) v = _mm512_add_ps(_mm512_loadu_ps(p->residual[part] + at), v);
            _mm512_storeu_ps(p->out[part] + at, scaled ? _mm512_mul_ps(v, scale) : v);
        }
}

/* Rows per register block: R J <= 24, with J the vectors of the first (widest) channel block. */
static int block_rows(size_t co) { return (int)(24 / (co >= 64 ? 4 : co / 16)); }

/* Rows [row, row + n_rows) (n_rows = block_rows, or 1 for the last rows), every output channel. */
static void rows_block(const Product *p, size_t row, int n_rows) {
    for (size_t j0 = 0; j0 < p->co; j0 += 64) {
        const int j = p->co - j0 >= 64 ? 4 : (int)((p->co - j0) / 16);
#define NARROW_CASE(R, J)                                                                                      \
    case (R) * 8 + (J):                                                                                        \
        block(p, row, j0, R, J);                                                                               \
        break
        switch (n_rows * 8 + j) {
            NARROW_CASE(24, 1); NARROW_CASE(12, 2); NARROW_CASE(8, 3); NARROW_CASE(6, 4);
            NARROW_CASE(6, 1); NARROW_CASE(6, 2); NARROW_CASE(6, 3);
            NARROW_CASE(1, 1); NARROW_CASE(1, 2); NARROW_CASE(1, 3); NARROW_CASE(1, 4);
            default: CHECK(0, "narrow_gemm: no block for %d rows x %d vectors", n_rows, j);
        }
#undef NARROW_CASE
    }
}

static GrowBuffer transposed, work_shares;

/* Register blocks of rows, then the last rows one by one; the blocks shared out with stealing, in pieces of
 * NARROW_PIECE_ELEMS output elements. */
static void run(const Product *p, size_t rows) {
    const int r_block = block_rows(p->co);
    const size_t n_blocks = rows / (size_t)r_block, tail = n_blocks * (size_t)r_block;
    const size_t team = rows * p->co >= NARROW_PARALLEL_ELEMS ? (size_t)threads_get() : 1;
    const size_t piece = NARROW_PIECE_ELEMS / ((size_t)r_block * p->co) + 1;
    WorkShare *shares = grow_buffer(&work_shares, team * sizeof(WorkShare));
    work_share_init(shares, team, n_blocks);
#pragma omp parallel num_threads((int)team)
    {
        size_t b0, b1;
        while (work_share_next(shares, team, (size_t)omp_get_thread_num(), piece, 1, &b0, &b1))
            for (size_t blk = b0; blk < b1; blk++) rows_block(p, blk * (size_t)r_block, r_block);
#pragma omp for schedule(static)
        for (size_t row = tail; row < rows; row++) rows_block(p, row, 1);
    }
}
#endif

void narrow_gemm_kco(float *out, const float *residual, const float *a, size_t ca, const float *b, size_t cb,
                     const float *weight_kco, const float *bias, size_t co, size_t rows, float scale) {
    CHECK(narrow_gemm_can(co), "narrow_gemm: %zu output channels, expected a multiple of 16 on an AVX-512 build", co);
#if defined(__AVX512F__)
    const Product p = {{out, NULL}, {residual, NULL}, {a, cb ? b : NULL}, weight_kco, bias, {ca, cb}, co, co, scale};
    run(&p, rows);
#else
    (void)out, (void)residual, (void)a, (void)ca, (void)b, (void)cb, (void)weight_kco, (void)bias, (void)rows,
        (void)scale;
#endif
}

void narrow_gemm_kco_split(float *out_a, bool add_a, float *out_b, bool add_b, size_t co_a, const float *x, size_t k,
                           const float *weight_kco, size_t co, size_t rows) {
    CHECK(narrow_gemm_can(co) && co_a % 16 == 0 && co_a < co,
          "narrow_gemm_kco_split: %zu output channels split at %zu, expected multiples of 16 on an AVX-512 build", co,
          co_a);
#if defined(__AVX512F__)
    const Product p = {{out_a, out_b}, {add_a ? out_a : NULL, add_b ? out_b : NULL}, {x, NULL}, weight_kco, NULL,
                       {k, 0}, co, co_a, 1.0f};
    run(&p, rows);
#else
    (void)out_a, (void)add_a, (void)out_b, (void)add_b, (void)x, (void)k, (void)weight_kco, (void)rows;
#endif
}

void narrow_gemm(float *out, const float *residual, const float *a, size_t ca, const float *b, size_t cb,
                 const float *weight, const float *bias, size_t co, size_t rows, float scale) {
    CHECK(narrow_gemm_can(co), "narrow_gemm: %zu output channels, expected a multiple of 16 on an AVX-512 build", co);
#if defined(__AVX512F__)
    const size_t k_all = ca + cb;
    float *wt = grow_buffer(&transposed, k_all * co * sizeof(float));
    for (size_t o = 0; o < co; o++)
        for (size_t k = 0; k < k_all; k++) wt[k * co + o] = weight[o * k_all + k];
    narrow_gemm_kco(out, residual, a, ca, b, cb, wt, bias, co, rows, scale);
#else
    (void)out, (void)residual, (void)a, (void)ca, (void)b, (void)cb, (void)weight, (void)bias, (void)rows, (void)scale;
#endif
}

/* ------------------------------------------------------------------------------------------------ */
/* The weight gradient: a register block holds R output channels x J vectors of 16 input channels; for each
 * row it loads J input vectors and broadcasts R values of dout, R J fused multiply-adds. */

/* Rows per chunk of the weight gradient's partial sums, at most: the chunks, not the threads, fix the order. */
#define GRAD_CHUNK_ROWS 256

bool narrow_weight_grad_serves(size_t co, size_t ci) {
    return narrow_gemm_can(ci) && co % 16 == 0 && ci <= NARROW_MAX_OUT && co <= NARROW_MAX_OUT;
}

#if defined(__AVX512F__)
/* part[o][i] = the sums over rows [r0, r1) of dout[r][o0 + o] inp[r][i0 + i], o < R, i < 16 J (inp's row
 * stride ci, part's ld). */
NARROW_INLINE void grad_block(float *part, size_t ld, const float *dout, size_t co, const float *inp, size_t ci,
                              size_t r0, size_t r1, size_t o0, size_t i0, const int R, const int J) {
    __m512 acc[16][4];
#pragma GCC unroll 16
    for (int o = 0; o < R; o++)
#pragma GCC unroll 4
        for (int j = 0; j < J; j++) acc[o][j] = _mm512_setzero_ps();
    for (size_t r = r0; r < r1; r++) {
        __m512 x[4];
#pragma GCC unroll 4
        for (int j = 0; j < J; j++) x[j] = _mm512_loadu_ps(inp + r * ci + i0 + 16 * j);
#pragma GCC unroll 16
        for (int o = 0; o < R; o++) {
            const __m512 g = _mm512_set1_ps(dout[r * co + o0 + o]);
#pragma GCC unroll 4
            for (int j = 0; j < J; j++) acc[o][j] = _mm512_fmadd_ps(g, x[j], acc[o][j]);
        }
    }
#pragma GCC unroll 16
    for (int o = 0; o < R; o++)
#pragma GCC unroll 4
        for (int j = 0; j < J; j++) _mm512_storeu_ps(part + (o0 + o) * ld + i0 + 16 * j, acc[o][j]);
}

/* One chunk's partial sums, every (o, i), into part (co, ld): the input's ci channels at column 0 of part;
 * blocks of 64 input channels (J = 4, 4 outputs at a time) and a narrower last one (J <= 3, 8 or 16 outputs
 * at a time). */
static void grad_chunk(float *part, size_t ld, const float *dout, size_t co, const float *inp, size_t ci, size_t r0,
                       size_t r1) {
    for (size_t i0 = 0; i0 < ci; i0 += 64) {
        const int j = ci - i0 >= 64 ? 4 : (int)((ci - i0) / 16), r = j == 4 ? 4 : j == 1 ? 16 : 8;
        for (size_t o0 = 0; o0 < co; o0 += (size_t)r) switch (j) {
            case 1: grad_block(part, ld, dout, co, inp, ci, r0, r1, o0, i0, 16, 1); break;
            case 2: grad_block(part, ld, dout, co, inp, ci, r0, r1, o0, i0, 8, 2); break;
            case 3: grad_block(part, ld, dout, co, inp, ci, r0, r1, o0, i0, 8, 3); break;
            default: grad_block(part, ld, dout, co, inp, ci, r0, r1, o0, i0, 4, 4); break;
            }
    }
}

static GrowBuffer grad_partials;

/* part[o] = the sums over rows [r0, r1) of dout[r][o] (co a multiple of 16). */
static void bias_chunk(float *part, const float *dout, size_t co, size_t r0, size_t r1) {
    for (size_t o = 0; o < co; o += 16) {
        __m512 sum = _mm512_setzero_ps();
        for (size_t r = r0; r < r1; r++) sum = _mm512_add_ps(sum, _mm512_loadu_ps(dout + r * co + o));
        _mm512_storeu_ps(part + o, sum);
    }
}
#endif

void narrow_weight_grad(float *dweight, float *dbias, const float *dout, size_t co, const float *a, size_t ca,
                        const float *b, size_t cb, size_t rows) {
    const size_t ci = ca + cb;
    CHECK(narrow_weight_grad_serves(co, ci) && ca % 16 == 0, "narrow_weight_grad: %zu x (%zu + %zu) is not served here",
          co, ca, cb);
#if defined(__AVX512F__)
    if (rows == 0) return;
    /* an even number of chunks of about the same size, so that two threads share them evenly */
    const size_t wanted = ((rows + GRAD_CHUNK_ROWS - 1) / GRAD_CHUNK_ROWS + 1) / 2 * 2;
    const size_t chunk_rows = (rows + wanted - 1) / wanted, n_chunks = (rows + chunk_rows - 1) / chunk_rows;
    /* each chunk's partial: the weight's (co, ci), then the bias's co while its rows are in cache */
    const size_t size = co * ci, stride = size + (dbias ? co : 0);
    float *partial = grow_buffer(&grad_partials, n_chunks * stride * sizeof(float));
#pragma omp parallel if (rows * size >= 64 * NARROW_PARALLEL_ELEMS)
    {
#pragma omp for schedule(static)
        for (size_t c = 0; c < n_chunks; c++) {
            const size_t r0 = c * chunk_rows, r1 = (c + 1) * chunk_rows < rows ? (c + 1) * chunk_rows : rows;
            grad_chunk(partial + c * stride, ci, dout, co, a, ca, r0, r1);
            if (cb) grad_chunk(partial + c * stride + ca, ci, dout, co, b, cb, r0, r1);
            if (dbias) bias_chunk(partial + c * stride + size, dout, co, r0, r1);
        }
#pragma omp for schedule(static)
        for (size_t x = 0; x < stride; x += 16) {
            __m512 sum = _mm512_loadu_ps(partial + x);
            for (size_t c = 1; c < n_chunks; c++) sum = _mm512_add_ps(sum, _mm512_loadu_ps(partial + c * stride + x));
            float *to = x < size ? dweight + x : dbias + (x - size);
            _mm512_storeu_ps(to, _mm512_add_ps(_mm512_loadu_ps(to), sum));
        }
    }
#else
    (void)dweight, (void)dbias, (void)dout, (void)a, (void)b, (void)rows;
#endif
}
