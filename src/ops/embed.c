/* Embeddings: the sinusoidal timestep embedding of DDPM's U-Net (Ho et al. 2020, after Vaswani et al.
 * 2017), exactly as diffusers' get_timestep_embedding (src/diffusers/models/embeddings.py), and the table
 * lookup torch.nn.Embedding (https://pytorch.org/docs/stable/generated/torch.nn.Embedding.html) used for
 * class labels.
 *
 *   timestep_embedding:  half = dim / 2 (rounded down), for i < half:
 *                          freq_i = exp(-ln(max_period) i / (half - downscale_freq_shift))
 *                          arg_i  = scale t freq_i
 *                        out[n] = [sin(arg), cos(arg)], or [cos(arg), sin(arg)] when flip_sin_to_cos,
 *                        and an odd dim's last column is 0.
 *   embedding:           out[n, :] = table[ids[n], :];  dtable[ids[n], :] += dout[n, :]
 *
 * Buffers: timesteps N values, out (N, dim); table, dtable (V, F), ids N values in [0, V), out, dout (N, F).
 *
 * diffusers evaluates the embedding in float32, whose rounding of t * freq reaches 1e-4 radians at
 * t = 1000; here every step is double and only the result is rounded, so this is the exact embedding
 * to float precision and agrees with diffusers within that float32 error. */
#include "ops/embed.h"

#include <math.h>
#include <string.h>

#include "core/check.h"

/* Large enough that waking the thread team pays off. */
#define EMBED_PARALLEL_ELEMS 32768
/* Columns per backward task: every task sums the rows in order, whatever the thread count. */
#define EMBED_COLUMN_BLOCK 256

TimestepEmbeddingParams timestep_embedding_defaults(void) {
    return (TimestepEmbeddingParams){.flip_sin_to_cos = true, .downscale_freq_shift = 0, .scale = 1,
                                     .max_period = 10000};
}

void timestep_embedding(Tensor out, const float *timesteps, TimestepEmbeddingParams p) {
    EXPECT_NDIM(out, "out", 2);
    CHECK(timesteps != NULL, "%s: timesteps is NULL", __func__);
    const size_t n = out.shape[0], dim = out.shape[1], half = dim / 2;
    const double divisor = (double)half - p.downscale_freq_shift;
    CHECK(half == 0 || divisor != 0, "%s: dim %zu with downscale_freq_shift %g divides by zero (half - shift = 0)",
          __func__, dim, p.downscale_freq_shift);
    CHECK(p.max_period > 0 && isfinite(p.max_period) && isfinite(p.scale) && isfinite(p.downscale_freq_shift),
          "%s: max_period %g, scale %g, downscale_freq_shift %g: expected finite values, max_period > 0", __func__,
          p.max_period, p.scale, p.downscale_freq_shift);
    const double log_period = log(p.max_period);
    const size_t sin_at = p.flip_sin_to_cos ? half : 0, cos_at = p.flip_sin_to_cos ? 0 : half;
    for (size_t row = 0; row < n; row++) {
        float *o = out.data + row * dim;
        double t = timesteps[row];
        for (size_t i = 0; i < half; i++) {
            double arg = p.scale * (t * exp(-log_period * (double)i / divisor));
            o[sin_at + i] = (float)sin(arg);
            o[cos_at + i] = (float)cos(arg);
        }
        if (dim % 2) o[dim - 1] = 0;
    }
}

static void expect_ids(const int *ids, size_t n, size_t vocabulary, const char *where) {
    CHECK(ids != NULL, "%s: ids is NULL", where);
    for (size_t i = 0; i < n; i++)
        CHECK(ids[i] >= 0 && (size_t)ids[i] < vocabulary, "%s: ids[%zu] = %d is outside the table's [0, %zu)", where,
              i, ids[i], vocabulary);
}

void embedding_forward(Tensor out, Tensor table, const int *ids) {
    EXPECT_NDIM(table, "table", 2);
    EXPECT_NDIM(out, "out", 2);
    const size_t v = table.shape[0], f = table.shape[1], n = out.shape[0];
    EXPECT_SHAPE(out, "out", n, f);
    expect_ids(ids, n, v, __func__);
#pragma omp parallel for schedule(static) if (n * f >= EMBED_PARALLEL_ELEMS)
    for (size_t i = 0; i < n; i++) memcpy(out.data + i * f, table.data + (size_t)ids[i] * f, f * sizeof(float));
}

void embedding_backward(Tensor dtable, Tensor dout, const int *ids) {
    EXPECT_NDIM(dtable, "dtable", 2);
    EXPECT_NDIM(dout, "dout", 2);
    const size_t v = dtable.shape[0], f = dtable.shape[1], n = dout.shape[0];
    EXPECT_SHAPE(dout, "dout", n, f);
    expect_ids(ids, n, v, __func__);
    /* Rows may repeat an id, so tasks split the columns and each adds the rows in order. */
    const size_t n_blocks = (f + EMBED_COLUMN_BLOCK - 1) / EMBED_COLUMN_BLOCK;
#pragma omp parallel for schedule(static) if (n * f >= EMBED_PARALLEL_ELEMS)
    for (size_t block = 0; block < n_blocks; block++) {
        size_t f0 = block * EMBED_COLUMN_BLOCK, f1 = f0 + EMBED_COLUMN_BLOCK < f ? f0 + EMBED_COLUMN_BLOCK : f;
        for (size_t i = 0; i < n; i++) {
            float *dst = dtable.data + (size_t)ids[i] * f;
            const float *src = dout.data + i * f;
            /* out[i] = table[ids[i]] */
#pragma omp simd
            for (size_t k = f0; k < f1; k++) dst[k] += src[k];
        }
    }
}
