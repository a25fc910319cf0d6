/* 3x3 convolutions at stride 1 with padding 1 in bf16 precision on CPUs with AVX-512 BF16 but no AMX
 * (AMD Zen 4): Winograd F(2x2, 3x3) for the forward pass, backward-data (a forward pass of the flipped
 * weights) and backward-weights, its 16 products per tile on bf16 operands (vdpbf16ps, fp32 sums), its
 * transforms in fp32.
 *
 * Why: there oneDNN 2.6 offers bf16 only as direct kernels, at most twice the fp32 rate, while its fp32
 * Winograd does 4x fewer multiplies: at ddpm-cifar10's shapes bf16 direct was no faster than fp32
 * Winograd, and bf16 precision no faster than fp32. Here the products run at the bf16 rate on 2.25x fewer
 * multiplies: 32x32 128->128 at batch 16, 2 threads, forward 7.5-8.6 ms against oneDNN's bf16 direct
 * 11.2-11.8 and fp32 Winograd 10.9.
 * Why F(2x2) and not F(4x4): the operands are rounded after their transforms, and F(4x4)'s larger
 * coefficients amplify that rounding: relative RMS error against exact arithmetic at 256 channels
 * (tools/winograd_bf16_error.py), bf16 direct 2.3e-3, F(2x2) 3.9e-3, F(4x4) 2.6e-2.
 *
 * Backward-weights sums, over the tiles, the products of the transformed inputs and the transformed
 * output gradients A dY A^T, one 3x3 kernel's 16 terms at a time (dU), and returns G^T dU G.
 *
 * Layout: activations channels-last (N, H, W, C); the tiles of 2x2 outputs are numbered image by image,
 * row by row, and processed in chunks that fit in a core's L2 cache: the chunk's 16 transformed inputs
 * V[16][tiles][ins] (bf16), the 16 products M[16][tiles][outs] (fp32), then the outputs. The transformed
 * weights U[16][ins / 2][outs][2] hold pairs of input channels together, as vdpbf16ps reads them.
 * Backward-weights sums over tiles, so its chunks hold pairs of tiles together instead: V[16][tiles / 2][Ci][2]
 * and Z[16][tiles / 2][Co][2]; its threads split the sums (terms, and input channels) rather than the tiles,
 * so that each sum runs in tile order whatever the thread count.
 * Small loops of fixed length carry `#pragma GCC unroll`: at -O2 GCC kept the 4x4 patches in stack arrays,
 * which cost 9-10 % of a bf16 step. */
#include <stdint.h>
#include <string.h>

#include <omp.h>

#include "core/alloc.h"
#include "core/check.h"
#include "core/half.h"
#include "core/threads.h"
#include "ops/conv2d_internal.h"
#include "ops/held_transforms.h"
#include "ops/precision.h"
#include "ops/winograd_tiles.h"

/* Where it beats oneDNN's bf16 direct kernels (2 threads, Zen 4; Winograd / direct ms, forward and
 * backward-data; backward-weights gains about as much, 16x16 256->256 batch 128 63-65 / 87 ms, 32x32
 * 128->128 76-78 / 91): from 128 channels in and out, 32x32 128->128 batch 16 8.6 / 11.2, 8.8 / 11.5; 16x16
 * 512->256 17.2 / 21.8, 16.6 / 23.3; 8x8 256->256 2.9 / 3.2, 2.6 / 3.8. Below that the products have too
 * little depth for the transforms' cost: 7x7 64->64 batch 64 0.87 / 0.54, 0.54 / 0.49; 14x14 32->32
 * 1.37 / 0.61, 0.55 / 0.54. And from 1024 output positions: 4x4 256->256 batch 16 (256 positions) 1.48 /
 * 1.32, 1.39 / 0.74, batch 64 2.8 / 3.5, 2.0 / 2.9. */
#define WINOGRAD_BF16_MIN_CHANNELS 128
#define WINOGRAD_BF16_MIN_POSITIONS 1024

static bool enabled = true, any_size = false;

