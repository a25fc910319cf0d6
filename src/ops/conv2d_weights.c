/* Moving conv2d weights between PyTorch's (Co, Ci, kH, kW) layout and the blocked layouts oneDNN's
 * kernels pick with output channels innermost: Acdb32a (forward, brgconv) and ABcd16b16a (the weight
 * gradient of backward-weights). Every fast-path call moves one whole weight tensor (oneDNN's kernels
 * cannot read ours, and the weights change every step), and at the U-Net's deep levels that tensor
 * outweighs the activations: 29 MB for a 896->896 3x3 conv whose 8x8 forward computes for ~16 ms on one
 * core. Gathering a run of output channels is a strided read that oneDNN 2.6's generic reorder does
 * slowly (~6.5 ms for that tensor into Acdb32a, ~3 x memcpy); these loops write each contiguous run of
 * the blocked layout from a tile of source rows that stays in L1 (~5 ms), and the gradient direction
 * adds into dweight in the same pass. Measured end to end at 1 thread: forward +13 %, backward-weights
 * +8 % at 8x8 896->896. Layouts with input channels innermost (ABcd16a16b, backward-data) read
 * contiguously and oneDNN's reorder is already near memcpy speed there, faster than these loops, so
 * weight_layout_of declines them and the caller uses oneDNN's reorder.
 *
 * The layouts handled, from oneDNN's blocking descriptor: o blocked by bo and innermost, i blocked by
 * bi or not at all, kH and kW not blocked:
 *   offset(o, i, ky, kx) = (o / bo) s_ob + (i / bi) s_ib + ky s_ky + kx s_kx + (o % bo) + (i % bi) s_i
 * over channel counts padded to the blocks (padding written as zero). No reductions: the results do
 * not depend on threads. */
#include "ops/conv2d_weights.h"

#include <stdint.h>

/* Input channels handled per tile: bo rows of TILE_I x kH kW floats stay in L1 while they are written. */
enum { TILE_I = 16 };

WeightLayout weight_layout_of(const dnnl_memory_desc_t *md) {
    WeightLayout l = {0};
    const dnnl_blocking_desc_t *b = &md->format_desc.blocking;
    if (md->format_kind != dnnl_blocked || md->ndims != 4 || md->data_type != dnnl_f32 || md->offset0 != 0 ||
        md->extra.flags != 0 || b->inner_nblks < 1 || b->inner_nblks > 2)
        return l;
    for (int d = 0; d < 4; d++)
        if (md->padded_offsets[d] != 0 || (d >= 2 && md->padded_dims[d] != md->dims[d])) return l;
    /* Innermost block: output channels; the one outside it, if any: input channels. */
    if (b->inner_idxs[b->inner_nblks - 1] != 0) return l;
    if (b->inner_nblks == 2 && b->inner_idxs[0] != 1) return l;
    size_t bo = (size_t)b->inner_blks[b->inner_nblks - 1], bi = b->inner_nblks == 2 ? (size_t)b->inner_blks[0] : 1;
    return (WeightLayout){
        .ok = true,
        .co = (size_t)md->dims[0], .ci = (size_t)md->dims[1], .kh = (size_t)md->dims[2], .kw = (size_t)md->dims[3],
        .co_pad = (size_t)md->padded_dims[0], .ci_pad = (size_t)md->padded_dims[1], .bo = bo, .bi = bi,
        .s_ob = (size_t)b->strides[0], .s_ib = (size_t)b->strides[1], .s_ky = (size_t)b->strides[2],
        .s_kx = (size_t)b->strides[3], .s_i = bi > 1 ? bo : 0,
    };
}

typedef enum Move { MOVE_TO_BLOCKED, MOVE_TO_BLOCKED_FLIPPED, MOVE_ADD_FROM_BLOCKED } Move;

/* Visits every contiguous run of the blocked layout (the bo output channels of one block at one input
 * channel and one tap), tile by tile in parallel, and copies it from `plain` or adds it into `plain`.
 * plain is (Co, Ci, kH, kW), or for MOVE_TO_BLOCKED_FLIPPED (Ci, Co, kH, kW) read with both kernel axes
 * reversed. Offsets come from a small table per tile, so the inner loops divide nothing. */
