/* 3x3 convolutions at stride 1 with padding 1 in fp32 as Winograd F(4x4, 3x3) of our own, and 2x2 ones padded
 * by a row and a column (the upsamplers' phases, upsample_conv.c) as F(4x4, 2x2), on CPUs whose cores split
 * 512-bit FMAs into halves (AMD Zen 4): the forward pass, backward-data as a forward pass of the flipped
 * weights, and backward-weights (dU = the sum over tiles of V^T Z, then G^T dU G). The transforms are in
 * winograd_f4x4_3x3.c and winograd_f4x4_2x2.c; this file runs the chunks, the products and the threads.
 *
 * Why: there oneDNN 2.6's fp32 Winograd ran these passes 20-30 % slower than this (below), for the same
 * algorithm and rounding: 36 products per 4x4 tile instead of 144 multiplies; and below 32 channels, where
 * oneDNN has only direct kernels, 30-50 % slower.
 *
 * F(4x4, 2x2): 25 products per 4x4 tile instead of 64 multiplies; the phases of fashion-mnist's upsamplers,
 * 2 threads, ours / oneDNN's ms: 7x7 64->64 forward 0.30 / 0.42, backward-data 0.30 / 0.41, backward-weights
 * 0.33 / 0.45; 14x14 32->32 0.34 / 0.46, 0.34 / 0.46, 0.38 / 0.50.
 *
 * Layout as in conv2d_winograd_bf16.c: activations channels-last; tiles (winograd_tiles.h) in chunks that
 * fit in a core's L2: the chunk's 36 (or 25) transformed inputs V[36][tiles][ins], the products
 * M[36][tiles][outs], then the outputs, the tiles shared out among the threads (tile_work). Transformed
 * weights U[36][ins][outs], four times the weights' size (6.25 times for 2x2 kernels): while weights are held
 * (sampling) kept from step to step only within HOLD_BYTES, as fp32 weight copies are (conv2d.h). */

#include <omp.h>
#include <stdint.h>

#include "core/alloc.h"
#include "core/check.h"
#include "core/cpu.h"
#include "core/threads.h"
#include "ops/conv2d_internal.h"
#include "ops/held_transforms.h"
#include "ops/precision.h"
#include "ops/winograd_fp32_transforms.h"

/* Where it beats oneDNN's fp32 Winograd (2 threads, Zen 4, batch 64; ours / oneDNN's ms, forward; backward-
 * data alike): 32x32 128->128 27.5 / 36-41, 16x16 256->256 25.3 / 32.5, 32x32 256->128 52.7 / 74-78, 28x28
 * 32->32 1.8 / 2.6, 14x14 96->32 1.4 / 2.0, 7x7 64->64 0.48 / 0.69. At fashion-mnist's other shapes (oneDNN:
 * direct below 32 channels, else its Winograd; forward, backward-data, two runs): 28x28 16->16
 * 0.63-0.91 / 1.0-2.0, 0.84 / 1.21; 28x28 48->16 2.1-2.5 / 3.5-6.3, 2.5-2.7 / 3.7; 14x14 48->32 0.84-0.97 /
 * 1.26-1.88, 0.97 / 1.42; 7x7 96->64 0.98 / 1.04-1.53, 0.83-1.07 / 1.08-1.20. Not with larger weights: 16x16
 * 512->256 68-105 / 60-67 (its 19 MB of transformed weights stream through each chunk; chunks of 48-96
 * tiles only came level), and not with few tiles for their weights, whose transform (4x their size) then
 * costs as much as the products: 8x8 and 4x4 256->256 at batch 16 and 64 measured either way. */
#define WINOGRAD_FP32_MIN_CHANNELS 16
#define WINOGRAD_FP32_MAX_WEIGHTS (256 * 256) /* ci * co */
#define WINOGRAD_FP32_MIN_TILES 128

static bool enabled = true, any_size = false;

