/* Nearest 2x upsampling + 3x3 convolution (upsample_conv.h), by output phases where they pay.
 *
 * Output row 2y + a (a = 0, 1) reads upsampled rows 2y + a - 1 .. 2y + a + 1, which are inp rows:
 *   a = 0:  y - 1 (kernel row 0), y (kernel rows 1 and 2)
 *   a = 1:  y (kernel rows 0 and 1), y + 1 (kernel row 2)
 * and likewise for columns. So phase (a, b) of the output is a 2x2 convolution of inp, padded by one row
 * above (a = 0) or below (a = 1) and one column left (b = 0) or right (b = 1), whose tap (r, c) is the sum
 * of the 3x3 taps in row set TAPS[a][r] and column set TAPS[b][c]. Backward: dout split into its four
 * phases, each phase's conv2d_backward adds into dinp and dbias, and the 2x2 weight gradients fold back
 * onto the 3x3 taps they were summed from. Where the phases run on our fp32 Winograd, they are written
 * and read in place in the (N, 2H, 2W, Co) image (phases_in_place), else through a buffer of four.
 *
 * Measured (BENCH_OPS=upsample scripts/bench-ops build: bench/ops_upsample_conv.c against PyTorch's
 * F.interpolate + conv2d), 2 threads, GFLOP/s counted on the 3x3 convolution, phases / upsampled; the
 * phases' 2x2 convolutions on our fp32 Winograd F(4x4, 2x2) where it serves them (the first four rows; the
 * last two on oneDNN's direct kernels), the upsampled image's 3x3 one on a Winograd F(4x4, 3x3):
 *   64x7x7 -> 14x14, 64 channels (fashion-mnist b64):    forward 702 / 526, backward 654 / 431;
 *   64x14x14 -> 28x28, 32 channels:                      forward 555 / 532, backward 533 / 378;
 *   16x16x16 -> 32x32, 256 channels (ddpm-cifar10 b16):  forward 928 / 685, backward 794 / 636;
 *   16x32x32 -> 64x64, 128 channels:                     forward 869 / 667, backward 891 / 523;
 *   16x8x8 -> 16x16, 256 channels (ddpm-cifar10 b16):    forward 471 / 624, backward 447 / 579;
 *   4x8x8 -> 16x16, 896 channels (default b4):           forward 409 / 513, backward 364 / 468.
 * With oneDNN's 2x2 kernels the phases had led only below 128 channels (fashion-mnist's two 613 / 434 and
 * 638 / 353 forward, 128 channels 677 / 660); so narrow layers take the phases, and wider ones where our
 * Winograd runs them (conv2d_winograd_fp32_serves: up to 256x256 channels, from 128 tiles).
 */
#include "ops/upsample_conv.h"

#include <string.h>

#include "core/check.h"
#include "ops/conv2d.h"
#include "ops/conv2d_internal.h"
#include "ops/resample.h"

/* The 3x3 kernel rows (or columns) [first, last] that tap t of phase a sums. */
static const int TAPS[2][2][2] = {{{0, 0}, {1, 2}}, {{0, 1}, {2, 2}}};

static int force_phases = -1;

void upsample_conv_force_phases(int mode) { force_phases = mode; }

static Conv2dParams phase_params(int a, int b) {
    return (Conv2dParams){.stride = 1, .pad_top = 1 - a, .pad_bottom = a, .pad_left = 1 - b, .pad_right = b};
}

/* The 2x2 convolution of a phase. */
static Conv2dShape phase_shape(size_t n, size_t h, size_t w, size_t ci, size_t co) {
    return (Conv2dShape){.n = n, .h = h, .w = w, .ci = ci, .co = co, .kh = 2, .kw = 2, .ho = h, .wo = w};
}

