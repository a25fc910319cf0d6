/* The elementwise glue between a U-Net's layers, on channels-last activations (see diffusers'
 * ResnetBlock2D and UNet2DModel: torch.cat(dim=1) of skips, (input + hidden) / output_scale_factor, the
 * time embedding added per channel, and resnet_time_scale_shift = "scale_shift").
 *
 *   concat_channels:  out[..., 0:Ca] = a,  out[..., Ca:Ca+Cb] = b;    da += dout[..., 0:Ca], db += dout[..., Ca:]
 *   add_scaled:       out = (a + b) scale;                             da += dout scale, db += dout scale
 *   add_channel:      out[n, s, c] = inp[n, s, c] + v[n, c];           dinp += dout, dv[n, c] += sum_s dout
 *   scale_shift:      out = inp (1 + scale[n, c]) + shift[n, c];       dinp += dout (1 + scale),
 *                                                                      dscale += sum_s dout inp, dshift += sum_s dout
 *
 * Buffers: a, b (N, ..., Ca), (N, ..., Cb) with equal leading dims and out (N, ..., Ca + Cb); add_scaled's
 * a, b, out any equal shapes; add_channel and scale_shift inp, out, dinp, dout (N, ..., C) with v, dv, scale,
 * shift, dscale, dshift (N, C). "..." is any number of positions S (H, W or L), possibly none.
 *
 * The per-channel reductions run one task per (sample, block of 64 channels), each summing its positions
 * in order in double, so their results do not depend on the thread count. */
#include "ops/elementwise.h"

#include <string.h>

#include "core/check.h"

/* Large enough that waking the thread team pays off. */
#define ELEMENTWISE_PARALLEL_ELEMS 32768
/* Channels per reduction task: whole cache lines of each row, and enough tasks at small batches. */
#define CHANNEL_BLOCK 64

/* CHECKs that t is (N, ..., C) and returns its positions per sample (the product of the middle dims). */
static size_t positions_of(Tensor t, const char *where, const char *name) {
    tensor_expect(t, where, name, t.ndim, NULL);
    char buf[96];
    CHECK(t.ndim >= 2, "%s: %s has shape %s, expected (N, ..., C)", where, name, tensor_shape_str(t, buf, sizeof buf));
    return tensor_numel(t) / (t.shape[0] * t.shape[t.ndim - 1]);
}

/* ------------------------------------------------------------------------------------------------ */
/* concat_channels */

static void expect_concat_shapes(Tensor out, Tensor a, Tensor b, const char *where) {
    positions_of(out, where, "out");
    Tensor want_a = out, want_b = out;
    want_a.shape[out.ndim - 1] = a.shape[a.ndim - 1];
    want_b.shape[out.ndim - 1] = out.shape[out.ndim - 1] - want_a.shape[out.ndim - 1];
    tensor_expect(a, where, "a", out.ndim, want_a.shape);
    CHECK(a.shape[a.ndim - 1] < out.shape[out.ndim - 1], "%s: a has %zu channels, out only %zu", where,
          a.shape[a.ndim - 1], out.shape[out.ndim - 1]);
    tensor_expect(b, where, "b", out.ndim, want_b.shape);
}

void concat_channels_forward(Tensor out, Tensor a, Tensor b) {
    EXPECT_NDIM(a, "a", a.ndim);
    expect_concat_shapes(out, a, b, __func__);
    const size_t ca = a.shape[a.ndim - 1], cb = b.shape[b.ndim - 1], rows = tensor_numel(a) / ca;
#pragma omp parallel for schedule(static) if (tensor_numel(out) >= ELEMENTWISE_PARALLEL_ELEMS)
    for (size_t r = 0; r < rows; r++) {
        memcpy(out.data + r * (ca + cb), a.data + r * ca, ca * sizeof(float));
        memcpy(out.data + r * (ca + cb) + ca, b.data + r * cb, cb * sizeof(float));
    }
}