void conv2d_fast_use_winograd_fp32(bool on, bool every_size) {
    enabled = on;
    any_size = every_size;
}

#if defined(__AVX512F__)
#include <immintrin.h>

#define KERNEL_BUILT 1

/* Transformed weights, chunk buffers and backward-weights' sums; they only grow (conv2d_cache_free frees
 * them). */
static GrowBuffer transformed_weights, chunk_buffers, weight_sums, work_shares;

/* Forward weights kept transformed while weights are held, while all fit in this many bytes: fashion-mnist's
 * all (11 MB; their transform took 3 % of its sampling step), the first layers of larger models. */
#define HOLD_BYTES ((size_t)64 << 20)
static HeldTransforms held;

/* Bytes of one thread's V and M buffers together: about half of Zen 4's 1 MB L2 per core. */
#define CHUNK_BYTES ((size_t)768 << 10)

/* The GEMM's register blocks: ROWS tiles x 16 * VECS outputs (24 accumulators, 12 for 16 outputs). */
#define ROWS_WIDE 6
#define ROWS_NARROW 12

/* Backward-weights sums dU over tiles in one of three ways; each sum runs in tile order on one thread, so the
 * bits do not depend on the thread count.
 * - Below BLOCK_WEIGHTS (ci * co), chunk by chunk: a chunk of tiles is one thread's, transformed into its L2
 *   as the forward's are, and summed into the partial dU of its run of chunks (at most MAX_PARTIALS runs, so
 *   at most 38 MB of partials); the partials are added in order at the end.
 * - From there up to PARTIAL_WEIGHTS, by block (weights_by_block): each thread owns a block of dU's input x
 *   output channels and sums it over every tile, transforming only its channels of each tile: the channels
 *   of the other side are transformed by every block, but no partials are written, reread and added. The
 *   partials had cost as much as the products: 7x7 64->64 at batch 64, 8 chunks of 32 tiles, each with a
 *   590 KB partial. Backward-weights alone, 2 threads: 7x7 64->64 0.60-0.63 -> 0.50 ms, 14x14 96->32
 *   3.6-3.9 -> 1.6 ms, 7x7 32->64 0.29-0.31 -> 0.27-0.29 ms; below, 14x14 48->32 level and 28x28 16->16
 *   0.67 -> 1.2 ms (one block: one thread), hence the bound. fashion-mnist's training step -3.0 %.
 * - Wider, shared chunks of WEIGHTS_CHUNK_BYTES (in L3, each term's share in L2): the threads transform its
 *   tiles, then split its sums by term and by WEIGHTS_GROUP input channels (rows of dU); by block, 7x7
 *   128->64 ran 0.89 -> 0.93-0.97 ms.
 * Shared chunks stream V and Z through L3, (ci + co) / (ci co) * 8 bytes per multiply-add; chunk by chunk
 * writes and rereads partials, at most about (ci + co) / 680 bytes: the first is less from about 74x74
 * channels. fashion-mnist (16-64 channels) trained 3.6 % faster than with oneDNN's backward-weights chunk by
 * chunk, and in shared chunks 4 % faster or 8 % slower by the machine's state. Register blocks: input
 * channels x 16 * VECS outputs (16 accumulators, 8 for 16 outputs). */
#define BLOCK_WEIGHTS (32 * 64)
#define PARTIAL_WEIGHTS (64 * 64)
#define MAX_PARTIALS 64
#define WEIGHTS_CHUNK_BYTES ((size_t)8 << 20)
#define WEIGHTS_GROUP 16
#define WEIGHTS_ROWS_WIDE 4
#define WEIGHTS_ROWS_NARROW 8

/* c[r][o] (+)= the sum over k of a[r * a_row + k * a_step] * b[k * outs + o] for R rows and 16 * VECS
 * outputs. */