void conv2d_fast_use_winograd_bf16(bool on, bool every_size) {
    enabled = on;
    any_size = every_size;
}

#if defined(__AVX512F__) && defined(__AVX512BF16__)
#include <immintrin.h>

#define KERNEL_BUILT 1

/* Transformed weights, chunk buffers and backward-weights' sums; they only grow (conv2d_cache_free frees
 * them). */
static GrowBuffer transformed_weights, chunk_buffers, weight_sums, work_shares;

/* Forward weights kept transformed while weights are held (held_transforms.h): their transform took 4 % of
 * a ddpm-cifar10 batch-16 bf16 sampling step. */
static HeldTransforms held;

/* Bytes of one thread's V and M buffers together: about half of Zen 4's 1 MB L2 per core. */
#define CHUNK_BYTES ((size_t)768 << 10)

/* The GEMM's register blocks: ROWS tiles x 16 * VECS outputs (24 accumulators either way). */
#define ROWS_WIDE 6
#define ROWS_NARROW 12

/* Backward-weights: chunks of tiles whose V and Z take about this much (in L3, each term's share in L2),
 * and register blocks of input channels x 16 * VECS outputs (16 accumulators either way). */
#define WEIGHTS_CHUNK_BYTES ((size_t)8 << 20)
#define WEIGHTS_ROWS_WIDE 4
#define WEIGHTS_ROWS_NARROW 8

/* Backward-weights' threads split the sums by term and by groups of this many input channels (rows of
 * dU): each sum stays with one thread and runs in tile order, so the bits do not depend on the thread
 * count, and up to 16 * Ci / 32 threads have work. */
#define WEIGHTS_GROUP 32

/* The pair layout of backward-weights: two tiles' transforms of sixteen channels, interleaved. */
static inline __attribute__((always_inline)) void store_pair(uint16_t *dst, __m512 first, __m512 second) {
    const __m512i lo = _mm512_cvtepu16_epi32((__m256i)_mm512_cvtneps_pbh(first));
    const __m512i hi = _mm512_cvtepu16_epi32((__m256i)_mm512_cvtneps_pbh(second));
    _mm512_storeu_si512(dst, _mm512_or_si512(lo, _mm512_slli_epi32(hi, 16)));
}

/* G g G^T of sixteen kernels g, one per lane, gathered from weight at base + lane * step + (tap k or 8 - k). */
static inline __attribute__((always_inline)) void transform16(__m512 out[16], const float *base, __m512i lanes,
                                                             bool reversed) {
    __m512 g[9], t[4][3];
#pragma GCC unroll 9
    for (int k = 0; k < 9; k++) g[k] = _mm512_i32gather_ps(lanes, base + (reversed ? 8 - k : k), 4);
    const __m512 half = _mm512_set1_ps(0.5f);
#pragma GCC unroll 3
    for (int c = 0; c < 3; c++) { /* G g */
        const __m512 outer = _mm512_add_ps(g[c], g[6 + c]);
        t[0][c] = g[c];
        t[1][c] = _mm512_mul_ps(half, _mm512_add_ps(outer, g[3 + c]));
        t[2][c] = _mm512_mul_ps(half, _mm512_sub_ps(outer, g[3 + c]));
        t[3][c] = g[6 + c];
    }
#pragma GCC unroll 4
    for (int r = 0; r < 4; r++) { /* (G g) G^T */
        const __m512 outer = _mm512_add_ps(t[r][0], t[r][2]);
        out[4 * r + 0] = t[r][0];
        out[4 * r + 1] = _mm512_mul_ps(half, _mm512_add_ps(outer, t[r][1]));
        out[4 * r + 2] = _mm512_mul_ps(half, _mm512_sub_ps(outer, t[r][1]));
        out[4 * r + 3] = t[r][2];
    }
}

/* u (see the top) for every pair (a: output, b: input) of the convolution that runs, its kernels g read
 * from weight (Co, Ci, 3, 3): forward, g(a, b) = weight[a][b]; flipped (backward-data, a forward pass from
 * dout's Co channels to Ci), g(a, b) = weight[b][a] with both kernel axes reversed. */