void concat_channels_backward(Tensor da, Tensor db, Tensor dout) {
    positions_of(dout, __func__, "dout");
    if (tensor_is_none(da) && tensor_is_none(db)) return;
    /* The split point comes from whichever gradient is given. */
    size_t c = dout.shape[dout.ndim - 1];
    size_t ca = !tensor_is_none(da) ? (EXPECT_NDIM(da, "da", dout.ndim), da.shape[da.ndim - 1])
                                    : (EXPECT_NDIM(db, "db", dout.ndim), c - db.shape[db.ndim - 1]);
    CHECK(ca < c, "%s: the gradients have more channels than dout's %zu", __func__, c);
    Tensor want_a = dout, want_b = dout;
    want_a.shape[dout.ndim - 1] = ca, want_b.shape[dout.ndim - 1] = c - ca;
    if (!tensor_is_none(da)) tensor_expect(da, __func__, "da", dout.ndim, want_a.shape);
    if (!tensor_is_none(db)) tensor_expect(db, __func__, "db", dout.ndim, want_b.shape);
    const size_t cb = c - ca, rows = tensor_numel(dout) / c;
    float *pa = da.data, *pb = db.data;
    const bool set_a = da.overwrite, set_b = db.overwrite;
    CHECK(!(set_a || set_b) || pa != pb, "%s: da and db are one buffer, which cannot be overwritten", __func__);
#pragma omp parallel for schedule(static) if (tensor_numel(dout) >= ELEMENTWISE_PARALLEL_ELEMS)
    for (size_t r = 0; r < rows; r++) {
        const float *src = dout.data + r * c;
        /* out[r, 0:ca] = a[r], out[r, ca:c] = b[r] */
        if (pa && set_a) memcpy(pa + r * ca, src, ca * sizeof *pa);
        if (pa && !set_a) {
#pragma omp simd
            for (size_t k = 0; k < ca; k++) pa[r * ca + k] += src[k];
        }
        if (pb && set_b) memcpy(pb + r * cb, src + ca, cb * sizeof *pb);
        if (pb && !set_b) {
#pragma omp simd
            for (size_t k = 0; k < cb; k++) pb[r * cb + k] += src[ca + k];
        }
    }
}

/* ------------------------------------------------------------------------------------------------ */
/* add_scaled */

void add_scaled_forward(Tensor out, Tensor a, Tensor b, float scale) {
    EXPECT_NDIM(a, "a", a.ndim);
    tensor_expect(b, __func__, "b", a.ndim, a.shape);
    tensor_expect(out, __func__, "out", a.ndim, a.shape);
    const size_t n = tensor_numel(a);
    const float *x = a.data, *y = b.data;
    float *z = out.data; /* may alias a or b: each element is read before it is written */
    if (scale == 1.0f) {
#pragma omp parallel for simd schedule(static) if (n >= ELEMENTWISE_PARALLEL_ELEMS)
        for (size_t i = 0; i < n; i++) z[i] = x[i] + y[i];
    } else {
#pragma omp parallel for simd schedule(static) if (n >= ELEMENTWISE_PARALLEL_ELEMS)
        for (size_t i = 0; i < n; i++) z[i] = (x[i] + y[i]) * scale;
    }
}

void add_scaled_backward(Tensor da, Tensor db, Tensor dout, float scale) {
    EXPECT_NDIM(dout, "dout", dout.ndim);
    if (!tensor_is_none(da)) tensor_expect(da, __func__, "da", dout.ndim, dout.shape);
    if (!tensor_is_none(db)) tensor_expect(db, __func__, "db", dout.ndim, dout.shape);
    const size_t n = tensor_numel(dout);
    const float *g = dout.data;
    float *pa = da.data, *pb = db.data; /* da and db may be the same buffer (out = (x + x) scale) */
    /* out = (a + b) scale; one loop per gradient, so each vectorises (with da == db, each element gets
     * its two additions in the same order as in one loop) */
    CHECK(!db.overwrite, "%s: db cannot be overwritten (da may)", __func__);
    if (pa && da.overwrite) {
        CHECK(pa != pb, "%s: da and db are one buffer, which cannot be overwritten", __func__);
#pragma omp parallel for simd schedule(static) if (n >= ELEMENTWISE_PARALLEL_ELEMS)
        for (size_t i = 0; i < n; i++) pa[i] = g[i] * scale;
        pa = NULL;
    }
    for (int k = 0; k < 2; k++) {
        float *p = k == 0 ? pa : pb;
        if (!p) continue;
#pragma omp parallel for simd schedule(static) if (n >= ELEMENTWISE_PARALLEL_ELEMS)
        for (size_t i = 0; i < n; i++) p[i] += g[i] * scale;
    }
}

/* ------------------------------------------------------------------------------------------------ */
/* add_channel and scale_shift */

void add_channel_forward(Tensor out, Tensor inp, Tensor v) {
    const size_t s = positions_of(inp, __func__, "inp"), n = inp.shape[0], c = inp.shape[inp.ndim - 1];
    tensor_expect(out, __func__, "out", inp.ndim, inp.shape);
    EXPECT_SHAPE(v, "v", n, c);
    const float *x = inp.data;
    float *y = out.data; /* may alias x */
#pragma omp parallel for schedule(static) if (tensor_numel(inp) >= ELEMENTWISE_PARALLEL_ELEMS)
    for (size_t row = 0; row < n * s; row++) {
        const float *vn = v.data + row / s * c;
#pragma omp simd
        for (size_t k = 0; k < c; k++) y[row * c + k] = x[row * c + k] + vn[k];
    }
}