static inline __attribute__((always_inline)) void fma_block(const float *a, size_t a_row, size_t a_step,
                                                            const float *b, size_t outs, size_t depth, float *c,
                                                            bool accumulate, const int R, const int VECS) {
    __m512 acc[ROWS_NARROW][4];
#pragma GCC unroll 12
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int j = 0; j < VECS; j++)
            acc[r][j] = accumulate ? _mm512_loadu_ps(c + r * outs + 16 * j) : _mm512_setzero_ps();
    for (size_t k = 0; k < depth; k++) {
        __m512 w[4];
#pragma GCC unroll 4
        for (int j = 0; j < VECS; j++) {
            w[j] = _mm512_loadu_ps(b + k * outs + 16 * j);
            /* kept in a register: GCC folded the load into every row's FMA, R loads where one does, and
             * backward-weights' 4-row block ran 1.2-1.5x slower */
            __asm__("" : "+v"(w[j]));
        }
#pragma GCC unroll 12
        for (int r = 0; r < R; r++) {
            const __m512 x = _mm512_set1_ps(a[r * a_row + k * a_step]);
#pragma GCC unroll 4
            for (int j = 0; j < VECS; j++) acc[r][j] = _mm512_fmadd_ps(x, w[j], acc[r][j]);
        }
    }
#pragma GCC unroll 12
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int j = 0; j < VECS; j++) _mm512_storeu_ps(c + r * outs + 16 * j, acc[r][j]);
}

/* Floats between the terms of a chunk buffer holding `floats` per term: an odd number of cache lines, so
 * that a tile's terms do not share a few cache sets (at 8 KB apart they all did: 14x14 48->32's
 * backward-weights ran 9 % slower in chunks of 64 tiles than of 68). */
static size_t term_stride(size_t floats) {
    const size_t lines = (floats + 15) / 16;
    return (lines | 1) * 16;
}

/* m = v (rows x ins) times u (ins x outs), outs a multiple of 16. */
static void gemm(const float *v, size_t ins, const float *u, size_t outs, float *m, size_t rows) {
    for (size_t o = 0; o < outs;) {
        const size_t vecs = outs - o >= 64 ? 4 : outs - o >= 32 ? 2 : 1;
        const size_t rows_block = vecs == 4 ? ROWS_WIDE : ROWS_NARROW;
        for (size_t r = 0; r < rows;) {
            const bool whole = r + rows_block <= rows; /* else the last rows one by one */
            const float *a = v + r * ins, *b = u + o;
            float *c = m + r * outs + o;
            /* constant block sizes, so that the accumulators stay in registers */
            if (vecs == 4 && whole) fma_block(a, ins, 1, b, outs, ins, c, false, ROWS_WIDE, 4);
            else if (vecs == 4) fma_block(a, ins, 1, b, outs, ins, c, false, 1, 4);
            else if (vecs == 2 && whole) fma_block(a, ins, 1, b, outs, ins, c, false, ROWS_NARROW, 2);
            else if (vecs == 2) fma_block(a, ins, 1, b, outs, ins, c, false, 1, 2);
            else if (whole) fma_block(a, ins, 1, b, outs, ins, c, false, ROWS_NARROW, 1);
            else fma_block(a, ins, 1, b, outs, ins, c, false, 1, 1);
            r += whole ? rows_block : 1;
        }
        o += 16 * vecs;
    }
}

/* out (n, h, w, outs) (+)= the convolution of in (n, h, w, ins) with the transformed weights u, plus bias
 * (NULL: none). */