bool upsample_conv_uses_phases(size_t n, size_t h, size_t w, size_t ci, size_t co) {
    if (force_phases >= 0) return force_phases == 1;
    return ci < UPSAMPLE_CONV_PHASES_MAX_CHANNELS ||
           conv2d_winograd_fp32_serves(phase_shape(n, h, w, ci, co), phase_params(0, 0));
}

size_t upsample_conv_work_floats(size_t n, size_t h, size_t w, size_t ci, size_t co, bool backward) {
    /* the phases' outputs, or dout's phases and the 2x2 kernels' gradients */
    if (upsample_conv_uses_phases(n, h, w, ci, co)) return 4 * n * h * w * co + (backward ? 16 * co * ci : 0);
    return (backward ? 2 : 1) * 4 * n * h * w * ci; /* the upsampled image and its gradient */
}

size_t upsample_conv_phase_weight_floats(size_t n, size_t h, size_t w, size_t ci, size_t co) {
    return upsample_conv_uses_phases(n, h, w, ci, co) ? 16 * co * ci : 0;
}

/* The 2x2 kernels of the four phases, phase 2a + b at phase_weights + (2a + b) 4 Co Ci, each (Co, Ci, 2, 2). */
static void phase_kernels(float *phase_weights, Tensor weight) {
    const size_t co_ci = weight.shape[0] * weight.shape[1];
    for (size_t oi = 0; oi < co_ci; oi++) {
        const float *k3 = weight.data + oi * 9;
        /* tap t = 8a + 4b + 2r + c: unrolled, every loop bound below is a constant (7x faster than
         * looping over the table at run time: 64x64 kernels 18 against 135 us) */
#pragma GCC unroll 16
        for (int t = 0; t < 16; t++) {
            const int a = t >> 3, b = t >> 2 & 1, r = t >> 1 & 1, c = t & 1;
            float sum = 0;
            for (int ky = TAPS[a][r][0]; ky <= TAPS[a][r][1]; ky++)
                for (int kx = TAPS[b][c][0]; kx <= TAPS[b][c][1]; kx++) sum += k3[ky * 3 + kx];
            phase_weights[(size_t)(2 * a + b) * 4 * co_ci + oi * 4 + (size_t)(r * 2 + c)] = sum;
        }
    }
}

static Tensor phase_kernel(float *phase_weights, Tensor weight, int a, int b) {
    const size_t co = weight.shape[0], ci = weight.shape[1];
    return tensor_4d(phase_weights + (size_t)(2 * a + b) * 4 * co * ci, co, ci, 2, 2);
}

/* dweight[o, i, ky, kx] += the phase gradients of every 2x2 tap that (ky, kx) was summed into. */
static void fold_phase_gradients(Tensor dweight, const float *phase_grads) {
    const size_t co_ci = dweight.shape[0] * dweight.shape[1];
    for (size_t oi = 0; oi < co_ci; oi++) {
        float k3[9];
        memcpy(k3, dweight.data + oi * 9, sizeof k3);
#pragma GCC unroll 16
        for (int t = 0; t < 16; t++) { /* as in phase_kernels */
            const int a = t >> 3, b = t >> 2 & 1, r = t >> 1 & 1, c = t & 1;
            const float g = phase_grads[(size_t)(2 * a + b) * 4 * co_ci + oi * 4 + (size_t)(r * 2 + c)];
            for (int ky = TAPS[a][r][0]; ky <= TAPS[a][r][1]; ky++)
                for (int kx = TAPS[b][c][0]; kx <= TAPS[b][c][1]; kx++) k3[ky * 3 + kx] += g;
        }
        memcpy(dweight.data + oi * 9, k3, sizeof k3);
    }
}

/* Phase (a, b) of an (N, 2H, 2W, Co) image as an (N, H, W, Co) view: its first pixel's offset and strides. */
static size_t phase_offset(size_t w, size_t co, int a, int b) { return ((size_t)a * 2 * w + (size_t)b) * co; }

