/* Embeddings (ops/embed.h): the timestep embedding against diffusers' get_timestep_embedding and a float64
 * evaluation of the same formula (tests/fixtures/embed.safetensors from tools/torchref/fixtures_embed.py)
 * for both flip settings, shifts 0 and 1, even and odd dims and fractional timesteps; nn.Embedding forward
 * and backward against PyTorch, its gradient check, thread-count independence with repeated ids, and
 * CHECK failures. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/threads.h"
#include "harness.h"
#include "ops/embed.h"

typedef struct EmbedCase {
    const char *name;
    size_t dim;
    TimestepEmbeddingParams p;
} EmbedCase;

static void test_timestep_embedding_matches_diffusers(void) {
    static const EmbedCase cases[] = {
        {"even_flip_shift0", 32, {true, 0, 1, 10000}},    {"even_flip_shift1", 32, {true, 1, 1, 10000}},
        {"even_noflip_shift0", 32, {false, 0, 1, 10000}}, {"even_noflip_shift1", 32, {false, 1, 1, 10000}},
        {"odd_flip_shift0", 33, {true, 0, 1, 10000}},     {"odd_flip_shift1", 33, {true, 1, 1, 10000}},
        {"odd_noflip_shift0", 33, {false, 0, 1, 10000}},  {"odd_noflip_shift1", 33, {false, 1, 1, 10000}},
        {"unet_default", 224, {true, 0, 1, 10000}},       {"ddpm_cifar", 128, {false, 1, 1, 10000}},
        {"scaled", 16, {true, 0, 2.5, 500}},
    };
    const size_t n = 6;
    Fixture *fx = fixture_open("embed");
    float *t = fixture_floats(fx, "timesteps", n);
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        const EmbedCase *ec = &cases[k];
        char key[96], what[128];
        size_t numel = n * ec->dim;
        snprintf(key, sizeof key, "%s.diffusers", ec->name);
        float *want_diffusers = fixture_floats(fx, key, numel);
        snprintf(key, sizeof key, "%s.float64", ec->name);
        float *want_exact = fixture_floats(fx, key, numel);
        float *got = guarded_alloc(numel);
        timestep_embedding(tensor_2d(got, n, ec->dim), t, ec->p);
        guarded_check(ec->name, got);
        /* diffusers rounds t * freq to float32: up to |arg| 2^-24 ~ 6e-5 radians at t = 1000 (x 2.5 with
         * scale 2.5), plus its float32 exp of the exponent. */
        snprintf(what, sizeof what, "%s vs diffusers", ec->name);
        expect_close(what, got, want_diffusers, numel, 2.5e-4, 0);
        /* The float64 evaluation rounded once to float: only our final rounding differs. */
        snprintf(what, sizeof what, "%s vs float64", ec->name);
        expect_close(what, got, want_exact, numel, 1e-7, 1e-7);
        if (ec->dim % 2) {
            bool zero = true;
            for (size_t i = 0; i < n; i++) zero = zero && got[i * ec->dim + ec->dim - 1] == 0;
            EXPECT(zero, "%s: the padding column is not zero", ec->name);
        }
        free(want_diffusers), free(want_exact), guarded_free(got);
    }
    free(t);
    fixture_close(fx);
}

static void test_timestep_embedding_defaults(void) {
    TimestepEmbeddingParams p = timestep_embedding_defaults();
    EXPECT(p.flip_sin_to_cos && p.downscale_freq_shift == 0 && p.scale == 1 && p.max_period == 10000,
           "defaults: flip %d shift %g scale %g max_period %g", p.flip_sin_to_cos, p.downscale_freq_shift, p.scale,
           p.max_period);
    /* t = 0: cos columns 1, sin columns 0; with flip the cos half comes first. */
    float t = 0, out[8];
    timestep_embedding(tensor_2d(out, 1, 8), &t, p);
    EXPECT(out[0] == 1 && out[3] == 1 && out[4] == 0 && out[7] == 0, "t = 0: %g %g %g %g", (double)out[0],
           (double)out[3], (double)out[4], (double)out[7]);
    /* dim 1: no frequencies, only the zero padding (as diffusers). */
    float one = 123;
    timestep_embedding(tensor_2d(&one, 1, 1), &t, p);
    EXPECT(one == 0, "dim 1 gives %g", (double)one);
}

/* ------------------------------------------------------------------------------------------------ */
/* nn.Embedding */

static void test_embedding_matches_pytorch(void) {
    const size_t v = 10, f = 7, n = 6;
    Fixture *fx = fixture_open("embed");
    float *table = fixture_floats(fx, "embedding.table", v * f), *ids_f = fixture_floats(fx, "embedding.ids", n);
    float *y_want = fixture_floats(fx, "embedding.y", n * f), *dy = fixture_floats(fx, "embedding.dy", n * f);
    float *dtable_want = fixture_floats(fx, "embedding.dtable", v * f);
    int ids[6];
    for (size_t i = 0; i < n; i++) ids[i] = (int)ids_f[i];
    float *y = guarded_alloc(n * f), *dtable = guarded_alloc(v * f);
    embedding_forward(tensor_2d(y, n, f), tensor_2d(table, v, f), ids);
    embedding_backward(tensor_2d(dtable, v, f), tensor_2d(dy, n, f), ids);
    guarded_check("embedding out", y), guarded_check("embedding dtable", dtable);
    EXPECT(memcmp(y, y_want, n * f * sizeof(float)) == 0, "embedding forward differs from PyTorch");
    /* id 3 appears three times: the same additions in the same order as PyTorch's. */
    expect_close("embedding backward", dtable, dtable_want, v * f, 1e-7, 1e-7);
    /* Backward accumulates. */
    embedding_backward(tensor_2d(dtable, v, f), tensor_2d(dy, n, f), ids);
    for (size_t i = 0; i < v * f; i++) dtable_want[i] *= 2;
    expect_close("embedding backward twice", dtable, dtable_want, v * f, 1e-6, 1e-6);
    free(table), free(ids_f), free(y_want), free(dy), free(dtable_want), guarded_free(y), guarded_free(dtable);
    fixture_close(fx);
}