static void run(const WinogradTransforms *tr, float *out, bool accumulate, const float *in, const float *u,
                const float *bias, size_t n, TileGeometry g) {
    const size_t ins = g.ins, outs = g.outs, tiles = n * g.tiles_per_image, n_threads = (size_t)threads_get();
    const size_t terms = tr->terms, tile_bytes = terms * (ins + outs) * sizeof(float); /* of V and M */
    const size_t chunk_max = tile_chunk_max(tile_bytes, CHUNK_BYTES, ROWS_NARROW); /* both row blocks */
    const size_t v_stride = term_stride(chunk_max * ins), m_stride = term_stride(chunk_max * outs);
    const size_t thread_bytes = terms * (v_stride + m_stride) * sizeof(float);
    char *buffers = grow_buffer(&chunk_buffers, n_threads * thread_bytes);
    const TileWork work = tile_work(grow_buffer(&work_shares, n_threads * sizeof(WorkShare)), n_threads, tiles,
                                    ROWS_NARROW, chunk_max);
#pragma omp parallel num_threads((int)n_threads)
    {
        const size_t id = (size_t)omp_get_thread_num();
        float *v = (float *)(buffers + id * thread_bytes), *m = v + terms * v_stride;
        size_t first, count;
        while (tile_work_next(&work, id, &first, &count)) {
            tr->inputs(v, v_stride, in, g, 0, ins, first, count);
            for (size_t x = 0; x < terms; x++)
                gemm(v + x * v_stride, ins, u + x * ins * outs, outs, m + x * m_stride, count);
            tr->outputs(out, accumulate, bias, m, m_stride, g, first, count);
        }
    }
}

/* ------------------------------------------------------------------------------------------------ */
/* Backward-weights: dU[terms][ins][outs], the sum over tiles of V^T Z (V = B^T d B of a tile's input patch, Z =
 * A dY A^T of its output gradient), then dweight += G^T dU G. */

/* Rows `first` to `first + WEIGHTS_GROUP` of du (ins x outs) (+)= v^T z over the chunk's `count` tiles. */
static void gemm_weights(const float *v, size_t ins, size_t first, const float *z, size_t outs, size_t count,
                         float *du, bool accumulate) {
    for (size_t o = 0; o < outs;) {
        const size_t vecs = outs - o >= 64 ? 4 : outs - o >= 32 ? 2 : 1;
        const size_t rows = vecs == 4 ? WEIGHTS_ROWS_WIDE : WEIGHTS_ROWS_NARROW;
        for (size_t r = first; r < first + WEIGHTS_GROUP; r += rows) {
            const float *a = v + r, *b = z + o;
            float *c = du + r * outs + o;
            if (vecs == 4) fma_block(a, 1, ins, b, outs, count, c, accumulate, WEIGHTS_ROWS_WIDE, 4);
            else if (vecs == 2) fma_block(a, 1, ins, b, outs, count, c, accumulate, WEIGHTS_ROWS_NARROW, 2);
            else fma_block(a, 1, ins, b, outs, count, c, accumulate, WEIGHTS_ROWS_NARROW, 1);
        }
        o += 16 * vecs;
    }
}

/* dweight += G^T dU G for every kernel, dU (ci x co per term) the sum of `parts` partials in order. */
static void add_weight_gradient(const WinogradTransforms *tr, float *dweight, const float *du, size_t parts,
                                size_t ci, size_t co) {
    const WeightBlock all = {0, ci, 0, co};
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < ci; i++) tr->kernel_gradients(dweight, ci, du, parts, tr->terms * ci * co, all, i);
}

/* dU chunk by chunk into `parts` partials (terms ci co floats each): partial p sums the tiles of a run of
 * consecutive chunks, one thread's, in tile order. */