static ImageStrides phase_strides(size_t h, size_t w, size_t co) {
    return (ImageStrides){2 * co, 4 * w * co, 4 * h * w * co};
}

/* Whether the phases run on our fp32 Winograd, which writes and reads them in place in the (N, 2H, 2W, Co)
 * image: no interleaving pass (2.1 % of fashion-mnist's sampling step, 1.1 % of its training step); and
 * whether weights are held. */
static bool phases_in_place(Conv2dShape phase, bool *hold) {
    bool runs = true;
    for (int a = 0; a < 2; a++)
        for (int b = 0; b < 2; b++) runs = runs && conv2d_fast_runs_winograd_fp32(phase, phase_params(a, b), hold);
    return runs;
}

/* Between the output (N, 2H, 2W, Co) and its four phases (4, N, H, W, Co) in `phases`: to_output copies
 * the phases into the output, else the output's phases are copied out. */
static void interleave_phases(float *image, float *phases, size_t n, size_t h, size_t w, size_t co, bool to_output) {
    const size_t phase_floats = n * h * w * co, bytes = co * sizeof(float);
#pragma omp parallel for schedule(static)
    for (size_t ny = 0; ny < n * h; ny++)
        for (int a = 0; a < 2; a++) {
            float *row = image + (2 * ny + (size_t)a) * 2 * w * co; /* output row 2y + a of image n */
            for (int b = 0; b < 2; b++) {
                float *phase_row = phases + (size_t)(2 * a + b) * phase_floats + ny * w * co;
                for (size_t x = 0; x < w; x++) {
                    float *pixel = row + (2 * x + (size_t)b) * co, *phase_pixel = phase_row + x * co;
                    if (to_output) memcpy(pixel, phase_pixel, bytes);
                    else memcpy(phase_pixel, pixel, bytes);
                }
            }
        }
}

/* out (or dout, named out_name) against inp and weight. */
static void check_shapes(const char *where, Tensor out, const char *out_name, Tensor inp, Tensor weight) {
    tensor_expect(inp, where, "inp", 4, NULL);
    tensor_expect(weight, where, "weight", 4, NULL);
    const size_t n = inp.shape[0], h = inp.shape[1], w = inp.shape[2], ci = inp.shape[3], co = weight.shape[0];
    tensor_expect(weight, where, "weight (Co, Ci, 3, 3)", 4, (size_t[]){co, ci, 3, 3});
    tensor_expect(out, where, out_name, 4, (size_t[]){n, 2 * h, 2 * w, co});
}

void upsample_conv_forward(Tensor out, Tensor inp, Tensor weight, Tensor bias, float *work, float *phase_weights) {
    check_shapes(__func__, out, "out", inp, weight);
    const size_t n = inp.shape[0], h = inp.shape[1], w = inp.shape[2], ci = inp.shape[3], co = weight.shape[0];
    CHECK(work, "%s: no work buffer", __func__);
    if (!upsample_conv_uses_phases(n, h, w, ci, co)) {
        Tensor up = tensor_4d(work, n, 2 * h, 2 * w, ci);
        upsample_nearest2x_forward(up, inp);
        conv2d_forward(out, up, weight, bias, conv2d_params(1, 1));
        return;
    }
    CHECK(phase_weights, "%s: %zu input channels take the phases, but phase_weights is NULL", __func__, ci);
    phase_kernels(phase_weights, weight);
    const Conv2dShape s = phase_shape(n, h, w, ci, co);
    bool hold;
    if (phases_in_place(s, &hold)) {
        const ImageStrides view = phase_strides(h, w, co);
        if (!tensor_is_none(bias)) tensor_expect(bias, __func__, "bias", 1, (size_t[]){co});
        for (int a = 0; a < 2; a++)
            for (int b = 0; b < 2; b++)
                conv2d_winograd_fp32_forward(out.data + phase_offset(w, co, a, b), inp.data,
                                             phase_kernel(phase_weights, weight, a, b).data, bias.data, s,
                                             phase_params(a, b), hold, &view);
        return;
    }
    for (int a = 0; a < 2; a++)
        for (int b = 0; b < 2; b++)
            conv2d_forward(tensor_4d(work + (size_t)(2 * a + b) * n * h * w * co, n, h, w, co), inp,
                           phase_kernel(phase_weights, weight, a, b), bias, phase_params(a, b));
    interleave_phases(out.data, work, n, h, w, co, true);
}