typedef struct EmbedCtx {
    Tensor out, table, dout;
    const int *ids;
} EmbedCtx;

static double embed_loss(void *ctx) {
    EmbedCtx *c = ctx;
    embedding_forward(c->out, c->table, c->ids);
    return dot_double(c->out.data, c->dout.data, tensor_numel(c->out));
}

static void test_embedding_gradcheck(void) {
    const size_t v = 5, f = 4, n = 7;
    static const int ids[7] = {4, 1, 1, 0, 4, 4, 2}; /* row 3 is never used: its gradient is 0 */
    float *table = xmalloc(v * f * sizeof(float)), *out = xmalloc(n * f * sizeof(float));
    float *dout = xmalloc(n * f * sizeof(float)), *dtable = xcalloc(v * f, sizeof(float));
    fill_normal(table, v * f, 1), fill_normal(dout, n * f, 2);
    EmbedCtx c = {tensor_2d(out, n, f), tensor_2d(table, v, f), tensor_2d(dout, n, f), ids};
    embedding_backward(tensor_2d(dtable, v, f), c.dout, ids);
    gradcheck("embedding table", embed_loss, &c, table, dtable, v * f, v * f, 1e-2, 1e-4, 1e-4);
    free(table), free(out), free(dout), free(dtable);
}

static void test_embedding_thread_count_independent(void) {
    /* Large enough to run in parallel; only 5 distinct ids, so many rows add into each. */
    const size_t v = 5, f = 1000, n = 64;
    int *ids = xmalloc(n * sizeof(int));
    for (size_t i = 0; i < n; i++) ids[i] = (int)((i * 7) % v);
    float *dout = xmalloc(n * f * sizeof(float)), *d1 = xcalloc(v * f, sizeof(float)), *d2 = xcalloc(v * f, sizeof(float));
    fill_normal(dout, n * f, 3);
    int saved = threads_get();
    threads_set(1);
    embedding_backward(tensor_2d(d1, v, f), tensor_2d(dout, n, f), ids);
    threads_set(2);
    embedding_backward(tensor_2d(d2, v, f), tensor_2d(dout, n, f), ids);
    threads_set(saved);
    EXPECT(memcmp(d1, d2, v * f * sizeof(float)) == 0, "embedding backward differs between 1 and 2 threads");
    double want = 0;
    for (size_t i = 0; i < n; i++)
        if (ids[i] == 2) want += dout[i * f + 999];
    EXPECT(fabs(d1[2 * f + 999] - want) < 1e-5, "dtable[2, 999] is %g, expected %g", (double)d1[2 * f + 999], want);
    free(ids), free(dout), free(d1), free(d2);
}

/* ------------------------------------------------------------------------------------------------ */
/* CHECK failures */

static void bad_call(void *ctx) {
    int which = *(int *)ctx;
    static float table[12], out[12], t[3];
    static const int bad_high[2] = {1, 4}, bad_low[2] = {-1, 0}, good[2] = {0, 1};
    TimestepEmbeddingParams p = timestep_embedding_defaults();
    switch (which) {
    case 0: embedding_forward(tensor_2d(out, 2, 3), tensor_2d(table, 4, 3), bad_high); break;
    case 1: embedding_backward(tensor_2d(table, 4, 3), tensor_2d(out, 2, 3), bad_low); break;
    case 2: embedding_forward(tensor_2d(out, 2, 2), tensor_2d(table, 4, 3), good); break;
    case 3: p.downscale_freq_shift = 1, timestep_embedding(tensor_2d(out, 3, 2), t, p); break;
    case 4: timestep_embedding(tensor_2d(out, 3, 4), NULL, p); break;
    default: p.max_period = 0, timestep_embedding(tensor_2d(out, 3, 4), t, p); break;
    }
}

static void test_embed_check_failures(void) {
    static const char *expected[] = {
        "embedding_forward: ids[1] = 4 is outside the table's [0, 4)",
        "embedding_backward: ids[0] = -1 is outside the table's [0, 4)",
        "embedding_forward: out has shape (2, 2), expected (2, 3)",
        "timestep_embedding: dim 2 with downscale_freq_shift 1 divides by zero",
        "timestep_embedding: timesteps is NULL",
        "max_period 0",
    };
    for (int i = 0; i < (int)(sizeof expected / sizeof expected[0]); i++)
        expect_check_failure(expected[i], bad_call, &i, expected[i]);
}

int main(void) {
    RUN(test_timestep_embedding_matches_diffusers);
    RUN(test_timestep_embedding_defaults);
    RUN(test_embedding_matches_pytorch);
    RUN(test_embedding_gradcheck);
    RUN(test_embedding_thread_count_independent);
    RUN(test_embed_check_failures);
    return harness_finish();
}
