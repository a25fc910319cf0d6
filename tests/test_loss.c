/* The MSE loss and dropout (ops/loss.h, ops/dropout.h). MSE: PyTorch fixture
 * (tests/fixtures/loss.safetensors from tools/torchref/fixtures_loss.py), a double reference on a large
 * tensor, the same bits for any thread count, gradient check, accumulation. Dropout: every decision equals
 * rng_uniform(seed, stream, first_index + i) >= p, the keep rate is within statistical bounds, forward and
 * backward use the same mask, the mask does not depend on how the tensor is split (first_index) nor on the
 * thread count, p = 0 is the identity, gradient check, and CHECK failures for p outside [0, 1). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/rng.h"
#include "core/threads.h"
#include "harness.h"
#include "ops/dropout.h"
#include "ops/loss.h"

static float *normal(size_t n, uint64_t seed) {
    float *x = xmalloc(n * sizeof(float));
    fill_normal(x, n, seed);
    return x;
}

/* ------------------------------------------------------------------------------------------------ */
/* MSE */

static void test_mse_matches_pytorch(void) {
    const size_t n = 4 * 8 * 8 * 3;
    Fixture *fx = fixture_open("loss");
    float *pred = fixture_floats(fx, "mse.pred", n), *target = fixture_floats(fx, "mse.target", n);
    float *dpred_want = fixture_floats(fx, "mse.dpred", n);
    double loss_want = fixture_scalar(fx, "mse.loss"), dloss = fixture_scalar(fx, "mse.dloss");
    Tensor p = tensor_4d(pred, 4, 8, 8, 3), t = tensor_4d(target, 4, 8, 8, 3);
    double loss = mse_loss_forward(p, t);
    /* PyTorch sums in float: its loss is good to a few float ulp. */
    EXPECT(fabs(loss - loss_want) <= 1e-6 * loss_want, "loss %.9g, PyTorch %.9g", loss, loss_want);
    float *dpred = guarded_alloc(n);
    mse_loss_backward(tensor_4d(dpred, 4, 8, 8, 3), p, t, (float)dloss);
    guarded_check("mse dpred", dpred);
    expect_close("mse backward", dpred, dpred_want, n, 1e-9, 2e-7);
    mse_loss_backward(tensor_4d(dpred, 4, 8, 8, 3), p, t, (float)dloss);
    for (size_t i = 0; i < n; i++) dpred_want[i] *= 2;
    expect_close("mse backward twice", dpred, dpred_want, n, 1e-9, 4e-7);
    free(pred), free(target), free(dpred_want), guarded_free(dpred);
    fixture_close(fx);
}

static void test_mse_large_and_thread_count_independent(void) {
    /* 16 x 64 x 64 x 3 elements, the reference batch's noise: several chunks, summed in double. */
    const size_t n = 16 * 64 * 64 * 3;
    float *pred = normal(n, 1), *target = normal(n, 2);
    double want = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)pred[i] - target[i];
        want += d * d;
    }
    want /= (double)n;
    Tensor p = tensor_4d(pred, 16, 64, 64, 3), t = tensor_4d(target, 16, 64, 64, 3);
    int saved = threads_get();
    threads_set(1);
    double one = mse_loss_forward(p, t);
    threads_set(2);
    double two = mse_loss_forward(p, t);
    threads_set(saved);
    EXPECT(one == two, "loss with 1 thread %.17g, with 2 threads %.17g", one, two);
    EXPECT(fabs(one - want) <= 1e-13 * want, "loss %.17g, double reference %.17g", one, want);
    free(pred), free(target);
}

typedef struct MseCtx {
    Tensor pred, target;
} MseCtx;

static double mse_loss(void *ctx) {
    MseCtx *c = ctx;
    return mse_loss_forward(c->pred, c->target);
}

static void test_mse_gradcheck(void) {
    const size_t n = 50;
    MseCtx c = {tensor_2d(normal(n, 3), 5, 10), tensor_2d(normal(n, 4), 5, 10)};
    float *dpred = xcalloc(n, sizeof(float));
    mse_loss_backward(tensor_2d(dpred, 5, 10), c.pred, c.target, 1.0f);
    gradcheck("mse pred", mse_loss, &c, c.pred.data, dpred, n, n, 1e-3, 1e-6, 1e-4);
    free(c.pred.data), free(c.target.data), free(dpred);
}

/* ------------------------------------------------------------------------------------------------ */
/* Dropout */

