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
 * cancellation. e^x is computed (ops/silu_math.h) with AVX-512 intrinsics, or in plain C that the compiler
 * vectorises on other machines (glibc's expf is a scalar call, and its vector variants need -ffast-math):
 * Cody-Waite reduction x = k ln2 + r, |r| <= ln2 / 2, a degree-7 Taylor polynomial (truncation error 5e-9,
 * below float's 6e-8), and 2^k applied exactly (scalef, or in two halves so that results down to the
 * subnormal range are exact powers of two). Measured against double precision,
 * the SiLU is within 3 ulp (worst 2.7) wherever e^x is a normal float, x >= -87 (tests/test_elementwise.c). */
#include "ops/act.h"

#include "core/check.h"
#include "ops/silu_math.h"

/* Large enough that waking the thread team pays off. */
#define ACT_PARALLEL_ELEMS 32768


void silu_forward(Tensor out, Tensor inp) {
    EXPECT_NDIM(inp, "inp", inp.ndim);
    tensor_expect(out, __func__, "out", inp.ndim, inp.shape);
    const size_t n = tensor_numel(inp);
    const float *x = inp.data;
    float *y = out.data; /* may alias x: each element is read before it is written */
#if defined(__AVX512F__)
#pragma omp parallel for schedule(static) if (n >= ACT_PARALLEL_ELEMS)
    for (size_t i = 0; i < n; i += 16) {
        const __mmask16 m = silu16_lanes(n - i);
        _mm512_mask_storeu_ps(y + i, m, silu_value16(_mm512_maskz_loadu_ps(m, x + i)));
    }
#else
#pragma omp parallel for simd schedule(static) if (n >= ACT_PARALLEL_ELEMS)
    for (size_t i = 0; i < n; i++) y[i] = silu_value(x[i]);
#endif
}

void silu_backward(Tensor dinp, Tensor dout, Tensor inp) {
    EXPECT_NDIM(inp, "inp", inp.ndim);
    tensor_expect(dout, __func__, "dout", inp.ndim, inp.shape);
    tensor_expect(dinp, __func__, "dinp", inp.ndim, inp.shape);
    const size_t n = tensor_numel(inp);
    const float *x = inp.data, *dy = dout.data;
    float *dx = dinp.data;
#if defined(__AVX512F__)
#pragma omp parallel for schedule(static) if (n >= ACT_PARALLEL_ELEMS)
    for (size_t i = 0; i < n; i += 16) {
        const __mmask16 m = silu16_lanes(n - i);
        const __m512 g = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, dy + i), silu_derivative16(_mm512_maskz_loadu_ps(m, x + i)));
        _mm512_mask_storeu_ps(dx + i, m, _mm512_add_ps(_mm512_maskz_loadu_ps(m, dx + i), g));
    }
#else
#pragma omp parallel for simd schedule(static) if (n >= ACT_PARALLEL_ELEMS)
    for (size_t i = 0; i < n; i++) dx[i] += dy[i] * silu_derivative(x[i]);
#endif
}
