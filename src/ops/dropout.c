/* Dropout with a counter-based mask (Srivastava et al., "Dropout", JMLR 2014;
 * https://pytorch.org/docs/stable/generated/torch.nn.Dropout.html, whose training-mode scaling this
 * follows).
 *
 *   keep_i = rng_uniform(seed, stream, first_index + i) >= p
 *   out_i  = keep_i ? inp_i / (1 - p) : 0
 *   dinp_i += keep_i ? dout_i / (1 - p) : 0
 *
 * Buffers: inp, out (any shape, out may alias inp); dout, dinp (any equal shapes).
 *
 * The mask is never stored: backward draws the same decisions again from the same (seed, stream, index).
 * Drawing uses the Philox block layout of core/rng.c directly (counter = block index and stream, key =
 * seed; element i is lane i % 4 of block i / 4), so one Philox call serves four elements instead of one;
 * and "u >= p" is tested exactly on the 24-bit integer u * 2^24 that rng_uniform scales. The tests check
 * every decision against rng_uniform itself. PyTorch's generator is not reproduced: its masks differ. */
#include "ops/dropout.h"

#include <math.h>
#include <string.h>

#include "core/check.h"
#include "core/rng.h"

/* Large enough that waking the thread team pays off (Philox costs ~10 ns per four elements). */
#define DROPOUT_PARALLEL_ELEMS 8192

static void expect_params(DropoutParams p, const char *where) {
    CHECK(p.p >= 0 && p.p < 1, "%s: dropout probability p = %g, expected 0 <= p < 1", where, (double)p.p);
}

/* y[i] = keep(first_index + i) ? x[i] * scale : 0, or y[i] += ... when accumulate. */
static void apply_mask(float *y, const float *x, size_t n, DropoutParams p, int accumulate) {
    /* u = (bits >> 8) 2^-24 >= p  <=>  bits >> 8 >= ceil(p 2^24), exactly, as p 2^24 is exact in double. */
    const uint32_t threshold = (uint32_t)ceil((double)p.p * 16777216.0);
    const float scale = (float)(1.0 / (1.0 - (double)p.p));
    const uint32_t key[2] = {(uint32_t)p.seed, (uint32_t)(p.seed >> 32)};
    const uint64_t first = p.first_index, first_block = first / 4, last_block = (first + n - 1) / 4;
#pragma omp parallel for schedule(static) if (n >= DROPOUT_PARALLEL_ELEMS)
    for (uint64_t block = first_block; block <= last_block; block++) {
        const uint32_t counter[4] = {(uint32_t)block, (uint32_t)(block >> 32), (uint32_t)p.stream,
                                     (uint32_t)(p.stream >> 32)};
        uint32_t bits[4];
        philox4x32_10(counter, key, bits);
        for (uint64_t lane = 0; lane < 4; lane++) {
            uint64_t index = block * 4 + lane;
            if (index < first || index >= first + n) continue;
            size_t i = (size_t)(index - first);
            float v = (bits[lane] >> 8) >= threshold ? x[i] * scale : 0.0f;
            if (accumulate) y[i] += v;
            else y[i] = v;
        }
    }
}

void dropout_forward(Tensor out, Tensor inp, DropoutParams p) {
    EXPECT_NDIM(inp, "inp", inp.ndim);
    tensor_expect(out, __func__, "out", inp.ndim, inp.shape);
    expect_params(p, __func__);
    if (p.p == 0) {
        if (out.data != inp.data) memcpy(out.data, inp.data, tensor_numel(inp) * sizeof(float));
        return;
    }
    apply_mask(out.data, inp.data, tensor_numel(inp), p, 0);
}

void dropout_backward(Tensor dinp, Tensor dout, DropoutParams p) {
    EXPECT_NDIM(dout, "dout", dout.ndim);
    tensor_expect(dinp, __func__, "dinp", dout.ndim, dout.shape);
    expect_params(p, __func__);
    const size_t n = tensor_numel(dout);
    if (p.p == 0) {
        float *g = dinp.data;
        const float *d = dout.data;
#pragma omp parallel for simd schedule(static) if (n >= DROPOUT_PARALLEL_ELEMS)
        for (size_t i = 0; i < n; i++) g[i] += d[i];
        return;
    }
    /* out = keep ? inp / (1 - p) : 0 */
    apply_mask(dinp.data, dout.data, n, p, 1);
}