static void transform_weights(uint16_t *u, const float *weight, size_t co, size_t ci, bool flipped) {
    const size_t outs = flipped ? ci : co, ins = flipped ? co : ci;
    const size_t a_step = flipped ? 9 : ci * 9, b_step = flipped ? ci * 9 : 9; /* floats between kernels */
    const __m512i lanes = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                             _mm512_set1_epi32((int)a_step));
#pragma omp parallel for schedule(static)
    for (size_t bp = 0; bp < ins / 2; bp++)
        for (size_t a = 0; a < outs; a += 16) {
            __m512 even[16], odd[16];
            transform16(even, weight + a * a_step + 2 * bp * b_step, lanes, flipped);
            transform16(odd, weight + a * a_step + (2 * bp + 1) * b_step, lanes, flipped);
#pragma GCC unroll 16
            for (size_t x = 0; x < 16; x++) store_pair(u + ((x * (ins / 2) + bp) * outs + a) * 2, even[x], odd[x]);
        }
}

/* c[r][o] (+)= the sum over k of a(r, k) . b(k, o) for R rows and 16 * VECS outputs, each a(r, k) and
 * b(k, o) a pair of bf16 values (their dot product is one vdpbf16ps lane): a(r, k) at a + r a_row + k a_pair,
 * b(k, o) at b + 2 (k outs + o); c's rows are outs apart. */
static inline __attribute__((always_inline)) void pairs_block(const uint16_t *a, size_t a_row, size_t a_pair,
                                                              const uint16_t *b, size_t outs, size_t pairs, float *c,
                                                              bool accumulate, const int R, const int VECS) {
    __m512 acc[ROWS_NARROW][4];
#pragma GCC unroll 12
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int j = 0; j < VECS; j++)
            acc[r][j] = accumulate ? _mm512_loadu_ps(c + r * outs + 16 * j) : _mm512_setzero_ps();
    for (size_t k = 0; k < pairs; k++) {
        __m512bh w[4];
#pragma GCC unroll 4
        for (int j = 0; j < VECS; j++) w[j] = (__m512bh)_mm512_loadu_si512(b + 2 * k * outs + 32 * j);
#pragma GCC unroll 12
        for (int r = 0; r < R; r++) {
            uint32_t pair;
            memcpy(&pair, a + r * a_row + k * a_pair, sizeof pair);
            const __m512bh x = (__m512bh)_mm512_set1_epi32((int)pair);
#pragma GCC unroll 4
            for (int j = 0; j < VECS; j++) acc[r][j] = _mm512_dpbf16_ps(acc[r][j], x, w[j]);
        }
    }
#pragma GCC unroll 12
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int j = 0; j < VECS; j++) _mm512_storeu_ps(c + r * outs + 16 * j, acc[r][j]);
}

/* m = v (rows x ins) times u (ins x outs), outs a multiple of 32. */
static void gemm(const uint16_t *v, size_t ins, const uint16_t *u, size_t outs, float *m, size_t rows) {
    for (size_t o = 0; o < outs;) {
        const bool wide = outs - o >= 64;
        const size_t rows_block = wide ? ROWS_WIDE : ROWS_NARROW;
        for (size_t r = 0; r < rows;) {
            const bool whole = r + rows_block <= rows; /* else the last rows one by one */
            const uint16_t *a = v + r * ins, *b = u + 2 * o;
            float *c = m + r * outs + o;
            if (wide && whole) pairs_block(a, ins, 2, b, outs, ins / 2, c, false, ROWS_WIDE, 4);
            else if (wide) pairs_block(a, ins, 2, b, outs, ins / 2, c, false, 1, 4);
            else if (whole) pairs_block(a, ins, 2, b, outs, ins / 2, c, false, ROWS_NARROW, 2);
            else pairs_block(a, ins, 2, b, outs, ins / 2, c, false, 1, 2);
            r += whole ? rows_block : 1;
        }
        o += wide ? 64 : 32;
    }
}

/* Sixteen channels of one input position from f (fp32) or h (bf16), zeros where the mask is (padding):
 * masked loads, so no branch. */
