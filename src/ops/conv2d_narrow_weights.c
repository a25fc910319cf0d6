/* The weight and bias gradients of a 3x3, stride-1 convolution with few output channels (conv_out's RGB
 * or greyscale). oneDNN's backward-weights kernels vectorise over output channels, so one or three
 * outputs leave most of each vector empty. Here each (output channel, tap) pair is a dot product over
 * positions, vectorised over 16 input channels (2 threads, oneDNN -> these loops: fashion-mnist's conv_out
 * 16 -> 1 at 64x28x28 0.66 -> 0.22 ms, ddpm-cifar10's 128 -> 3 at 16x32x32 1.8 -> 0.85 ms, the default
 * preset's 224 -> 3 at 4x64x64 3.2 -> 1.5 ms):
 *   dweight[o, i, ky, kx] += sum_{n, oy, ox} dout[n, oy, ox, o] inp[n, oy + ky - pt, ox + kx - pl, i]
 *   dbias[o]              += sum_{n, oy, ox} dout[n, oy, ox, o]
 * Up to three output channels at a time keep their 9 taps' sums in registers (27 accumulators); taps in
 * the padding read a block of zeros. Tasks are (image group, block of 16 input channels) pairs; the
 * groups depend on N alone and their partial sums are added in group order, so the result is the same
 * for any thread count. */
#include <string.h>

#include "core/alloc.h"
#include "ops/conv2d_internal.h"
#include "ops/vec16.h"

#if defined(VEC16_HAVE_AVX512)
#define VEC VecA
#define V(op) veca_##op
#else
#define VEC VecP
#define V(op) vecp_##op
#endif

enum { LANES = 16, TAPS = 9, MAX_GROUPS = 16, CO_STEP = 3 };

static GrowBuffer partials; /* per task (Co, TAPS, LANES) weight sums, then per group Co bias sums */

/* part[o][tap][0 .. lanes) = the sums over images n0 .. n1-1 for output channels o0 .. o0+NCO-1 and input
 * channels i0 .. i0+lanes-1. */
static inline __attribute__((always_inline)) void channel_sums(float *part, const float *dout, const float *inp,
                                                               Conv2dShape s, Conv2dParams p, size_t n0, size_t n1,
                                                               size_t i0, int lanes, size_t o0, const int NCO) {
    static const float zeros[LANES];
    VEC acc[CO_STEP][TAPS];
    for (int o = 0; o < NCO; o++)
        for (int t = 0; t < TAPS; t++) acc[o][t] = V(zero)();
    for (size_t n = n0; n < n1; n++)
        for (size_t oy = 0; oy < s.ho; oy++) {
            const float *rows[3]; /* input row oy + ky - pt, NULL in the padding */
            for (size_t ky = 0; ky < 3; ky++) {
                const ptrdiff_t iy = conv2d_in_index(oy, ky, 1, p.pad_top, s.h);
                rows[ky] = iy < 0 ? NULL : inp + (n * s.h + (size_t)iy) * s.w * s.ci + i0;
            }
            for (size_t ox = 0; ox < s.wo; ox++) {
                const float *g = dout + ((n * s.ho + oy) * s.wo + ox) * s.co + o0;
                VEC b[CO_STEP];
                for (int o = 0; o < NCO; o++) b[o] = V(set1)(g[o]);
#pragma GCC unroll 3
                for (size_t kx = 0; kx < 3; kx++) {
                    const ptrdiff_t ix = conv2d_in_index(ox, kx, 1, p.pad_left, s.w);
#pragma GCC unroll 3
                    for (size_t ky = 0; ky < 3; ky++) {
                        const float *x = rows[ky] && ix >= 0 ? rows[ky] + (size_t)ix * s.ci : zeros;
                        const VEC v = V(load_n)(x, lanes);
                        for (int o = 0; o < NCO; o++) acc[o][ky * 3 + kx] = V(fma)(b[o], v, acc[o][ky * 3 + kx]);
                    }
                }
            }
        }
    for (int o = 0; o < NCO; o++)
        for (int t = 0; t < TAPS; t++) V(store)(part + ((o0 + (size_t)o) * TAPS + (size_t)t) * LANES, acc[o][t]);
}

bool conv2d_narrow_weights_fit(Conv2dShape s, Conv2dParams p) {
    return s.co < CONV2D_NARROW_CO && s.kh == 3 && s.kw == 3 && p.stride == 1;
}

void conv2d_narrow_weight_grad(Tensor dweight, Tensor dbias, const float *dout, const float *inp, Conv2dShape s,
                               Conv2dParams p) {
    const size_t blocks = (s.ci + LANES - 1) / LANES;
    const size_t groups = s.n < MAX_GROUPS ? s.n : MAX_GROUPS, tasks = groups * blocks;
    const size_t task_floats = s.co * TAPS * LANES;
    float *part = grow_buffer(&partials, (tasks * task_floats + groups * s.co) * sizeof(float));
    float *part_bias = part + tasks * task_floats;
    const bool with_bias = !tensor_is_none(dbias);
#pragma omp parallel
    {
#pragma omp for schedule(static)
        for (size_t t = 0; t < tasks; t++) {
            const size_t g = t / blocks, i0 = t % blocks * LANES, n0 = g * s.n / groups, n1 = (g + 1) * s.n / groups;
            const int lanes = s.ci - i0 < LANES ? (int)(s.ci - i0) : LANES;
            float *task_part = part + t * task_floats;
            for (size_t o0 = 0; o0 < s.co; o0 += CO_STEP) {
                switch (s.co - o0 < CO_STEP ? s.co - o0 : CO_STEP) {
                case 1: channel_sums(task_part, dout, inp, s, p, n0, n1, i0, lanes, o0, 1); break;
                case 2: channel_sums(task_part, dout, inp, s, p, n0, n1, i0, lanes, o0, 2); break;
                default: channel_sums(task_part, dout, inp, s, p, n0, n1, i0, lanes, o0, 3); break;
                }
            }
            if (with_bias && i0 == 0) {
                float *bias = part_bias + g * s.co;
                memset(bias, 0, s.co * sizeof(float));
                for (size_t pos = n0 * s.ho * s.wo; pos < n1 * s.ho * s.wo; pos++)
                    for (size_t o = 0; o < s.co; o++) bias[o] += dout[pos * s.co + o];
            }
        }
#pragma omp for schedule(static)
        for (size_t oi = 0; oi < s.co * s.ci; oi++) {
            const size_t o = oi / s.ci, i = oi % s.ci, block = i / LANES, lane = i % LANES;
            for (size_t k = 0; k < TAPS; k++) {
                float sum = 0;
                for (size_t g = 0; g < groups; g++)
                    sum += part[(g * blocks + block) * task_floats + (o * TAPS + k) * LANES + lane];
                dweight.data[oi * TAPS + k] += sum;
            }
        }
    }
    if (with_bias)
        for (size_t o = 0; o < s.co; o++) {
            float sum = 0;
            for (size_t g = 0; g < groups; g++) sum += part_bias[g * s.co + o];
            dbias.data[o] += sum;
        }
}