static void sums_by_chunk(const WinogradTransforms *tr, float *partials, size_t parts, const float *dout,
                          const float *inp, TileGeometry g, size_t tiles, size_t chunk) {
    const size_t ins = g.ins, outs = g.outs, terms = tr->terms, part = terms * ins * outs;
    const size_t v_stride = term_stride(chunk * ins), z_stride = term_stride(chunk * outs);
    const size_t n_threads = (size_t)threads_get(), thread_bytes = terms * (v_stride + z_stride) * sizeof(float);
    char *buffers = grow_buffer(&chunk_buffers, n_threads * thread_bytes);
    const size_t n_chunks = (tiles + chunk - 1) / chunk;
#pragma omp parallel num_threads((int)n_threads)
    {
        float *v = (float *)(buffers + (size_t)omp_get_thread_num() * thread_bytes), *z = v + terms * v_stride;
#pragma omp for schedule(static)
        for (size_t p = 0; p < parts; p++) {
            float *du = partials + p * part;
            const size_t c0 = p * n_chunks / parts;
            for (size_t c = c0; c < (p + 1) * n_chunks / parts; c++) {
                const size_t first = c * chunk, count = tiles - first < chunk ? tiles - first : chunk;
                tr->inputs(v, v_stride, inp, g, 0, ins, first, count);
                tr->grads(z, z_stride, dout, g, 0, outs, first, count);
                for (size_t x = 0; x < terms; x++)
                    for (size_t r = 0; r < ins; r += WEIGHTS_GROUP)
                        gemm_weights(v + x * v_stride, ins, r, z + x * z_stride, outs, count, du + x * ins * outs,
                                     c > c0);
            }
        }
    }
}

/* dU in shared chunks. */
static void sums_shared(const WinogradTransforms *tr, float *du, const float *dout, const float *inp, TileGeometry g,
                        size_t tiles, size_t chunk) {
    const size_t ins = g.ins, outs = g.outs, terms = tr->terms;
    const size_t v_stride = term_stride(chunk * ins), z_stride = term_stride(chunk * outs); /* between terms */
    float *v = grow_buffer(&chunk_buffers, terms * (v_stride + z_stride) * sizeof(float)), *z = v + terms * v_stride;
    const size_t groups = ins / WEIGHTS_GROUP;
#pragma omp parallel num_threads(threads_get())
    for (size_t first = 0; first < tiles; first += chunk) {
        const size_t count = tiles - first < chunk ? tiles - first : chunk;
#pragma omp for schedule(static)
        for (size_t t = 0; t < count; t++) {
            tr->inputs(v + t * ins, v_stride, inp, g, 0, ins, first + t, 1);
            tr->grads(z + t * outs, z_stride, dout, g, 0, outs, first + t, 1);
        }
#pragma omp for schedule(static)
        for (size_t item = 0; item < terms * groups; item++) {
            const size_t x = item / groups;
            gemm_weights(v + x * v_stride, ins, item % groups * WEIGHTS_GROUP, z + x * z_stride, outs, count,
                         du + x * ins * outs, first > 0);
        }
    }
}

/* dU split for a team of threads: a grid of `rows` ranges of input channels by `cols` ranges of output
 * channels, whole groups of 16 split as evenly as they go. */
typedef struct BlockGrid {
    size_t rows, cols;
} BlockGrid;

static WeightBlock grid_block(size_t ci, size_t co, BlockGrid grid, size_t k) {
    const size_t gi = ci / 16, go = co / 16, r = k / grid.cols, c = k % grid.cols;
    return (WeightBlock){gi * r / grid.rows * 16, gi * (r + 1) / grid.rows * 16, go * c / grid.cols * 16,
                         go * (c + 1) / grid.cols * 16};
}

/* The largest block of a grid over ci x co. */
static WeightBlock grid_largest(size_t ci, size_t co, BlockGrid grid) {
    return (WeightBlock){0, (ci / 16 + grid.rows - 1) / grid.rows * 16, 0, (co / 16 + grid.cols - 1) / grid.cols * 16};
}

/* The grid of at most `team` blocks whose largest block takes least time per tile: its products (ins outs
 * multiply-adds per term) and the transforms of its channels, which every block of the same row or column
 * repeats (each about 4 products' worth per channel); fewer blocks on a tie. */
