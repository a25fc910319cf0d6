/* Reference fully connected layer (torch.nn.Linear): plain loops against which the BLAS path
 * (linear.c) is tested.
 *   forward:  out[m][o] = bias[o] + sum_i inp[m][i] weight[o][i]
 *   backward: dinp[m][i] += sum_o dout[m][o] weight[o][i]
 *             dweight[o][i] += sum_m dout[m][o] inp[m][i]       dbias[o] += sum_m dout[m][o]
 * Shapes: inp (M, Fi) and out, dout (M, Fo) with M the product of the leading dimensions, weight (Fo, Fi),
 * bias (Fo). The forward accumulates each dot product in double; the backward loops run with the
 * contiguous index innermost (vectorisable, float accumulation in a fixed order). Each thread owns whole
 * rows of every output it writes, so nothing is shared. */
#include <stddef.h>

#include "ops/linear.h"
#include "ops/linear_internal.h"

void linear_forward_reference(Tensor out, Tensor inp, Tensor weight, Tensor bias) {
    LinearShape s = linear_check_forward(__func__, out, inp, weight, bias);
    const size_t M = s.M, Fi = s.Fi, Fo = s.Fo;
#pragma omp parallel for schedule(static)
    for (size_t m = 0; m < M; m++) {
        const float *x = inp.data + m * Fi;
        for (size_t o = 0; o < Fo; o++) {
            const float *w = weight.data + o * Fi;
            double sum = bias.data ? bias.data[o] : 0.0;
            for (size_t i = 0; i < Fi; i++) sum += (double)x[i] * w[i];
            out.data[m * Fo + o] = (float)sum;
        }
    }
}

void linear_backward_reference(Tensor dinp, Tensor dweight, Tensor dbias, Tensor dout, Tensor inp, Tensor weight) {
    LinearShape s = linear_check_backward(__func__, dinp, dweight, dbias, dout, inp, weight);
    const size_t M = s.M, Fi = s.Fi, Fo = s.Fo;
    if (dinp.data) {
#pragma omp parallel for schedule(static)
        for (size_t m = 0; m < M; m++) {
            float *dx = dinp.data + m * Fi;
            for (size_t o = 0; o < Fo; o++) {
                const float g = dout.data[m * Fo + o], *w = weight.data + o * Fi;
                for (size_t i = 0; i < Fi; i++) dx[i] += g * w[i];
            }
        }
    }
    if (dweight.data || dbias.data) {
#pragma omp parallel for schedule(static)
        for (size_t o = 0; o < Fo; o++) {
            float bias_sum = 0;
            for (size_t m = 0; m < M; m++) {
                const float g = dout.data[m * Fo + o];
                bias_sum += g;
                if (dweight.data) {
                    float *dw = dweight.data + o * Fi;
                    const float *x = inp.data + m * Fi;
                    for (size_t i = 0; i < Fi; i++) dw[i] += g * x[i];
                }
            }
            if (dbias.data) dbias.data[o] += bias_sum;
        }
    }
}