static inline __attribute__((always_inline)) __m512 load16(const float *f, const uint16_t *h, size_t at,
                                                           __mmask16 mask) {
    if (f) return _mm512_maskz_loadu_ps(mask, f + at);
    const __m256i bits = _mm256_maskz_loadu_epi16(mask, h + at);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(bits), 16));
}

/* B^T d B of a 4x4 input patch d, sixteen channels. */
static inline __attribute__((always_inline)) void input_transform(__m512 v[16], __m512 d[4][4]) {
    __m512 r[4][4];
#pragma GCC unroll 4
    for (int j = 0; j < 4; j++) {
        r[0][j] = _mm512_sub_ps(d[0][j], d[2][j]);
        r[1][j] = _mm512_add_ps(d[1][j], d[2][j]);
        r[2][j] = _mm512_sub_ps(d[2][j], d[1][j]);
        r[3][j] = _mm512_sub_ps(d[1][j], d[3][j]);
    }
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++) {
        v[4 * i + 0] = _mm512_sub_ps(r[i][0], r[i][2]);
        v[4 * i + 1] = _mm512_add_ps(r[i][1], r[i][2]);
        v[4 * i + 2] = _mm512_sub_ps(r[i][2], r[i][1]);
        v[4 * i + 3] = _mm512_sub_ps(r[i][1], r[i][3]);
    }
}

/* Where tile `tile`'s 4x4 input patch lies: the offsets of its 16 positions' channels, and which of them
 * are inside the image (the others are padding). */
typedef struct Patch {
    size_t at[4][4];
    __mmask16 inside[4][4]; /* all lanes, or none */
} Patch;

static Patch patch_of(TileGeometry g, size_t tile) {
    const TileOrigin o = tile_origin(g, tile);
    Patch p;
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 4; j++) p.inside[i][j] = tile_patch_position(g, o, i, j, &p.at[i][j]) ? 0xFFFF : 0;
    return p;
}

/* The transformed input of sixteen channels from c of the patch p. */
static inline __attribute__((always_inline)) void transform_patch(__m512 v[16], const float *in,
                                                                  const uint16_t *in_bf16, const Patch *p, size_t c) {
    __m512 d[4][4];
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++)
#pragma GCC unroll 4
        for (int j = 0; j < 4; j++) d[i][j] = load16(in, in_bf16, p->at[i][j] + c, p->inside[i][j]);
    input_transform(v, d);
}

static inline __attribute__((always_inline)) void transform_tiles(uint16_t *v, size_t stride, const float *in,
                                                                  const uint16_t *in_bf16, TileGeometry g, size_t first,
                                                                  size_t count) {
    for (size_t t = 0; t < count; t++) {
        const Patch p = patch_of(g, first + t);
        for (size_t c = 0; c < g.ins; c += 16) {
            __m512 e[16];
            transform_patch(e, in, in_bf16, &p, c);
#pragma GCC unroll 16
            for (size_t x = 0; x < 16; x++)
                _mm256_storeu_si256((__m256i *)(v + x * stride + t * g.ins + c), (__m256i)_mm512_cvtneps_pbh(e[x]));
        }
    }
}

/* V of the chunk's tiles; one copy of the loop per input type, so that no load asks which. */
static void transform_chunk_inputs(uint16_t *v, size_t stride, const float *in, const uint16_t *in_bf16, TileGeometry g,
                                   size_t first, size_t count) {
    if (in) transform_tiles(v, stride, in, NULL, g, first, count);
    else transform_tiles(v, stride, NULL, in_bf16, g, first, count);
}