static void test_dropout_mask_is_the_rng_draw(void) {
    const size_t n = 100003;
    const DropoutParams p = {.p = 0.3f, .seed = 42, .stream = rng_stream(7, 1, 2), .first_index = 5};
    float *x = xmalloc(n * sizeof(float)), *y = guarded_alloc(n);
    for (size_t i = 0; i < n; i++) x[i] = 1.0f + (float)(i % 13); /* never 0: a 0 output means dropped */
    dropout_forward(tensor_1d(y, n), tensor_1d(x, n), p);
    guarded_check("dropout out", y);
    const float scale = (float)(1.0 / (1.0 - 0.3f));
    size_t wrong = 0, kept = 0;
    for (size_t i = 0; i < n; i++) {
        bool keep = rng_uniform(p.seed, p.stream, p.first_index + i) >= p.p;
        kept += keep;
        if (y[i] != (keep ? x[i] * scale : 0.0f)) wrong++;
    }
    EXPECT(wrong == 0, "%zu of %zu elements differ from rng_uniform(...) >= p with scale 1 / (1 - p)", wrong, n);
    /* Kept fraction: binomial, standard deviation sqrt(p (1 - p) / n) = 0.00145; allow 5 of them. */
    double rate = (double)kept / (double)n;
    EXPECT(fabs(rate - 0.7) < 0.0073, "keep rate %g, expected 0.7", rate);
    free(x), guarded_free(y);
}

static void test_dropout_keep_rate(void) {
    const size_t n = 1 << 20;
    float *x = xmalloc(n * sizeof(float)), *y = xmalloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) x[i] = 1;
    static const float ps[] = {0.1f, 0.5f, 0.9f};
    for (size_t k = 0; k < 3; k++) {
        DropoutParams p = {.p = ps[k], .seed = 9, .stream = k};
        dropout_forward(tensor_1d(y, n), tensor_1d(x, n), p);
        size_t kept = 0;
        double total = 0;
        for (size_t i = 0; i < n; i++) kept += y[i] != 0, total += y[i];
        double rate = (double)kept / (double)n, sd = sqrt(ps[k] * (1 - ps[k]) / (double)n);
        EXPECT(fabs(rate - (1 - ps[k])) < 5 * sd, "p = %g: keep rate %g (5 sd = %g)", (double)ps[k], rate, 5 * sd);
        /* The scaling keeps the mean: E[out] = x. */
        EXPECT(fabs(total / (double)n - 1) < 5 * sd / (1 - ps[k]), "p = %g: mean output %g", (double)ps[k],
               total / (double)n);
    }
    free(x), free(y);
}

static void test_dropout_backward_uses_the_same_mask(void) {
    const size_t n = 65536;
    const DropoutParams p = {.p = 0.25f, .seed = 3, .stream = 11, .first_index = 1000};
    float *x = normal(n, 5), *y = xmalloc(n * sizeof(float)), *dout = normal(n, 6), *dinp = xcalloc(n, sizeof(float));
    dropout_forward(tensor_1d(y, n), tensor_1d(x, n), p);
    dropout_backward(tensor_1d(dinp, n), tensor_1d(dout, n), p);
    const float scale = (float)(1.0 / (1.0 - 0.25f));
    size_t mismatched = 0;
    for (size_t i = 0; i < n; i++) {
        bool kept_fwd = y[i] != 0, kept_bwd = dinp[i] != 0;
        if (kept_fwd != kept_bwd || (kept_bwd && dinp[i] != dout[i] * scale)) mismatched++;
    }
    EXPECT(mismatched == 0, "%zu elements where backward's mask or scale differs from forward's", mismatched);
    /* Backward accumulates. */
    float *once = xmalloc(n * sizeof(float));
    memcpy(once, dinp, n * sizeof(float));
    dropout_backward(tensor_1d(dinp, n), tensor_1d(dout, n), p);
    for (size_t i = 0; i < n; i++) once[i] *= 2;
    EXPECT(memcmp(once, dinp, n * sizeof(float)) == 0, "two backward calls do not add up to twice one");
    free(x), free(y), free(dout), free(dinp), free(once);
}

static void test_dropout_independent_of_split_and_threads(void) {
    /* The whole tensor at once, or in pieces at odd offsets with first_index advanced accordingly, on 1 or
     * 2 threads, in place or not: the same bits. */
    const size_t n = 200001;
    const DropoutParams p = {.p = 0.5f, .seed = 77, .stream = 5, .first_index = 3};
    float *x = normal(n, 7), *whole = xmalloc(n * sizeof(float)), *pieces = xmalloc(n * sizeof(float));
    int saved = threads_get();
    threads_set(1);
    dropout_forward(tensor_1d(whole, n), tensor_1d(x, n), p);
    threads_set(2);
    static const size_t cuts[] = {0, 1, 6, 12345, 100000, 199999, 200001};
    for (size_t k = 0; k + 1 < sizeof cuts / sizeof cuts[0]; k++) {
        DropoutParams part = p;
        part.first_index = p.first_index + cuts[k];
        size_t len = cuts[k + 1] - cuts[k];
        dropout_forward(tensor_1d(pieces + cuts[k], len), tensor_1d(x + cuts[k], len), part);
    }
    EXPECT(memcmp(whole, pieces, n * sizeof(float)) == 0, "dropout in pieces or on 2 threads differs");
    float *inplace = xmalloc(n * sizeof(float));
    memcpy(inplace, x, n * sizeof(float));
    dropout_forward(tensor_1d(inplace, n), tensor_1d(inplace, n), p);
    threads_set(saved);
    EXPECT(memcmp(whole, inplace, n * sizeof(float)) == 0, "in-place dropout differs");
    /* Another seed or stream draws another mask. */
    DropoutParams other = p;
    other.seed++;
    dropout_forward(tensor_1d(pieces, n), tensor_1d(x, n), other);
    EXPECT(memcmp(whole, pieces, n * sizeof(float)) != 0, "the seed does not change the mask");
    other = p, other.stream++;
    dropout_forward(tensor_1d(pieces, n), tensor_1d(x, n), other);
    EXPECT(memcmp(whole, pieces, n * sizeof(float)) != 0, "the stream does not change the mask");
    free(x), free(whole), free(pieces), free(inplace);
}

