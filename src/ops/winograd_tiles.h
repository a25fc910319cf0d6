/* The tiles of a Winograd convolution (stride 1, as many outputs as inputs) over channels-last images
 * (N, H, W, C): m x m outputs per tile, numbered image by image, row by row; with an r x r kernel each reads
 * an (m + r - 1) x (m + r - 1) input patch from pad_top rows and pad_left columns before its first output
 * (3x3 kernels: one each). conv2d_winograd_bf16.c tiles by 2, conv2d_winograd_fp32.c by 4.
 * Pixel (n, y, x) of the input lies at n in.image + y in.row + x in.pixel floats, its channels contiguous,
 * and likewise for the output: contiguous images, or one phase of an image twice the size, whose every
 * other pixel of every other row it is (upsample_conv.c). */
#ifndef DIFFUSE_OPS_WINOGRAD_TILES_H
#define DIFFUSE_OPS_WINOGRAD_TILES_H

#include <stdbool.h>
#include <stddef.h>

#include "core/work_steal.h"
#include "ops/conv2d_internal.h"

/* Of a contiguous (N, h, w, c) image. */
static inline ImageStrides image_strides(size_t h, size_t w, size_t c) { return (ImageStrides){c, w * c, h * w * c}; }

typedef struct TileGeometry {
    size_t h, w, ins, outs, m, tiles_w, tiles_per_image, pad_top, pad_left;
    ImageStrides in, out;
} TileGeometry;

/* For a 3x3 kernel with padding 1, contiguous images. */
static inline TileGeometry tile_geometry(size_t h, size_t w, size_t ins, size_t outs, size_t m) {
    return (TileGeometry){.h = h, .w = w, .ins = ins, .outs = outs, .m = m, .tiles_w = (w + m - 1) / m,
                          .tiles_per_image = ((h + m - 1) / m) * ((w + m - 1) / m), .pad_top = 1, .pad_left = 1,
                          .in = image_strides(h, w, ins), .out = image_strides(h, w, outs)};
}

/* Where output pixel (n, y, x) starts. */
static inline size_t tile_out_at(TileGeometry g, size_t n, size_t y, size_t x) {
    return n * g.out.image + y * g.out.row + x * g.out.pixel;
}

/* The image of a tile and its first output position. */
typedef struct TileOrigin {
    size_t n, y, x;
} TileOrigin;

static inline TileOrigin tile_origin(TileGeometry g, size_t tile) {
    const size_t in_image = tile % g.tiles_per_image;
    return (TileOrigin){tile / g.tiles_per_image, g.m * (in_image / g.tiles_w), g.m * (in_image % g.tiles_w)};
}

/* Whether position (i, j) of the input patch of the tile at o lies inside the image (else it is padding),
 * and where its channels start in the input (*at; 0 for padding). */
static inline bool tile_patch_position(TileGeometry g, TileOrigin o, int i, int j, size_t *at) {
    const long y = (long)o.y - (long)g.pad_top + i, x = (long)o.x - (long)g.pad_left + j;
    const bool inside = y >= 0 && y < (long)g.h && x >= 0 && x < (long)g.w;
    *at = inside ? o.n * g.in.image + (size_t)y * g.in.row + (size_t)x * g.in.pixel : 0;
    return inside;
}

/* Where the input patch (patch x patch positions) of the tile at o starts, in the input at in; NULL when part
 * of it lies outside the image. */
static inline const float *tile_patch_base(TileGeometry g, TileOrigin o, const float *in, size_t patch) {
    if (o.y < g.pad_top || o.x < g.pad_left || o.y - g.pad_top + patch > g.h || o.x - g.pad_left + patch > g.w)
        return NULL;
    return in + o.n * g.in.image + (o.y - g.pad_top) * g.in.row + (o.x - g.pad_left) * g.in.pixel;
}

/* Of the m x m outputs of the tile at o, how many rows and columns lie inside the image. */
static inline size_t tile_rows_inside(TileGeometry g, TileOrigin o) { return g.h - o.y < g.m ? g.h - o.y : g.m; }
static inline size_t tile_cols_inside(TileGeometry g, TileOrigin o) { return g.w - o.x < g.m ? g.w - o.x : g.m; }

/* The most tiles per chunk: a multiple of `block` (the GEMM's row blocks) whose buffers of tile_bytes per
 * tile fit in chunk_bytes. */
static inline size_t tile_chunk_max(size_t tile_bytes, size_t chunk_bytes, size_t block) {
    const size_t chunk = chunk_bytes / tile_bytes / block * block;
    return chunk ? chunk : block;
}

/* The tiles of one run shared out among `team` threads in row blocks of `block` (core/work_steal.h): each
 * thread takes chunks of its share of at most chunk_max tiles, about the same size (against chunks dealt
 * out in turn, the fp32 forward at fashion-mnist's 7x7 and 14x14 layers ran 4-12 % faster: a 7x7 layer of
 * batch 64 had made four chunks of 72, 72, 72 and 40 tiles for two threads), then steals from the others'.
 * The last chunks of a share shrink to two blocks, so threads finish within a few blocks of each other:
 * fashion-mnist's training step, 2 threads, 0.8 % faster than with fixed shares (12 pairs). */
typedef struct TileWork {
    WorkShare *shares;
    size_t team, tiles, block, piece; /* piece: blocks per chunk */
} TileWork;

/* shares: team WorkShares. Before the parallel region. */
static inline TileWork tile_work(WorkShare *shares, size_t team, size_t tiles, size_t block, size_t chunk_max) {
    const size_t blocks = (tiles + block - 1) / block, share = (blocks + team - 1) / team;
    const size_t max_blocks = chunk_max / block, pieces = (share + max_blocks - 1) / max_blocks;
    work_share_init(shares, team, blocks);
    return (TileWork){shares, team, tiles, block, pieces ? (share + pieces - 1) / pieces : 1};
}

/* Thread id's next chunk of tiles, [*first, *first + *count); false when none is left. */
static inline bool tile_work_next(const TileWork *w, size_t id, size_t *first, size_t *count) {
    size_t b0, b1;
    if (!work_share_next(w->shares, w->team, id, w->piece, 2, &b0, &b1)) return false;
    const size_t end = b1 * w->block < w->tiles ? b1 * w->block : w->tiles;
    *first = b0 * w->block, *count = end - *first;
    return true;
}

#endif
