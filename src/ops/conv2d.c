/* conv2d: hyper-parameters, output sizes and the argument checks both paths run (conv2d.h). The
 * reference loops live in conv2d_reference.c, the oneDNN path in conv2d_dnnl.c. */
#include <stdint.h>

#include "core/check.h"
#include "ops/conv2d_internal.h"

Conv2dParams conv2d_params(int stride, int pad) {
    return (Conv2dParams){.stride = stride, .pad_top = pad, .pad_bottom = pad, .pad_left = pad, .pad_right = pad};
}

size_t conv2d_out_size(size_t in, size_t kernel, int stride, int pad_lo, int pad_hi) {
    CHECK(stride >= 1 && pad_lo >= 0 && pad_hi >= 0, "stride %d must be positive and padding %d, %d non-negative",
          stride, pad_lo, pad_hi);
    size_t padded = in + (size_t)pad_lo + (size_t)pad_hi;
    if (kernel == 0 || padded < kernel) return 0;
    return (padded - kernel) / (size_t)stride + 1;
}

/* ------------------------------------------------------------------------------------------------ */

static void check_params(const char *where, Conv2dParams p) {
    CHECK(p.stride == 1 || p.stride == 2, "%s: stride %d, expected 1 or 2", where, p.stride);
    CHECK(p.pad_top >= 0 && p.pad_bottom >= 0 && p.pad_left >= 0 && p.pad_right >= 0,
          "%s: negative padding (top %d, bottom %d, left %d, right %d)", where, p.pad_top, p.pad_bottom, p.pad_left,
          p.pad_right);
}

static bool overlaps(Tensor a, Tensor b) {
    uintptr_t a0 = (uintptr_t)a.data, b0 = (uintptr_t)b.data;
    uintptr_t a1 = a0 + tensor_numel(a) * sizeof(float), b1 = b0 + tensor_numel(b) * sizeof(float);
    return a0 < b1 && b0 < a1;
}

/* The sizes implied by inp, weight and p, with every relationship between them CHECKed. */
static Conv2dShape shape_from(const char *where, Tensor inp, Tensor weight, Conv2dParams p) {
    check_params(where, p);
    tensor_expect(inp, where, "inp", 4, NULL);
    tensor_expect(weight, where, "weight", 4, NULL);
    Conv2dShape s = {.n = inp.shape[0], .h = inp.shape[1], .w = inp.shape[2], .ci = inp.shape[3],
                     .co = weight.shape[0], .kh = weight.shape[2], .kw = weight.shape[3]};
    char ibuf[96], wbuf[96];
    CHECK(weight.shape[1] == s.ci, "%s: weight %s has %zu input channels but inp %s (N, H, W, C) has %zu", where,
          tensor_shape_str(weight, wbuf, sizeof wbuf), weight.shape[1], tensor_shape_str(inp, ibuf, sizeof ibuf), s.ci);
    s.ho = conv2d_out_size(s.h, s.kh, p.stride, p.pad_top, p.pad_bottom);
    s.wo = conv2d_out_size(s.w, s.kw, p.stride, p.pad_left, p.pad_right);
    CHECK(s.ho > 0 && s.wo > 0, "%s: kernel %zux%zu does not fit inp %s with padding (top %d, bottom %d, left %d, right %d)",
          where, s.kh, s.kw, tensor_shape_str(inp, ibuf, sizeof ibuf), p.pad_top, p.pad_bottom, p.pad_left, p.pad_right);
    return s;
}

Conv2dShape conv2d_check_forward(const char *where, Tensor out, Tensor inp, Tensor weight, Tensor bias,
                                 Conv2dParams p) {
    Conv2dShape s = shape_from(where, inp, weight, p);
    tensor_expect(out, where, "out", 4, (size_t[]){s.n, s.ho, s.wo, s.co});
    if (!tensor_is_none(bias)) tensor_expect(bias, where, "bias", 1, (size_t[]){s.co});
    CHECK(!overlaps(out, inp) && !overlaps(out, weight) && (tensor_is_none(bias) || !overlaps(out, bias)),
          "%s: out overlaps an input; convolution cannot run in place", where);
    return s;
}

Conv2dShape conv2d_check_backward(const char *where, Tensor dinp, Tensor dweight, Tensor dbias, Tensor dout,
                                  Tensor inp, Tensor weight, Conv2dParams p) {
    Conv2dShape s = shape_from(where, inp, weight, p);
    tensor_expect(dout, where, "dout", 4, (size_t[]){s.n, s.ho, s.wo, s.co});
    if (!tensor_is_none(dinp)) {
        tensor_expect(dinp, where, "dinp", 4, inp.shape);
        CHECK(!overlaps(dinp, dout) && !overlaps(dinp, weight), "%s: dinp overlaps dout or weight", where);
    }
    if (!tensor_is_none(dweight)) {
        tensor_expect(dweight, where, "dweight", 4, weight.shape);
        CHECK(!overlaps(dweight, dout) && !overlaps(dweight, inp), "%s: dweight overlaps dout or inp", where);
    }
    if (!tensor_is_none(dbias)) {
        tensor_expect(dbias, where, "dbias", 1, (size_t[]){s.co});
        CHECK(!overlaps(dbias, dout), "%s: dbias overlaps dout", where);
    }
    return s;
}