void add_channel_backward(Tensor dinp, Tensor dv, Tensor dout) {
    const size_t s = positions_of(dout, __func__, "dout"), n = dout.shape[0], c = dout.shape[dout.ndim - 1];
    if (!tensor_is_none(dinp)) tensor_expect(dinp, __func__, "dinp", dout.ndim, dout.shape);
    if (!tensor_is_none(dv)) EXPECT_SHAPE(dv, "dv", n, c);
    const size_t n_blocks = (c + CHANNEL_BLOCK - 1) / CHANNEL_BLOCK;
    const float *g = dout.data;
    float *dx = dinp.data;
#pragma omp parallel for schedule(static) if (tensor_numel(dout) >= ELEMENTWISE_PARALLEL_ELEMS)
    for (size_t task = 0; task < n * n_blocks; task++) {
        size_t sample = task / n_blocks, c0 = task % n_blocks * CHANNEL_BLOCK;
        size_t width = c - c0 < CHANNEL_BLOCK ? c - c0 : CHANNEL_BLOCK;
        double sum[CHANNEL_BLOCK] = {0};
        for (size_t p = 0; p < s; p++) {
            const float *gp = g + (sample * s + p) * c + c0;
            /* out = inp + v[n]: both receive dout */
            if (dx) {
                float *dxp = dx + (sample * s + p) * c + c0;
#pragma omp simd
                for (size_t k = 0; k < width; k++) dxp[k] += gp[k];
            }
#pragma omp simd
            for (size_t k = 0; k < width; k++) sum[k] += (double)gp[k];
        }
        if (dv.data)
            for (size_t k = 0; k < width; k++) dv.data[sample * c + c0 + k] += (float)sum[k];
    }
}

void scale_shift_forward(Tensor out, Tensor inp, Tensor scale, Tensor shift) {
    const size_t s = positions_of(inp, __func__, "inp"), n = inp.shape[0], c = inp.shape[inp.ndim - 1];
    tensor_expect(out, __func__, "out", inp.ndim, inp.shape);
    EXPECT_SHAPE(scale, "scale", n, c);
    EXPECT_SHAPE(shift, "shift", n, c);
    const float *x = inp.data;
    float *y = out.data; /* may alias x */
#pragma omp parallel for schedule(static) if (tensor_numel(inp) >= ELEMENTWISE_PARALLEL_ELEMS)
    for (size_t row = 0; row < n * s; row++) {
        const float *sc = scale.data + row / s * c, *sh = shift.data + row / s * c;
#pragma omp simd
        for (size_t k = 0; k < c; k++) y[row * c + k] = x[row * c + k] * (1.0f + sc[k]) + sh[k];
    }
}

void scale_shift_backward(Tensor dinp, Tensor dscale, Tensor dshift, Tensor dout, Tensor inp, Tensor scale) {
    const size_t s = positions_of(dout, __func__, "dout"), n = dout.shape[0], c = dout.shape[dout.ndim - 1];
    tensor_expect(inp, __func__, "inp", dout.ndim, dout.shape);
    EXPECT_SHAPE(scale, "scale", n, c);
    if (!tensor_is_none(dinp)) tensor_expect(dinp, __func__, "dinp", dout.ndim, dout.shape);
    if (!tensor_is_none(dscale)) EXPECT_SHAPE(dscale, "dscale", n, c);
    if (!tensor_is_none(dshift)) EXPECT_SHAPE(dshift, "dshift", n, c);
    const size_t n_blocks = (c + CHANNEL_BLOCK - 1) / CHANNEL_BLOCK;
    const float *g = dout.data, *x = inp.data;
    float *dx = dinp.data;
#pragma omp parallel for schedule(static) if (tensor_numel(dout) >= ELEMENTWISE_PARALLEL_ELEMS)
    for (size_t task = 0; task < n * n_blocks; task++) {
        size_t sample = task / n_blocks, c0 = task % n_blocks * CHANNEL_BLOCK;
        size_t width = c - c0 < CHANNEL_BLOCK ? c - c0 : CHANNEL_BLOCK;
        const float *sc = scale.data + sample * c + c0;
        double sum_gx[CHANNEL_BLOCK] = {0}, sum_g[CHANNEL_BLOCK] = {0};
        for (size_t p = 0; p < s; p++) {
            size_t offset = (sample * s + p) * c + c0;
            const float *gp = g + offset, *xp = x + offset;
            /* out = inp (1 + scale) + shift */
            if (dx) {
                float *dxp = dx + offset;
#pragma omp simd
                for (size_t k = 0; k < width; k++) dxp[k] += gp[k] * (1.0f + sc[k]);
            }
#pragma omp simd
            for (size_t k = 0; k < width; k++) {
                sum_gx[k] += (double)gp[k] * (double)xp[k];
                sum_g[k] += (double)gp[k];
            }
        }
        for (size_t k = 0; k < width; k++) {
            if (dscale.data) dscale.data[sample * c + c0 + k] += (float)sum_gx[k];
            if (dshift.data) dshift.data[sample * c + c0 + k] += (float)sum_g[k];
        }
    }
}
