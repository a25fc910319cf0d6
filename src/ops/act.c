/* SiLU (swish), elementwise over any shape (torch.nn.SiLU; Elfwing et al., "Sigmoid-Weighted Linear Units
 * for Neural Network Function Approximation in Reinforcement Learning", 2017;
 * https://pytorch.org/docs/stable/generated/torch.nn.SiLU.html).
 *
 *   out = x sigmoid(x),  sigmoid(x) = 1 / (1 + e^-x)
 *   dinp += dout sigmoid(x) (1 + x (1 - sigmoid(x)))
 *
 * Buffers: inp, out, dout, dinp, all the same shape (any); out may alias inp.
 *
 * The sigmoid is evaluated from e = e^-|x| in (0, 1], which never overflows, as 1 / (1 + e) for x >= 0
 * and e / (1 + e) below, and 1 - sigmoid(x) the same way from the other side, so neither loses digits to
 * cancellation. e^x is computed here in plain C that the compiler vectorises (glibc's expf is a scalar
 * call, and its vector variants need -ffast-math): Cody-Waite reduction x = k ln2 + r, |r| <= ln2 / 2, a
 * degree-7 Taylor polynomial (truncation error 5e-9, below float's 6e-8), and 2^k applied in two halves so
 * that results down to the subnormal range are exact powers of two. Measured against double precision,
 * the SiLU is within 3 ulp (worst 2.7) wherever e^x is a normal float, x >= -87 (tests/test_elementwise.c). */
#include "ops/act.h"

#include <stdint.h>
#include <string.h>

#include "core/check.h"

/* Large enough that waking the thread team pays off. */
#define ACT_PARALLEL_ELEMS 32768

static inline float float_from_bits(uint32_t bits) {
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

/* e^x for x <= 0; below -104 the result is 0, as e^-104 is under half the smallest subnormal. A NaN is
 * treated as -104 too, so the float-to-int conversion below stays defined; the callers' results are NaN
 * anyway, as they multiply by x. */
static inline float exp_nonpositive(float x) {
    x = x >= -104.0f ? x : -104.0f;
    /* k = round(x / ln2) by the 1.5 * 2^23 trick: adding it leaves the integer part in the low mantissa. */
    const float shifter = 12582912.0f;
    float k = (x * 1.44269504088896341f + shifter) - shifter;
    /* ln2 = 0.693359375 (exact in 9 bits, so k * ln2_hi is exact) - 2.12194440e-4 */
    float r = (x - k * 0.693359375f) - k * -2.12194440e-4f;
    float p = 1.0f / 5040.0f;
    p = p * r + 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    /* 2^k with k in [-151, 0], as 2^k1 2^k2, both halves >= -126 and so normal floats. */
    int32_t ki = (int32_t)k, k1 = ki / 2, k2 = ki - k1;
    return p * float_from_bits((uint32_t)(k1 + 127) << 23) * float_from_bits((uint32_t)(k2 + 127) << 23);
}

void silu_forward(Tensor out, Tensor inp) {
    EXPECT_NDIM(inp, "inp", inp.ndim);
    tensor_expect(out, __func__, "out", inp.ndim, inp.shape);
    const size_t n = tensor_numel(inp);
    const float *x = inp.data;
    float *y = out.data; /* may alias x: each element is read before it is written */
#pragma omp parallel for simd schedule(static) if (n >= ACT_PARALLEL_ELEMS)
    for (size_t i = 0; i < n; i++) {
        float v = x[i], e = exp_nonpositive(v < 0 ? v : -v);
        y[i] = v * ((v >= 0 ? 1.0f : e) / (1.0f + e));
    }
}

void silu_backward(Tensor dinp, Tensor dout, Tensor inp) {
    EXPECT_NDIM(inp, "inp", inp.ndim);
    tensor_expect(dout, __func__, "dout", inp.ndim, inp.shape);
    tensor_expect(dinp, __func__, "dinp", inp.ndim, inp.shape);
    const size_t n = tensor_numel(inp);
    const float *x = inp.data, *dy = dout.data;
    float *dx = dinp.data;
#pragma omp parallel for simd schedule(static) if (n >= ACT_PARALLEL_ELEMS)
    for (size_t i = 0; i < n; i++) {
        float v = x[i], e = exp_nonpositive(v < 0 ? v : -v), inv = 1.0f / (1.0f + e);
        float s = v >= 0 ? inv : e * inv, s_neg = v >= 0 ? e * inv : inv; /* sigmoid(x), 1 - sigmoid(x) */
        /* out = x s:  d out / dx = s + x s (1 - s) */
        dx[i] += dy[i] * (s * (1.0f + v * s_neg));
    }
}