/* out (+)= A^T M A (+ bias) for the chunk's tiles, cut at the image's last row and column. */
static void transform_chunk_outputs(float *out, bool accumulate, const float *bias, const float *m, size_t stride,
                                    TileGeometry g, size_t first, size_t count) {
    for (size_t t = 0; t < count; t++) {
        const TileOrigin at = tile_origin(g, first + t);
        for (size_t o = 0; o < g.outs; o += 16) {
            __m512 p[4][4], q[2][4];
#pragma GCC unroll 4
            for (int i = 0; i < 4; i++)
#pragma GCC unroll 4
                for (int j = 0; j < 4; j++)
                    p[i][j] = _mm512_loadu_ps(m + (size_t)(4 * i + j) * stride + t * g.outs + o);
#pragma GCC unroll 4
            for (int j = 0; j < 4; j++) {
                q[0][j] = _mm512_add_ps(_mm512_add_ps(p[0][j], p[1][j]), p[2][j]);
                q[1][j] = _mm512_sub_ps(_mm512_sub_ps(p[1][j], p[2][j]), p[3][j]);
            }
            const __m512 b = bias ? _mm512_loadu_ps(bias + o) : _mm512_setzero_ps();
#pragma GCC unroll 2
            for (size_t i = 0; i < 2; i++) {
                if (at.y + i >= g.h) break;
                const __m512 y[2] = {_mm512_add_ps(_mm512_add_ps(_mm512_add_ps(q[i][0], q[i][1]), q[i][2]), b),
                                     _mm512_add_ps(_mm512_sub_ps(_mm512_sub_ps(q[i][1], q[i][2]), q[i][3]), b)};
#pragma GCC unroll 2
                for (size_t j = 0; j < 2; j++) {
                    if (at.x + j >= g.w) break;
                    float *dst = out + tile_out_at(g, at.n, at.y + i, at.x + j) + o;
                    _mm512_storeu_ps(dst, accumulate ? _mm512_add_ps(_mm512_loadu_ps(dst), y[j]) : y[j]);
                }
            }
        }
    }
}

/* out (n, h, w, outs) (+)= the convolution of in (n, h, w, ins; fp32, or bf16 in in_bf16) with the
 * transformed weights u, plus bias (NULL: none). */
static void run(float *out, bool accumulate, const float *in, const uint16_t *in_bf16, const uint16_t *u,
                const float *bias, size_t n, TileGeometry g) {
    const size_t ins = g.ins, outs = g.outs, tiles = n * g.tiles_per_image, n_threads = (size_t)threads_get();
    const size_t tile_bytes = 16 * (ins * sizeof(uint16_t) + outs * sizeof(float)); /* of V and M */
    const size_t chunk_max = tile_chunk_max(tile_bytes, CHUNK_BYTES, ROWS_NARROW); /* both row blocks */
    const size_t v_stride = chunk_max * ins, m_stride = chunk_max * outs;
    const size_t thread_bytes = (16 * v_stride * sizeof(uint16_t) + 16 * m_stride * sizeof(float) + 63) / 64 * 64;
    char *buffers = grow_buffer(&chunk_buffers, n_threads * thread_bytes);
    const TileWork work = tile_work(grow_buffer(&work_shares, n_threads * sizeof(WorkShare)), n_threads, tiles,
                                    ROWS_NARROW, chunk_max);
#pragma omp parallel num_threads((int)n_threads)
    {
        const size_t id = (size_t)omp_get_thread_num();
        uint16_t *v = (uint16_t *)(buffers + id * thread_bytes);
        float *m = (float *)(v + 16 * v_stride);
        size_t first, count;
        while (tile_work_next(&work, id, &first, &count)) {
            transform_chunk_inputs(v, v_stride, in, in_bf16, g, first, count);
            for (size_t x = 0; x < 16; x++)
                gemm(v + x * v_stride, ins, u + x * ins * outs, outs, m + x * m_stride, count);
            transform_chunk_outputs(out, accumulate, bias, m, m_stride, g, first, count);
        }
    }
}

/* ------------------------------------------------------------------------------------------------ */
/* Backward-weights */