void upsample_conv_backward(Tensor dinp, Tensor dweight, Tensor dbias, Tensor dout, Tensor inp, Tensor weight,
                            float *work, float *phase_weights) {
    check_shapes(__func__, dout, "dout", inp, weight);
    const size_t n = inp.shape[0], h = inp.shape[1], w = inp.shape[2], ci = inp.shape[3], co = weight.shape[0];
    if (!tensor_is_none(dinp)) tensor_expect(dinp, __func__, "dinp", 4, inp.shape);
    if (!tensor_is_none(dweight)) tensor_expect(dweight, __func__, "dweight", 4, weight.shape);
    CHECK(work, "%s: no work buffer", __func__);
    if (!upsample_conv_uses_phases(n, h, w, ci, co)) {
        const bool data = !tensor_is_none(dinp);
        Tensor up = tensor_4d(work, n, 2 * h, 2 * w, ci);
        Tensor d_up = data ? tensor_4d(work + tensor_numel(up), n, 2 * h, 2 * w, ci) : tensor_none();
        upsample_nearest2x_forward(up, inp);
        if (data) tensor_zero(d_up);
        conv2d_backward(d_up, dweight, dbias, dout, up, weight, conv2d_params(1, 1));
        if (data) upsample_nearest2x_backward(dinp, d_up);
        return;
    }
    CHECK(phase_weights, "%s: %zu input channels take the phases, but phase_weights is NULL", __func__, ci);
    phase_kernels(phase_weights, weight);
    float *dout_phases = work, *dkernels = work + 4 * n * h * w * co;
    const bool weights = !tensor_is_none(dweight);
    if (weights) memset(dkernels, 0, 16 * co * ci * sizeof(float));
    const Conv2dShape s = phase_shape(n, h, w, ci, co);
    bool hold;
    if (phases_in_place(s, &hold)) {
        const ImageStrides view = phase_strides(h, w, co);
        if (!tensor_is_none(dbias)) {
            tensor_expect(dbias, __func__, "dbias", 1, (size_t[]){co});
            conv2d_bias_gradient(dbias.data, dout.data, 4 * n * h * w, co);
        }
        for (int a = 0; a < 2; a++)
            for (int b = 0; b < 2; b++) {
                const float *dout_phase = dout.data + phase_offset(w, co, a, b);
                const Conv2dParams p = phase_params(a, b);
                if (!tensor_is_none(dinp))
                    conv2d_winograd_fp32_backward_data(dinp.data, true, dout_phase,
                                                       phase_kernel(phase_weights, weight, a, b).data, s, p, &view);
                if (weights)
                    conv2d_winograd_fp32_backward_weights(phase_kernel(dkernels, weight, a, b).data, dout_phase,
                                                          inp.data, s, p, &view);
            }
        if (weights) fold_phase_gradients(dweight, dkernels);
        return;
    }
    interleave_phases(dout.data, dout_phases, n, h, w, co, false);
    for (int a = 0; a < 2; a++)
        for (int b = 0; b < 2; b++)
            conv2d_backward(dinp, weights ? phase_kernel(dkernels, weight, a, b) : tensor_none(), dbias,
                            tensor_4d(dout_phases + (size_t)(2 * a + b) * n * h * w * co, n, h, w, co), inp,
                            phase_kernel(phase_weights, weight, a, b), phase_params(a, b));
    if (weights) fold_phase_gradients(dweight, dkernels);
}