static void for_each_run(const WeightLayout *l, float *blocked, float *plain, Move move) {
    const size_t k_taps = l->kh * l->kw, bo = l->bo;
    const bool flipped = move == MOVE_TO_BLOCKED_FLIPPED;
    /* plain index of (o, i, tap k) = o step_o + i step_i + (flipped ? k_taps - 1 - k : k) */
    const size_t step_o = flipped ? k_taps : l->ci * k_taps, step_i = flipped ? l->co * k_taps : k_taps;
    const size_t n_blocks = l->co_pad / bo, n_tiles = (l->ci_pad + TILE_I - 1) / TILE_I;

    /* Walk the plain tensor along its rows: in the flipped source the tiled axis (our input
     * channels) is the row axis, so tiles go outside there. Small tensors (conv_in's 6k weights) are
     * not worth waking the threads for. */
    const bool parallel = l->co_pad * l->ci_pad * k_taps >= ((size_t)1 << 16);
#pragma omp parallel for collapse(2) schedule(static) if (parallel)
    for (size_t outer = 0; outer < (flipped ? n_tiles : n_blocks); outer++) {
        for (size_t inner = 0; inner < (flipped ? n_blocks : n_tiles); inner++) {
            const size_t ob = flipped ? inner : outer, tile = flipped ? outer : inner;
            /* Every block starts below co: co_pad only rounds co up to a multiple of bo. */
            const size_t o0 = ob * bo, n_o = l->co - o0 < bo ? l->co - o0 : bo;
            const size_t i0 = tile * TILE_I, i_end = i0 + TILE_I < l->ci_pad ? i0 + TILE_I : l->ci_pad;
            size_t i_offset[TILE_I];
            for (size_t i = i0; i < i_end; i++) i_offset[i - i0] = (i / l->bi) * l->s_ib + (i % l->bi) * l->s_i;
            float *b0 = blocked + ob * l->s_ob;
            for (size_t k = 0; k < k_taps; k++) {
                const size_t plain_k = flipped ? k_taps - 1 - k : k;
                const size_t tap_offset = (k / l->kw) * l->s_ky + (k % l->kw) * l->s_kx;
                for (size_t i = i0; i < i_end; i++) {
                    float *restrict b = b0 + tap_offset + i_offset[i - i0];
                    const size_t n_valid = i < l->ci ? n_o : 0;
                    float *restrict w = plain + (n_valid ? o0 * step_o + i * step_i + plain_k : 0);
                    if (move == MOVE_ADD_FROM_BLOCKED) {
#pragma omp simd
                        for (size_t r = 0; r < n_valid; r++) w[r * step_o] += b[r];
                    } else {
#pragma omp simd
                        for (size_t r = 0; r < n_valid; r++) b[r] = w[r * step_o];
                        for (size_t r = n_valid; r < bo; r++) b[r] = 0.0f;
                    }
                }
            }
        }
    }
}

/* `plain` is only read in these two directions. */
void weight_to_blocked(const WeightLayout *l, float *blocked, const float *oihw) {
    for_each_run(l, blocked, (float *)(uintptr_t)oihw, MOVE_TO_BLOCKED);
}

void weight_to_blocked_flipped(const WeightLayout *l, float *blocked, const float *weight) {
    for_each_run(l, blocked, (float *)(uintptr_t)weight, MOVE_TO_BLOCKED_FLIPPED);
}

void weight_add_from_blocked(const WeightLayout *l, float *oihw, const float *blocked) {
    for_each_run(l, (float *)(uintptr_t)blocked, oihw, MOVE_ADD_FROM_BLOCKED);
}

void weight_flip(float *restrict flipped, const float *restrict weight, size_t co, size_t ci, size_t kh, size_t kw) {
    const size_t taps = kh * kw;
#pragma omp parallel for schedule(static) if (co * ci * taps >= 65536)
    for (size_t i = 0; i < ci; i++)
        for (size_t o = 0; o < co; o++)
            for (size_t k = 0; k < taps; k++) flipped[(i * co + o) * taps + k] = weight[(o * ci + i) * taps + taps - 1 - k];
}