/* Z = A dY A^T of tile `tile`'s 2x2 output gradient dY (zero outside the image), sixteen channels from c. */
static inline __attribute__((always_inline)) void transform_grad(__m512 z[16], const float *dout, TileGeometry g,
                                                                 size_t tile, size_t c) {
    const TileOrigin o = tile_origin(g, tile);
    __m512 dy[2][2];
#pragma GCC unroll 2
    for (size_t i = 0; i < 2; i++)
#pragma GCC unroll 2
        for (size_t j = 0; j < 2; j++)
            dy[i][j] = o.y + i < g.h && o.x + j < g.w
                           ? _mm512_loadu_ps(dout + tile_out_at(g, o.n, o.y + i, o.x + j) + c)
                           : _mm512_setzero_ps();
    const __m512 zero = _mm512_setzero_ps();
    const __m512 rows[4][2] = {{dy[0][0], dy[0][1]},
                               {_mm512_add_ps(dy[0][0], dy[1][0]), _mm512_add_ps(dy[0][1], dy[1][1])},
                               {_mm512_sub_ps(dy[0][0], dy[1][0]), _mm512_sub_ps(dy[0][1], dy[1][1])},
                               {_mm512_sub_ps(zero, dy[1][0]), _mm512_sub_ps(zero, dy[1][1])}};
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++) {
        z[4 * i + 0] = rows[i][0];
        z[4 * i + 1] = _mm512_add_ps(rows[i][0], rows[i][1]);
        z[4 * i + 2] = _mm512_sub_ps(rows[i][0], rows[i][1]);
        z[4 * i + 3] = _mm512_sub_ps(zero, rows[i][1]);
    }
}

/* V and Z of the chunk's tiles, two by two (a missing second tile of the last pair counts as zeros). */
static void transform_chunk_pairs(uint16_t *v, size_t v_stride, uint16_t *z, size_t z_stride, const float *in,
                                  const uint16_t *in_bf16, const float *dout, TileGeometry g, size_t first,
                                  size_t count, size_t tiles) {
#pragma omp for schedule(static)
    for (size_t pair = 0; pair < (count + 1) / 2; pair++) {
        const size_t t0 = first + 2 * pair, t1 = t0 + 1;
        const Patch p0 = patch_of(g, t0), p1 = t1 < tiles ? patch_of(g, t1) : (Patch){0};
        for (size_t c = 0; c < g.ins; c += 16) {
            __m512 e0[16], e1[16];
            transform_patch(e0, in, in_bf16, &p0, c);
            transform_patch(e1, in, in_bf16, &p1, c);
#pragma GCC unroll 16
            for (size_t x = 0; x < 16; x++) store_pair(v + x * v_stride + (pair * g.ins + c) * 2, e0[x], e1[x]);
        }
        for (size_t c = 0; c < g.outs; c += 16) {
            __m512 z0[16], z1[16];
            transform_grad(z0, dout, g, t0, c);
            if (t1 < tiles) transform_grad(z1, dout, g, t1, c);
            else
                for (int x = 0; x < 16; x++) z1[x] = _mm512_setzero_ps();
#pragma GCC unroll 16
            for (size_t x = 0; x < 16; x++) store_pair(z + x * z_stride + (pair * g.outs + c) * 2, z0[x], z1[x]);
        }
    }
}

/* Rows `first` to `first + WEIGHTS_GROUP` of du (ins x outs) += v^T z over the chunk's pairs of tiles. */
static void gemm_weights(const uint16_t *v, size_t ins, size_t first, const uint16_t *z, size_t outs, size_t pairs,
                         float *du) {
    for (size_t o = 0; o < outs;) {
        const bool wide = outs - o >= 64;
        const size_t rows = wide ? WEIGHTS_ROWS_WIDE : WEIGHTS_ROWS_NARROW;
        for (size_t r = first; r < first + WEIGHTS_GROUP; r += rows) {
            const uint16_t *a = v + 2 * r;
            float *c = du + r * outs + o;
            if (wide) pairs_block(a, 2, 2 * ins, z + 2 * o, outs, pairs, c, true, WEIGHTS_ROWS_WIDE, 4);
            else pairs_block(a, 2, 2 * ins, z + 2 * o, outs, pairs, c, true, WEIGHTS_ROWS_NARROW, 2);
        }
        o += wide ? 64 : 32;
    }
}