static BlockGrid block_grid(size_t ci, size_t co, size_t team) {
    BlockGrid best = {1, 1};
    size_t best_cost = SIZE_MAX;
    for (size_t r = 1; r <= ci / 16 && r <= team; r++)
        for (size_t c = 1; c <= co / 16 && r * c <= team; c++) {
            const WeightBlock b = grid_largest(ci, co, (BlockGrid){r, c});
            const size_t ins = b.i1, outs = b.o1, cost = ins * outs + 4 * (ins + outs);
            if (cost < best_cost) best = (BlockGrid){r, c}, best_cost = cost;
        }
    return best;
}

/* Backward-weights in blocks of dU, one per thread: a block sums its products over all tiles, chunk by chunk
 * through the thread's L2, transforming only its channels of each tile, then adds G^T dU G to its kernels.
 * No partials to add up and no barriers; every element of dU is one chain of fused multiply-adds over the
 * tiles in order, so the bits do not depend on the split. */
static void weights_by_block(const WinogradTransforms *tr, float *dweight, const float *dout, const float *inp,
                             TileGeometry g, size_t tiles) {
    const size_t ci = g.ins, co = g.outs, terms = tr->terms;
    const BlockGrid grid = block_grid(ci, co, (size_t)threads_get());
    const size_t blocks = grid.rows * grid.cols;
    const WeightBlock largest = grid_largest(ci, co, grid);
    const size_t ins = largest.i1, outs = largest.o1, du_floats = terms * ins * outs;
    const size_t du_bytes = du_floats * sizeof(float);
    const size_t budget = du_bytes < CHUNK_BYTES / 2 ? CHUNK_BYTES - du_bytes : CHUNK_BYTES / 2;
    size_t chunk = tile_chunk_max(terms * (ins + outs) * sizeof(float), budget, 1) / (any_size ? 16 : 1);
    if (chunk == 0) chunk = 1;
    const size_t v_stride = term_stride(chunk * ins), z_stride = term_stride(chunk * outs);
    const size_t block_bytes = (terms * (v_stride + z_stride) + du_floats) * sizeof(float);
    char *buffers = grow_buffer(&chunk_buffers, blocks * block_bytes);
#pragma omp parallel for schedule(static) num_threads((int)blocks)
    for (size_t k = 0; k < blocks; k++) {
        const WeightBlock b = grid_block(ci, co, grid, k);
        const size_t ni = b.i1 - b.i0, no = b.o1 - b.o0;
        float *v = (float *)(buffers + k * block_bytes), *z = v + terms * v_stride, *du = z + terms * z_stride;
        for (size_t first = 0; first < tiles; first += chunk) {
            const size_t count = tiles - first < chunk ? tiles - first : chunk;
            tr->inputs(v, v_stride, inp, g, b.i0, b.i1, first, count);
            tr->grads(z, z_stride, dout, g, b.o0, b.o1, first, count);
            for (size_t x = 0; x < terms; x++)
                for (size_t r = 0; r < ni; r += WEIGHTS_GROUP)
                    gemm_weights(v + x * v_stride, ni, r, z + x * z_stride, no, count, du + x * ni * no, first > 0);
        }
        for (size_t i = b.i0; i < b.i1; i++) tr->kernel_gradients(dweight, ci, du, 1, 0, b, i);
    }
}

/* The transforms for s's kernel. */
static const WinogradTransforms *transforms_of(Conv2dShape s) {
    return s.kh == 3 ? &winograd_f4x4_3x3 : &winograd_f4x4_2x2;
}

/* The tiles of s's output, or for backward-data of its input's gradient: a convolution of dout with the
 * flipped kernel, padded by r - 1 - the padding before. */
/* out_view: where the forward's output (backward-data's input) lies, or NULL. */
static TileGeometry geometry_of(Conv2dShape s, Conv2dParams p, bool backward_data, const ImageStrides *out_view) {
    TileGeometry g = backward_data ? tile_geometry(s.h, s.w, s.co, s.ci, 4) : tile_geometry(s.h, s.w, s.ci, s.co, 4);
    const size_t top = (size_t)p.pad_top, left = (size_t)p.pad_left;
    g.pad_top = backward_data ? s.kh - 1 - top : top;
    g.pad_left = backward_data ? s.kw - 1 - left : left;
    if (out_view) *(backward_data ? &g.in : &g.out) = *out_view;
    return g;
}