static void test_dropout_p_zero_is_identity(void) {
    const size_t n = 1000;
    const DropoutParams p = {.p = 0, .seed = 1};
    float *x = normal(n, 8), *y = xmalloc(n * sizeof(float)), *g = xcalloc(n, sizeof(float));
    dropout_forward(tensor_1d(y, n), tensor_1d(x, n), p);
    EXPECT(memcmp(x, y, n * sizeof(float)) == 0, "p = 0 changes the values");
    dropout_forward(tensor_1d(y, n), tensor_1d(y, n), p);
    EXPECT(memcmp(x, y, n * sizeof(float)) == 0, "p = 0 in place changes the values");
    dropout_backward(tensor_1d(g, n), tensor_1d(x, n), p);
    dropout_backward(tensor_1d(g, n), tensor_1d(x, n), p);
    bool doubled = true;
    for (size_t i = 0; i < n; i++) doubled = doubled && g[i] == 2 * x[i];
    EXPECT(doubled, "p = 0 backward does not accumulate dout");
    free(x), free(y), free(g);
}

typedef struct DropCtx {
    Tensor out, inp, dout;
    DropoutParams p;
} DropCtx;

static double dropout_loss(void *ctx) {
    DropCtx *c = ctx;
    dropout_forward(c->out, c->inp, c->p);
    return dot_double(c->out.data, c->dout.data, tensor_numel(c->out));
}

static void test_dropout_gradcheck(void) {
    const size_t n = 64;
    DropCtx c = {tensor_1d(xmalloc(n * sizeof(float)), n), tensor_1d(normal(n, 9), n), tensor_1d(normal(n, 10), n),
                 {.p = 0.4f, .seed = 5, .stream = 2, .first_index = 17}};
    float *dinp = xcalloc(n, sizeof(float));
    dropout_backward(tensor_1d(dinp, n), c.dout, c.p);
    gradcheck("dropout", dropout_loss, &c, c.inp.data, dinp, n, n, 1e-2, 1e-5, 1e-5);
    free(c.out.data), free(c.inp.data), free(c.dout.data), free(dinp);
}

/* ------------------------------------------------------------------------------------------------ */
/* CHECK failures */

static void bad_call(void *ctx) {
    int which = *(int *)ctx;
    static float a[12], b[12];
    switch (which) {
    case 0: dropout_forward(tensor_1d(a, 12), tensor_1d(b, 12), (DropoutParams){.p = 1.0f}); break;
    case 1: dropout_backward(tensor_1d(a, 12), tensor_1d(b, 12), (DropoutParams){.p = -0.1f}); break;
    case 2: dropout_forward(tensor_1d(a, 12), tensor_1d(b, 12), (DropoutParams){.p = NAN}); break;
    case 3: dropout_forward(tensor_2d(a, 3, 4), tensor_2d(b, 4, 3), (DropoutParams){.p = 0.5f}); break;
    case 4: mse_loss_forward(tensor_2d(a, 3, 4), tensor_2d(b, 2, 6)); break;
    default: mse_loss_backward(tensor_1d(a, 11), tensor_1d(a, 12), tensor_1d(b, 12), 1.0f); break;
    }
}

static void test_loss_check_failures(void) {
    static const char *expected[] = {
        "dropout_forward: dropout probability p = 1, expected 0 <= p < 1",
        "dropout_backward: dropout probability p = -0.1, expected 0 <= p < 1",
        "dropout_forward: dropout probability p = nan",
        "dropout_forward: out has shape (3, 4), expected (4, 3)",
        "mse_loss_forward: target has shape (2, 6), expected (3, 4)",
        "mse_loss_backward: dpred has shape (11), expected (12)",
    };
    for (int i = 0; i < (int)(sizeof expected / sizeof expected[0]); i++)
        expect_check_failure(expected[i], bad_call, &i, expected[i]);
}

int main(void) {
    RUN(test_mse_matches_pytorch);
    RUN(test_mse_large_and_thread_count_independent);
    RUN(test_mse_gradcheck);
    RUN(test_dropout_mask_is_the_rng_draw);
    RUN(test_dropout_keep_rate);
    RUN(test_dropout_backward_uses_the_same_mask);
    RUN(test_dropout_independent_of_split_and_threads);
    RUN(test_dropout_p_zero_is_identity);
    RUN(test_dropout_gradcheck);
    RUN(test_loss_check_failures);
    return harness_finish();
}