/* dweight (Co, Ci, 3, 3) += G^T dU G for every kernel, sixteen output channels at a time. */
static void add_weight_gradient(float *dweight, const float *du, size_t ci, size_t co) {
    const __m512i lanes = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                             _mm512_set1_epi32((int)(ci * 9)));
    const __m512 half = _mm512_set1_ps(0.5f);
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < ci; i++)
        for (size_t o = 0; o < co; o += 16) {
            __m512 t[3][4]; /* G^T dU */
#pragma GCC unroll 4
            for (int c = 0; c < 4; c++) {
                const __m512 m0 = _mm512_loadu_ps(du + ((size_t)(0 + c) * ci + i) * co + o);
                const __m512 m1 = _mm512_loadu_ps(du + ((size_t)(4 + c) * ci + i) * co + o);
                const __m512 m2 = _mm512_loadu_ps(du + ((size_t)(8 + c) * ci + i) * co + o);
                const __m512 m3 = _mm512_loadu_ps(du + ((size_t)(12 + c) * ci + i) * co + o);
                const __m512 inner = _mm512_mul_ps(half, _mm512_add_ps(m1, m2));
                t[0][c] = _mm512_add_ps(m0, inner);
                t[1][c] = _mm512_mul_ps(half, _mm512_sub_ps(m1, m2));
                t[2][c] = _mm512_add_ps(inner, m3);
            }
            float *base = dweight + (o * ci + i) * 9;
#pragma GCC unroll 3
            for (int r = 0; r < 3; r++) { /* (G^T dU) G */
                const __m512 inner = _mm512_mul_ps(half, _mm512_add_ps(t[r][1], t[r][2]));
                const __m512 k[3] = {_mm512_add_ps(t[r][0], inner),
                                     _mm512_mul_ps(half, _mm512_sub_ps(t[r][1], t[r][2])),
                                     _mm512_add_ps(inner, t[r][3])};
#pragma GCC unroll 3
                for (int c = 0; c < 3; c++) {
                    float *at = base + 3 * r + c;
                    _mm512_i32scatter_ps(at, lanes, _mm512_add_ps(_mm512_i32gather_ps(lanes, at, 4), k[c]), 4);
                }
            }
        }
}

void conv2d_winograd_bf16_backward_weights(float *dweight, const float *dout, const float *inp,
                                           const uint16_t *inp_bf16, Conv2dShape s) {
    const TileGeometry g = tile_geometry(s.h, s.w, s.ci, s.co, 2);
    const size_t tiles = s.n * g.tiles_per_image;
    size_t chunk = WEIGHTS_CHUNK_BYTES / (16 * (s.ci + s.co) * sizeof(uint16_t)) / 2 * 2;
    if (chunk > tiles + 1) chunk = (tiles + 1) / 2 * 2;
    const size_t v_stride = chunk * s.ci, z_stride = chunk * s.co; /* elements between terms */
    uint16_t *v = grow_buffer(&chunk_buffers, 16 * (v_stride + z_stride) * sizeof(uint16_t)), *z = v + 16 * v_stride;
    float *du = grow_buffer(&weight_sums, 16 * s.ci * s.co * sizeof(float));
    memset(du, 0, 16 * s.ci * s.co * sizeof(float));
#pragma omp parallel num_threads(threads_get())
    for (size_t first = 0; first < tiles; first += chunk) {
        const size_t count = tiles - first < chunk ? tiles - first : chunk;
        transform_chunk_pairs(v, v_stride, z, z_stride, inp, inp_bf16, dout, g, first, count, tiles);
        const size_t groups = s.ci / WEIGHTS_GROUP;
#pragma omp for schedule(static)
        for (size_t item = 0; item < 16 * groups; item++) {
            const size_t x = item / groups;
            gemm_weights(v + x * v_stride, s.ci, item % groups * WEIGHTS_GROUP, z + x * z_stride, s.co, (count + 1) / 2,
                         du + x * s.ci * s.co);
        }
    }
    add_weight_gradient(dweight, du, s.ci, s.co);
}

/* ------------------------------------------------------------------------------------------------ */