void conv2d_winograd_fp32_backward_weights(float *dweight, const float *dout, const float *inp, Conv2dShape s,
                                           Conv2dParams p, const ImageStrides *out_view) {
    const WinogradTransforms *tr = transforms_of(s);
    const TileGeometry g = geometry_of(s, p, false, out_view);
    const size_t tiles = s.n * g.tiles_per_image, tile_bytes = tr->terms * (s.ci + s.co) * sizeof(float);
    if (s.ci * s.co >= BLOCK_WEIGHTS && s.ci * s.co <= PARTIAL_WEIGHTS) {
        weights_by_block(tr, dweight, dout, inp, g, tiles);
        return;
    }
    const bool by_chunk = s.ci * s.co < BLOCK_WEIGHTS;
    /* chunks not by thread count; the tests' (every_size) 16 times smaller, so that they span several */
    size_t chunk = (by_chunk ? CHUNK_BYTES : WEIGHTS_CHUNK_BYTES) / tile_bytes / (any_size ? 16 : 1);
    if (chunk > tiles) chunk = tiles;
    if (chunk == 0) chunk = 1;
    size_t n_chunks = (tiles + chunk - 1) / chunk;
    if (by_chunk) { /* chunks of about the same size, an even number (two threads share them evenly) or a
                     * multiple of MAX_PARTIALS (runs of as many chunks); 7x7 64->64: 7 chunks made 4 + 3 */
        const size_t multiple = n_chunks > MAX_PARTIALS ? MAX_PARTIALS : 2;
        n_chunks = (n_chunks + multiple - 1) / multiple * multiple;
        chunk = (tiles + n_chunks - 1) / n_chunks;
        n_chunks = (tiles + chunk - 1) / chunk;
    }
    const size_t parts = by_chunk ? (n_chunks < MAX_PARTIALS ? n_chunks : MAX_PARTIALS) : 1;
    float *du = grow_buffer(&weight_sums, parts * tr->terms * s.ci * s.co * sizeof(float));
    if (by_chunk) sums_by_chunk(tr, du, parts, dout, inp, g, tiles, chunk);
    else sums_shared(tr, du, dout, inp, g, tiles, chunk);
    add_weight_gradient(tr, dweight, du, parts, s.ci, s.co);
}

/* ------------------------------------------------------------------------------------------------ */

/* The forward's transformed weights: a held copy (made on first use) while hold is set and the budget
 * allows, else transformed into the shared buffer. */
static const float *forward_weights(const WinogradTransforms *tr, const float *weight, Conv2dShape s, bool hold) {
    const size_t bytes = tr->terms * s.ci * s.co * sizeof(float);
    float *u = hold ? held_transform_find(&held, weight, s.ci, s.co) : NULL;
    if (u) return u;
    u = hold && held.bytes + bytes <= HOLD_BYTES ? held_transform_add(&held, weight, s.ci, s.co, bytes)
                                                 : grow_buffer(&transformed_weights, bytes);
    tr->weights(u, weight, s.co, s.ci, false);
    return u;
}

void conv2d_winograd_fp32_forward(float *out, const float *inp, const float *weight, const float *bias,
                                  Conv2dShape s, Conv2dParams p, bool hold, const ImageStrides *out_view) {
    const WinogradTransforms *tr = transforms_of(s);
    run(tr, out, false, inp, forward_weights(tr, weight, s, hold), bias, s.n, geometry_of(s, p, false, out_view));
}

