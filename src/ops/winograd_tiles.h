/* The tiles of a Winograd convolution (stride 1, as many outputs as inputs) over channels-last images
 * (N, H, W, C): m x m outputs per tile, numbered image by image, row by row; with an r x r kernel each reads
 * an (m + r - 1) x (m + r - 1) input patch from pad_top rows and pad_left columns before its first output
 * (3x3 kernels: one each). conv2d_winograd_bf16.c tiles by 2, conv2d_winograd_fp32.c by 4. */
#ifndef DIFFUSE_OPS_WINOGRAD_TILES_H
#define DIFFUSE_OPS_WINOGRAD_TILES_H

#include <stdbool.h>
#include <stddef.h>

typedef struct TileGeometry {
    size_t h, w, ins, outs, m, tiles_w, tiles_per_image, pad_top, pad_left;
} TileGeometry;

/* For a 3x3 kernel with padding 1. */
static inline TileGeometry tile_geometry(size_t h, size_t w, size_t ins, size_t outs, size_t m) {
    return (TileGeometry){.h = h, .w = w, .ins = ins, .outs = outs, .m = m, .tiles_w = (w + m - 1) / m,
                          .tiles_per_image = ((h + m - 1) / m) * ((w + m - 1) / m), .pad_top = 1, .pad_left = 1};
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
    *at = inside ? ((o.n * g.h + (size_t)y) * g.w + (size_t)x) * g.ins : 0;
    return inside;
}

/* The most tiles per chunk: a multiple of `block` (the GEMM's row blocks) whose buffers of tile_bytes per
 * tile fit in chunk_bytes. */
static inline size_t tile_chunk_max(size_t tile_bytes, size_t chunk_bytes, size_t block) {
    const size_t chunk = chunk_bytes / tile_bytes / block * block;
    return chunk ? chunk : block;
}

/* Thread `id` of `team`'s share of the tiles, [begin, end): whole blocks, split as evenly as they go; and
 * its chunk, at most chunk_max tiles, about the same for each of its chunks. Against chunks dealt out in
 * turn, the fp32 forward at fashion-mnist's 7x7 and 14x14 layers ran 4-12 % faster (a 7x7 layer of batch 64
 * had made four chunks of 72, 72, 72 and 40 tiles for two threads). */
typedef struct TileShare {
    size_t begin, end, chunk;
} TileShare;

static inline TileShare tile_share(size_t tiles, size_t block, size_t chunk_max, size_t id, size_t team) {
    const size_t blocks = (tiles + block - 1) / block;
    TileShare s = {blocks * id / team * block, blocks * (id + 1) / team * block, block};
    if (s.end > tiles) s.end = tiles;
    if (s.end > s.begin) {
        const size_t pieces = (s.end - s.begin + chunk_max - 1) / chunk_max;
        s.chunk = ((s.end - s.begin + pieces - 1) / pieces + block - 1) / block * block;
    }
    return s;
}

#endif