/* The forward's transformed weights: the held copy (made on first use) while hold is set, else transformed
 * into the shared buffer. */
static const uint16_t *forward_weights(const float *weight, Conv2dShape s, bool hold) {
    const size_t bytes = 16 * s.ci * s.co * sizeof(uint16_t);
    if (!hold) {
        uint16_t *u = grow_buffer(&transformed_weights, bytes);
        transform_weights(u, weight, s.co, s.ci, false);
        return u;
    }
    uint16_t *u = held_transform_find(&held, weight, s.ci, s.co);
    if (u) return u;
    u = held_transform_add(&held, weight, s.ci, s.co, bytes);
    transform_weights(u, weight, s.co, s.ci, false);
    return u;
}

void conv2d_winograd_bf16_forward(float *out, const float *inp, const uint16_t *inp_bf16, const float *weight,
                                  const float *bias, Conv2dShape s, bool hold) {
    run(out, false, inp, inp_bf16, forward_weights(weight, s, hold), bias, s.n, tile_geometry(s.h, s.w, s.ci, s.co, 2));
}

void conv2d_winograd_bf16_backward_data(float *dinp, bool accumulate, const float *dout, const float *weight,
                                        Conv2dShape s) {
    uint16_t *u = grow_buffer(&transformed_weights, 16 * s.ci * s.co * sizeof(uint16_t));
    transform_weights(u, weight, s.co, s.ci, true);
    run(dinp, accumulate, dout, NULL, u, NULL, s.n, tile_geometry(s.h, s.w, s.co, s.ci, 2));
}

void conv2d_winograd_bf16_release_held(void) { held_transforms_free(&held); }

void conv2d_winograd_bf16_free(void) {
    conv2d_winograd_bf16_release_held();
    grow_buffer_free(&transformed_weights);
    grow_buffer_free(&chunk_buffers);
    grow_buffer_free(&weight_sums);
    grow_buffer_free(&work_shares);
}

#else
#define KERNEL_BUILT 0

void conv2d_winograd_bf16_forward(float *out, const float *inp, const uint16_t *inp_bf16, const float *weight,
                                  const float *bias, Conv2dShape s, bool hold) {
    (void)out, (void)inp, (void)inp_bf16, (void)weight, (void)bias, (void)s, (void)hold;
    CHECK(false, "conv2d_winograd_bf16_forward: built without AVX-512 BF16");
}

void conv2d_winograd_bf16_backward_data(float *dinp, bool accumulate, const float *dout, const float *weight,
                                        Conv2dShape s) {
    (void)dinp, (void)accumulate, (void)dout, (void)weight, (void)s;
    CHECK(false, "conv2d_winograd_bf16_backward_data: built without AVX-512 BF16");
}

void conv2d_winograd_bf16_backward_weights(float *dweight, const float *dout, const float *inp,
                                           const uint16_t *inp_bf16, Conv2dShape s) {
    (void)dweight, (void)dout, (void)inp, (void)inp_bf16, (void)s;
    CHECK(false, "conv2d_winograd_bf16_backward_weights: built without AVX-512 BF16");
}

void conv2d_winograd_bf16_release_held(void) {}
void conv2d_winograd_bf16_free(void) {}
#endif

bool conv2d_winograd_bf16_fits(Conv2dShape s, Conv2dParams p) {
    const bool pad1 = p.pad_top == 1 && p.pad_bottom == 1 && p.pad_left == 1 && p.pad_right == 1;
    const bool large = s.ci >= WINOGRAD_BF16_MIN_CHANNELS && s.co >= WINOGRAD_BF16_MIN_CHANNELS &&
                       s.n * s.h * s.w >= WINOGRAD_BF16_MIN_POSITIONS;
    return KERNEL_BUILT && enabled && ops_precision() == OPS_PRECISION_BF16 && !ops_amx_supported() &&
           ops_bf16_supported() && s.kh == 3 && s.kw == 3 && p.stride == 1 && pad1 && s.ci % 32 == 0 &&
           s.co % 32 == 0 && (large || any_size);
}