void conv2d_winograd_fp32_backward_data(float *dinp, bool accumulate, const float *dout, const float *weight,
                                        Conv2dShape s, Conv2dParams p, const ImageStrides *out_view) {
    const WinogradTransforms *tr = transforms_of(s);
    float *u = grow_buffer(&transformed_weights, tr->terms * s.ci * s.co * sizeof(float));
    tr->weights(u, weight, s.co, s.ci, true);
    run(tr, dinp, accumulate, dout, u, NULL, s.n, geometry_of(s, p, true, out_view));
}

void conv2d_winograd_fp32_release_held(void) { held_transforms_free(&held); }

void conv2d_winograd_fp32_free(void) {
    conv2d_winograd_fp32_release_held();
    grow_buffer_free(&transformed_weights);
    grow_buffer_free(&chunk_buffers);
    grow_buffer_free(&weight_sums);
    grow_buffer_free(&work_shares);
}
#else
#define KERNEL_BUILT 0
void conv2d_winograd_fp32_forward(float *out, const float *inp, const float *weight, const float *bias,
                                  Conv2dShape s, Conv2dParams p, bool hold, const ImageStrides *out_view) {
    (void)out, (void)inp, (void)weight, (void)bias, (void)s, (void)p, (void)hold, (void)out_view;
    CHECK(false, "conv2d_winograd_fp32_forward: built without AVX-512");
}
void conv2d_winograd_fp32_backward_data(float *dinp, bool accumulate, const float *dout, const float *weight,
                                        Conv2dShape s, Conv2dParams p, const ImageStrides *out_view) {
    (void)dinp, (void)accumulate, (void)dout, (void)weight, (void)s, (void)p, (void)out_view;
    CHECK(false, "conv2d_winograd_fp32_backward_data: built without AVX-512");
}
void conv2d_winograd_fp32_backward_weights(float *dweight, const float *dout, const float *inp, Conv2dShape s,
                                           Conv2dParams p, const ImageStrides *out_view) {
    (void)dweight, (void)dout, (void)inp, (void)s, (void)p, (void)out_view;
    CHECK(false, "conv2d_winograd_fp32_backward_weights: built without AVX-512");
}
void conv2d_winograd_fp32_release_held(void) {}
void conv2d_winograd_fp32_free(void) {}
#endif

/* Whether the kernels can run s at all: 3x3 with padding 1, or 2x2 padded by one row and one column on either
 * side (as many outputs as inputs), channels in blocks of 16, in fp32. */
static bool can_run(Conv2dShape s, Conv2dParams p) {
    const bool kernel3 = s.kh == 3 && s.kw == 3 && p.pad_top == 1 && p.pad_bottom == 1 && p.pad_left == 1 &&
                         p.pad_right == 1;
    const bool kernel2 = s.kh == 2 && s.kw == 2 && p.pad_top + p.pad_bottom == 1 && p.pad_left + p.pad_right == 1;
    return KERNEL_BUILT && ops_precision() == OPS_PRECISION_FP32 && (kernel3 || kernel2) && p.stride == 1 &&
           s.ci % 16 == 0 && s.co % 16 == 0;
}

bool conv2d_winograd_fp32_serves(Conv2dShape s, Conv2dParams p) {
    static int splits = -1;
    if (splits < 0) splits = cpu_splits_fma512();
    const size_t tiles = s.n * ((s.h + 3) / 4) * ((s.w + 3) / 4);
    const bool sized = s.ci >= WINOGRAD_FP32_MIN_CHANNELS && s.co >= WINOGRAD_FP32_MIN_CHANNELS &&
                       s.ci * s.co <= WINOGRAD_FP32_MAX_WEIGHTS && tiles >= WINOGRAD_FP32_MIN_TILES;
    return splits && sized && can_run(s, p);
}

bool conv2d_winograd_fp32_fits(Conv2dShape s, Conv2dParams p) {
    return enabled && (any_size ? can_run(s, p) : conv2d_winograd_fp32_serves(s, p));
}
