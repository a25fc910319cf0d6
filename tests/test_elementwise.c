/* Activations, resampling and the elementwise glue (ops/act.h, ops/resample.h, ops/elementwise.h):
 * PyTorch fixtures (tests/fixtures/elementwise.safetensors from tools/torchref/fixtures_elementwise.py),
 * finite-difference gradients, SiLU's accuracy against double precision, in-place calls where the header
 * allows them, accumulation, thread-count independence of the reductions, and CHECK failures. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/threads.h"
#include "harness.h"
#include "ops/act.h"
#include "ops/elementwise.h"
#include "ops/resample.h"

/* ------------------------------------------------------------------------------------------------ */
/* Helpers */

static float *zeros(size_t n) { return xcalloc(n ? n : 1, sizeof(float)); }

static float *copy_of(const float *x, size_t n) {
    float *y = xmalloc(n * sizeof(float));
    memcpy(y, x, n * sizeof(float));
    return y;
}

static float *normal(size_t n, uint64_t seed) {
    float *x = xmalloc(n * sizeof(float));
    fill_normal(x, n, seed);
    return x;
}

/* A generic gradcheck closure: forward(ctx) fills out, and the loss is sum(out * dout). */
typedef struct Closure {
    void (*forward)(struct Closure *c);
    Tensor out, dout;
    Tensor in[3];
    float scale;
} Closure;

static double closure_loss(void *ctx) {
    Closure *c = ctx;
    c->forward(c);
    return dot_double(c->out.data, c->dout.data, tensor_numel(c->out));
}

/* Fixture tensors come as (N, H, W, C) or flat; n_expected guards the size. */
static float *fx(Fixture *f, const char *name, size_t n) { return fixture_floats(f, name, n); }

/* ------------------------------------------------------------------------------------------------ */
/* SiLU */

static void test_silu_matches_pytorch(void) {
    Fixture *f = fixture_open("elementwise");
    const size_t n = 264;
    float *x = fx(f, "silu.x", n), *y_want = fx(f, "silu.y", n), *dy = fx(f, "silu.dy", n), *dx_want = fx(f, "silu.dx", n);
    float *y = zeros(n), *dx = zeros(n);
    silu_forward(tensor_1d(y, n), tensor_1d(x, n));
    silu_backward(tensor_1d(dx, n), tensor_1d(dy, n), tensor_1d(x, n));
    /* PyTorch flushes silu(-88) to -0 where the exact value is -5e-37; atol covers that. */
    expect_close("silu forward", y, y_want, n, 1e-30, 4e-7);
    /* The gradient crosses zero near x = -1.28, where both sides cancel to ~1e-8 absolute. */
    expect_close("silu backward", dx, dx_want, n, 1e-7, 1e-6);
    free(x), free(y_want), free(dy), free(dx_want), free(y), free(dx);
    fixture_close(f);
}

static double ulp_error(float got, double want) {
    float w = (float)want;
    double ulp = fabs((double)nextafterf(w, INFINITY) - (double)w);
    if (ulp == 0 || !isfinite(ulp)) ulp = 1.4e-45;
    return fabs((double)got - want) / ulp;
}

static void test_silu_accuracy(void) {
    /* Every 2^-10 over [-100, 100], against x / (1 + e^-x) in double. Below x = -87, e^x is subnormal
     * and so is x e^x's precision: there only the size is checked (PyTorch returns -0). */
    const size_t n = 204801;
    float *x = xmalloc(n * sizeof(float)), *y = xmalloc(n * sizeof(float)), *g = zeros(n), *ones = xmalloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) x[i] = -100.0f + (float)i / 1024.0f, ones[i] = 1;
    silu_forward(tensor_1d(y, n), tensor_1d(x, n));
    silu_backward(tensor_1d(g, n), tensor_1d(ones, n), tensor_1d(x, n));
    double worst = 0, worst_grad = 0, worst_tail = 0;
    size_t worst_i = 0, worst_grad_i = 0;
    for (size_t i = 0; i < n; i++) {
        double v = x[i], s = 1.0 / (1.0 + exp(-v)), grad = s * (1 + v * (1 - s));
        if (v < -87) {
            worst_tail = fmax(worst_tail, fabs((double)y[i] - v * s) + fabs((double)g[i] - grad));
            continue;
        }
        double e = ulp_error(y[i], v * s);
        if (e > worst) worst = e, worst_i = i;
        /* Near its zero at x = -1.28 the gradient is 1 + x (1 - s) cancelling: an absolute error there. */
        double ge = fabs(g[i] - grad) / (1e-7 + 4e-7 * fabs(grad));
        if (ge > worst_grad) worst_grad = ge, worst_grad_i = i;
    }
    EXPECT(worst <= 3, "silu is %g ulp from double precision at x = %g", worst, (double)x[worst_i]);
    EXPECT(worst_grad <= 1, "silu gradient error %g times atol 1e-7 + rtol 4e-7 at x = %g", worst_grad,
           (double)x[worst_grad_i]);
    EXPECT(worst_tail <= 1e-35, "silu below -87 is off by %g", worst_tail);
    /* Special values, as PyTorch: silu(inf) = inf, silu(-inf) = -inf * 0 = NaN, NaN stays NaN. */
    float sx[4] = {0.0f, INFINITY, -INFINITY, NAN}, sy[4];
    silu_forward(tensor_1d(sy, 4), tensor_1d(sx, 4));
    EXPECT(sy[0] == 0 && isinf(sy[1]) && sy[1] > 0 && isnan(sy[2]) && isnan(sy[3]), "special values: %g %g %g %g",
           (double)sy[0], (double)sy[1], (double)sy[2], (double)sy[3]);
    /* In place (out aliases inp). */
    float *inplace = copy_of(x, n);
    silu_forward(tensor_1d(inplace, n), tensor_1d(inplace, n));
    EXPECT(memcmp(inplace, y, n * sizeof(float)) == 0, "in-place silu differs");
    free(x), free(y), free(g), free(ones), free(inplace);
}

static void silu_closure(Closure *c) { silu_forward(c->out, c->in[0]); }

static void test_silu_gradcheck(void) {
    const size_t n = 60;
    Closure c = {.forward = silu_closure, .out = tensor_1d(zeros(n), n), .dout = tensor_1d(normal(n, 2), n)};
    c.in[0] = tensor_1d(normal(n, 1), n);
    for (size_t i = 0; i < n; i++) c.in[0].data[i] *= 4;
    float *dx = zeros(n);
    silu_backward(tensor_1d(dx, n), c.dout, c.in[0]);
    gradcheck("silu", closure_loss, &c, c.in[0].data, dx, n, n, 1e-2, 1e-3, 1e-3);
    /* Accumulates: a second call adds as much again. */
    float *once = copy_of(dx, n);
    silu_backward(tensor_1d(dx, n), c.dout, c.in[0]);
    for (size_t i = 0; i < n; i++) once[i] *= 2;
    expect_close("silu backward twice", dx, once, n, 1e-7, 1e-6);
    free(c.out.data), free(c.dout.data), free(c.in[0].data), free(dx), free(once);
}

/* ------------------------------------------------------------------------------------------------ */
/* Resampling */

static void test_resample_matches_pytorch(void) {
    Fixture *f = fixture_open("elementwise");
    {
        size_t n_in = 2 * 4 * 5 * 3, n_out = 4 * n_in;
        float *x = fx(f, "upsample.x", n_in), *y_want = fx(f, "upsample.y", n_out), *dy = fx(f, "upsample.dy", n_out);
        float *dx_want = fx(f, "upsample.dx", n_in), *y = zeros(n_out), *dx = zeros(n_in);
        upsample_nearest2x_forward(tensor_4d(y, 2, 8, 10, 3), tensor_4d(x, 2, 4, 5, 3));
        upsample_nearest2x_backward(tensor_4d(dx, 2, 4, 5, 3), tensor_4d(dy, 2, 8, 10, 3));
        EXPECT(memcmp(y, y_want, n_out * sizeof(float)) == 0, "upsample forward differs from PyTorch");
        expect_close("upsample backward", dx, dx_want, n_in, 1e-6, 1e-6);
        free(x), free(y_want), free(dy), free(dx_want), free(y), free(dx);
    }
    {
        size_t n_in = 2 * 6 * 8 * 3, n_out = n_in / 4;
        float *x = fx(f, "avgpool.x", n_in), *y_want = fx(f, "avgpool.y", n_out), *dy = fx(f, "avgpool.dy", n_out);
        float *dx_want = fx(f, "avgpool.dx", n_in), *y = zeros(n_out), *dx = zeros(n_in);
        avg_pool2x_forward(tensor_4d(y, 2, 3, 4, 3), tensor_4d(x, 2, 6, 8, 3));
        avg_pool2x_backward(tensor_4d(dx, 2, 6, 8, 3), tensor_4d(dy, 2, 3, 4, 3));
        /* Same additions in the same order, and an exact 1/4: bit for bit. */
        EXPECT(memcmp(y, y_want, n_out * sizeof(float)) == 0, "avg_pool forward differs from PyTorch");
        EXPECT(memcmp(dx, dx_want, n_in * sizeof(float)) == 0, "avg_pool backward differs from PyTorch");
        free(x), free(y_want), free(dy), free(dx_want), free(y), free(dx);
    }
    fixture_close(f);
}

static void upsample_closure(Closure *c) { upsample_nearest2x_forward(c->out, c->in[0]); }
static void avgpool_closure(Closure *c) { avg_pool2x_forward(c->out, c->in[0]); }

static void test_resample_gradcheck_and_accumulate(void) {
    /* Linear ops: the central difference is exact up to rounding. */
    size_t n_small = 2 * 3 * 5 * 4, n_big = 4 * n_small;
    Closure up = {.forward = upsample_closure, .out = tensor_4d(zeros(n_big), 2, 6, 10, 4),
                  .dout = tensor_4d(normal(n_big, 3), 2, 6, 10, 4)};
    up.in[0] = tensor_4d(normal(n_small, 4), 2, 3, 5, 4);
    float *dx = zeros(n_small);
    for (int i = 0; i < 2; i++) upsample_nearest2x_backward(tensor_4d(dx, 2, 3, 5, 4), up.dout);
    for (size_t i = 0; i < n_small; i++) dx[i] *= 0.5f; /* two calls accumulate twice the gradient */
    gradcheck("upsample", closure_loss, &up, up.in[0].data, dx, n_small, n_small, 1e-2, 1e-4, 1e-4);

    Closure pool = {.forward = avgpool_closure, .out = tensor_4d(zeros(n_small), 2, 3, 5, 4),
                    .dout = tensor_4d(normal(n_small, 5), 2, 3, 5, 4)};
    pool.in[0] = tensor_4d(normal(n_big, 6), 2, 6, 10, 4);
    float *dp = zeros(n_big);
    for (int i = 0; i < 2; i++) avg_pool2x_backward(tensor_4d(dp, 2, 6, 10, 4), pool.dout);
    for (size_t i = 0; i < n_big; i++) dp[i] *= 0.5f;
    gradcheck("avg_pool", closure_loss, &pool, pool.in[0].data, dp, n_big, n_big, 1e-2, 1e-4, 1e-4);
    void *owned[] = {up.out.data, up.dout.data, up.in[0].data, dx, pool.out.data, pool.dout.data, pool.in[0].data, dp};
    for (size_t i = 0; i < sizeof owned / sizeof owned[0]; i++) free(owned[i]);
}

/* ------------------------------------------------------------------------------------------------ */
/* Elementwise glue */

static void test_elementwise_matches_pytorch(void) {
    Fixture *f = fixture_open("elementwise");
    {   /* concat: a (2, 4, 5, 3), b (2, 4, 5, 2) */
        size_t na = 2 * 4 * 5 * 3, nb = 2 * 4 * 5 * 2, ny = na + nb;
        float *a = fx(f, "concat.a", na), *b = fx(f, "concat.b", nb), *y_want = fx(f, "concat.y", ny);
        float *dy = fx(f, "concat.dy", ny), *da_want = fx(f, "concat.da", na), *db_want = fx(f, "concat.db", nb);
        float *y = zeros(ny), *da = zeros(na), *db = zeros(nb);
        concat_channels_forward(tensor_4d(y, 2, 4, 5, 5), tensor_4d(a, 2, 4, 5, 3), tensor_4d(b, 2, 4, 5, 2));
        concat_channels_backward(tensor_4d(da, 2, 4, 5, 3), tensor_4d(db, 2, 4, 5, 2), tensor_4d(dy, 2, 4, 5, 5));
        EXPECT(memcmp(y, y_want, ny * sizeof(float)) == 0, "concat forward differs");
        EXPECT(memcmp(da, da_want, na * sizeof(float)) == 0 && memcmp(db, db_want, nb * sizeof(float)) == 0,
               "concat backward differs");
        /* Only one of the gradients. */
        float *db2 = zeros(nb);
        concat_channels_backward(tensor_none(), tensor_4d(db2, 2, 4, 5, 2), tensor_4d(dy, 2, 4, 5, 5));
        EXPECT(memcmp(db2, db_want, nb * sizeof(float)) == 0, "concat backward with da none differs");
        void *owned[] = {a, b, y_want, dy, da_want, db_want, y, da, db, db2};
        for (size_t i = 0; i < sizeof owned / sizeof owned[0]; i++) free(owned[i]);
    }
    {   /* add_scaled: (a + b) / 0.7 as (a + b) * (1 / 0.7f): one more rounding than PyTorch's division. */
        size_t n = 2 * 3 * 5 * 4;
        float *a = fx(f, "add_scaled.a", n), *b = fx(f, "add_scaled.b", n), *y_want = fx(f, "add_scaled.y", n);
        float *dy = fx(f, "add_scaled.dy", n), *da_want = fx(f, "add_scaled.da", n), *db_want = fx(f, "add_scaled.db", n);
        float scale = (float)(1.0 / fixture_scalar(f, "add_scaled.output_scale_factor"));
        float *y = zeros(n), *da = zeros(n), *db = zeros(n);
        add_scaled_forward(tensor_4d(y, 2, 3, 5, 4), tensor_4d(a, 2, 3, 5, 4), tensor_4d(b, 2, 3, 5, 4), scale);
        add_scaled_backward(tensor_4d(da, 2, 3, 5, 4), tensor_4d(db, 2, 3, 5, 4), tensor_4d(dy, 2, 3, 5, 4), scale);
        expect_close("add_scaled forward", y, y_want, n, 1e-7, 3e-7);
        expect_close("add_scaled backward da", da, da_want, n, 1e-7, 3e-7);
        expect_close("add_scaled backward db", db, db_want, n, 1e-7, 3e-7);
        /* In place, out aliasing a and then b. */
        float *a2 = copy_of(a, n), *b2 = copy_of(b, n);
        add_scaled_forward(tensor_4d(a2, 2, 3, 5, 4), tensor_4d(a2, 2, 3, 5, 4), tensor_4d(b, 2, 3, 5, 4), scale);
        add_scaled_forward(tensor_4d(b2, 2, 3, 5, 4), tensor_4d(a, 2, 3, 5, 4), tensor_4d(b2, 2, 3, 5, 4), scale);
        EXPECT(memcmp(a2, y, n * sizeof(float)) == 0 && memcmp(b2, y, n * sizeof(float)) == 0, "in-place add_scaled");
        /* The same buffer as both gradients (out = (x + x) scale) receives both contributions. */
        float *dboth = zeros(n);
        add_scaled_backward(tensor_4d(dboth, 2, 3, 5, 4), tensor_4d(dboth, 2, 3, 5, 4), tensor_4d(dy, 2, 3, 5, 4), scale);
        for (size_t i = 0; i < n; i++) da[i] *= 2;
        expect_close("add_scaled backward into one buffer", dboth, da, n, 0, 1e-7);
        void *owned[] = {a, b, y_want, dy, da_want, db_want, y, da, db, a2, b2, dboth};
        for (size_t i = 0; i < sizeof owned / sizeof owned[0]; i++) free(owned[i]);
    }
    {   /* add_channel: x (2, 3, 4, 6), v (2, 6) */
        size_t n = 2 * 3 * 4 * 6;
        float *x = fx(f, "add_channel.x", n), *v = fx(f, "add_channel.v", 12), *y_want = fx(f, "add_channel.y", n);
        float *dy = fx(f, "add_channel.dy", n), *dx_want = fx(f, "add_channel.dx", n), *dv_want = fx(f, "add_channel.dv", 12);
        float *y = zeros(n), *dx = zeros(n), *dv = zeros(12);
        add_channel_forward(tensor_4d(y, 2, 3, 4, 6), tensor_4d(x, 2, 3, 4, 6), tensor_2d(v, 2, 6));
        add_channel_backward(tensor_4d(dx, 2, 3, 4, 6), tensor_2d(dv, 2, 6), tensor_4d(dy, 2, 3, 4, 6));
        EXPECT(memcmp(y, y_want, n * sizeof(float)) == 0, "add_channel forward differs");
        EXPECT(memcmp(dx, dx_want, n * sizeof(float)) == 0, "add_channel backward dx differs");
        expect_close("add_channel backward dv", dv, dv_want, 12, 1e-6, 1e-6);
        float *inplace = copy_of(x, n);
        add_channel_forward(tensor_4d(inplace, 2, 3, 4, 6), tensor_4d(inplace, 2, 3, 4, 6), tensor_2d(v, 2, 6));
        EXPECT(memcmp(inplace, y, n * sizeof(float)) == 0, "in-place add_channel");
        void *owned[] = {x, v, y_want, dy, dx_want, dv_want, y, dx, dv, inplace};
        for (size_t i = 0; i < sizeof owned / sizeof owned[0]; i++) free(owned[i]);
    }
    {   /* scale_shift: x (2, 3, 4, 6), scale and shift (2, 6) */
        size_t n = 2 * 3 * 4 * 6;
        float *x = fx(f, "scale_shift.x", n), *sc = fx(f, "scale_shift.scale", 12), *sh = fx(f, "scale_shift.shift", 12);
        float *y_want = fx(f, "scale_shift.y", n), *dy = fx(f, "scale_shift.dy", n), *dx_want = fx(f, "scale_shift.dx", n);
        float *dsc_want = fx(f, "scale_shift.dscale", 12), *dsh_want = fx(f, "scale_shift.dshift", 12);
        float *y = zeros(n), *dx = zeros(n), *dsc = zeros(12), *dsh = zeros(12);
        Tensor xt = tensor_4d(x, 2, 3, 4, 6), sct = tensor_2d(sc, 2, 6);
        scale_shift_forward(tensor_4d(y, 2, 3, 4, 6), xt, sct, tensor_2d(sh, 2, 6));
        scale_shift_backward(tensor_4d(dx, 2, 3, 4, 6), tensor_2d(dsc, 2, 6), tensor_2d(dsh, 2, 6),
                             tensor_4d(dy, 2, 3, 4, 6), xt, sct);
        expect_close("scale_shift forward", y, y_want, n, 1e-7, 1e-7);
        expect_close("scale_shift backward dx", dx, dx_want, n, 1e-7, 1e-7);
        expect_close("scale_shift backward dscale", dsc, dsc_want, 12, 1e-6, 1e-6);
        expect_close("scale_shift backward dshift", dsh, dsh_want, 12, 1e-6, 1e-6);
        float *inplace = copy_of(x, n);
        scale_shift_forward(tensor_4d(inplace, 2, 3, 4, 6), tensor_4d(inplace, 2, 3, 4, 6), sct, tensor_2d(sh, 2, 6));
        EXPECT(memcmp(inplace, y, n * sizeof(float)) == 0, "in-place scale_shift");
        void *owned[] = {x, sc, sh, y_want, dy, dx_want, dsc_want, dsh_want, y, dx, dsc, dsh, inplace};
        for (size_t i = 0; i < sizeof owned / sizeof owned[0]; i++) free(owned[i]);
    }
    fixture_close(f);
}

static void concat_closure(Closure *c) { concat_channels_forward(c->out, c->in[0], c->in[1]); }
static void add_scaled_closure(Closure *c) { add_scaled_forward(c->out, c->in[0], c->in[1], c->scale); }
static void add_channel_closure(Closure *c) { add_channel_forward(c->out, c->in[0], c->in[1]); }
static void scale_shift_closure(Closure *c) { scale_shift_forward(c->out, c->in[0], c->in[1], c->in[2]); }

static void test_elementwise_gradcheck(void) {
    /* (N, L, C) tokens here, to exercise the 3-D form. Linear in each input except scale_shift's product. */
    const size_t n = 2, l = 5, c = 70, numel = n * l * c; /* 70 channels: a partial 64-channel block */
    float *dout = normal(numel, 7), *x = normal(numel, 8), *y = normal(numel, 9), *out = zeros(numel);
    float *v = normal(n * c, 10), *s = normal(n * c, 11), *t = normal(n * c, 12);
    float *gx = zeros(numel), *gy = zeros(numel), *gv = zeros(n * c), *gs = zeros(n * c), *gt = zeros(n * c);

    Closure cat = {.forward = concat_closure, .out = tensor_3d(out, n, l, c), .dout = tensor_3d(dout, n, l, c)};
    cat.in[0] = tensor_3d(x, n, l, 30), cat.in[1] = tensor_3d(y, n, l, 40);
    concat_channels_backward(tensor_3d(gx, n, l, 30), tensor_3d(gy, n, l, 40), cat.dout);
    gradcheck("concat a", closure_loss, &cat, x, gx, n * l * 30, 100, 1e-2, 1e-4, 1e-4);
    gradcheck("concat b", closure_loss, &cat, y, gy, n * l * 40, 100, 1e-2, 1e-4, 1e-4);

    memset(gx, 0, numel * sizeof(float)), memset(gy, 0, numel * sizeof(float));
    Closure add = {.forward = add_scaled_closure, .out = tensor_3d(out, n, l, c), .dout = tensor_3d(dout, n, l, c),
                   .scale = 0.75f};
    add.in[0] = tensor_3d(x, n, l, c), add.in[1] = tensor_3d(y, n, l, c);
    add_scaled_backward(tensor_3d(gx, n, l, c), tensor_3d(gy, n, l, c), add.dout, add.scale);
    gradcheck("add_scaled a", closure_loss, &add, x, gx, numel, 100, 1e-2, 1e-4, 1e-4);
    gradcheck("add_scaled b", closure_loss, &add, y, gy, numel, 100, 1e-2, 1e-4, 1e-4);

    memset(gx, 0, numel * sizeof(float));
    Closure ach = {.forward = add_channel_closure, .out = tensor_3d(out, n, l, c), .dout = tensor_3d(dout, n, l, c)};
    ach.in[0] = tensor_3d(x, n, l, c), ach.in[1] = tensor_2d(v, n, c);
    add_channel_backward(tensor_3d(gx, n, l, c), tensor_2d(gv, n, c), ach.dout);
    gradcheck("add_channel inp", closure_loss, &ach, x, gx, numel, 100, 1e-2, 1e-4, 1e-4);
    gradcheck("add_channel v", closure_loss, &ach, v, gv, n * c, 140, 1e-2, 1e-4, 1e-4);

    memset(gx, 0, numel * sizeof(float));
    Closure ss = {.forward = scale_shift_closure, .out = tensor_3d(out, n, l, c), .dout = tensor_3d(dout, n, l, c)};
    ss.in[0] = tensor_3d(x, n, l, c), ss.in[1] = tensor_2d(s, n, c), ss.in[2] = tensor_2d(t, n, c);
    scale_shift_backward(tensor_3d(gx, n, l, c), tensor_2d(gs, n, c), tensor_2d(gt, n, c), ss.dout, ss.in[0], ss.in[1]);
    gradcheck("scale_shift inp", closure_loss, &ss, x, gx, numel, 100, 1e-2, 1e-4, 1e-4);
    gradcheck("scale_shift scale", closure_loss, &ss, s, gs, n * c, 140, 1e-2, 1e-4, 1e-4);
    gradcheck("scale_shift shift", closure_loss, &ss, t, gt, n * c, 140, 1e-2, 1e-4, 1e-4);
    void *owned[] = {dout, x, y, out, v, s, t, gx, gy, gv, gs, gt};
    for (size_t i = 0; i < sizeof owned / sizeof owned[0]; i++) free(owned[i]);
}

/* The per-channel reductions split the work by (sample, channel block), never by position: the same
 * bits for 1 and 2 threads, at a size where both run in parallel. */
static void test_reductions_thread_count_independent(void) {
    const size_t n = 2, h = 32, w = 32, c = 200, numel = n * h * w * c;
    float *dy = normal(numel, 13), *x = normal(numel, 14), *sc = normal(n * c, 15);
    float *dv[2], *dsc[2], *dsh[2], *dx[2];
    int saved = threads_get();
    for (int t = 0; t < 2; t++) {
        threads_set(t + 1);
        dv[t] = zeros(n * c), dsc[t] = zeros(n * c), dsh[t] = zeros(n * c), dx[t] = zeros(numel);
        add_channel_backward(tensor_none(), tensor_2d(dv[t], n, c), tensor_4d(dy, n, h, w, c));
        scale_shift_backward(tensor_4d(dx[t], n, h, w, c), tensor_2d(dsc[t], n, c), tensor_2d(dsh[t], n, c),
                             tensor_4d(dy, n, h, w, c), tensor_4d(x, n, h, w, c), tensor_2d(sc, n, c));
    }
    threads_set(saved);
    EXPECT(memcmp(dv[0], dv[1], n * c * sizeof(float)) == 0, "add_channel dv differs between 1 and 2 threads");
    EXPECT(memcmp(dsc[0], dsc[1], n * c * sizeof(float)) == 0 && memcmp(dsh[0], dsh[1], n * c * sizeof(float)) == 0 &&
               memcmp(dx[0], dx[1], numel * sizeof(float)) == 0,
           "scale_shift gradients differ between 1 and 2 threads");
    /* And they are the sums they should be. */
    double want = 0;
    for (size_t p = 0; p < h * w; p++) want += dy[(1 * h * w + p) * c + 7];
    EXPECT(fabs(dv[0][c + 7] - want) <= 1e-6 * fabs(want) + 1e-6, "dv[1, 7] is %g, expected %g", (double)dv[0][c + 7], want);
    free(dy), free(x), free(sc);
    for (int t = 0; t < 2; t++) free(dv[t]), free(dsc[t]), free(dsh[t]), free(dx[t]);
}

/* ------------------------------------------------------------------------------------------------ */
/* CHECK failures */

static void bad_call(void *ctx) {
    int which = *(int *)ctx;
    static float p[4096], q[4096], r[4096];
    switch (which) {
    case 0: silu_forward(tensor_2d(p, 3, 4), tensor_2d(q, 4, 3)); break;
    case 1: upsample_nearest2x_forward(tensor_4d(p, 1, 4, 4, 3), tensor_4d(q, 1, 2, 3, 3)); break;
    case 2: avg_pool2x_forward(tensor_4d(p, 1, 2, 2, 3), tensor_4d(q, 1, 5, 4, 3)); break;
    case 3: concat_channels_forward(tensor_4d(p, 1, 2, 2, 5), tensor_4d(q, 1, 2, 2, 3), tensor_4d(r, 1, 2, 2, 3)); break;
    case 4: concat_channels_forward(tensor_4d(p, 1, 2, 2, 5), tensor_4d(q, 1, 2, 3, 3), tensor_4d(r, 1, 2, 2, 2)); break;
    case 5: add_scaled_forward(tensor_2d(p, 2, 3), tensor_2d(q, 2, 3), tensor_2d(r, 3, 2), 1.0f); break;
    case 6: add_channel_forward(tensor_4d(p, 2, 2, 2, 3), tensor_4d(q, 2, 2, 2, 3), tensor_2d(r, 3, 2)); break;
    case 7: scale_shift_forward(tensor_3d(p, 2, 4, 3), tensor_3d(q, 2, 4, 3), tensor_2d(r, 2, 3), tensor_2d(r, 2, 4)); break;
    default: add_channel_backward(tensor_3d(p, 2, 4, 3), tensor_none(), tensor_1d(q, 3)); break;
    }
}

static void test_elementwise_check_failures(void) {
    static const char *expected[] = {
        "silu_forward: out has shape (3, 4), expected (4, 3)",
        "upsample_nearest2x_forward: out has shape (1, 4, 4, 3), expected (1, 4, 6, 3)",
        "avg_pool2x_forward: inp is 5 x 4 pixels; 2x2 pooling needs an even height and width",
        "concat_channels_forward: b has shape (1, 2, 2, 3), expected (1, 2, 2, 2)",
        "concat_channels_forward: a has shape (1, 2, 3, 3), expected (1, 2, 2, 3)",
        "add_scaled_forward: b has shape (3, 2), expected (2, 3)",
        "add_channel_forward: v has shape (3, 2), expected (2, 3)",
        "scale_shift_forward: shift has shape (2, 4), expected (2, 3)",
        "add_channel_backward: dout has shape (3), expected (N, ..., C)",
    };
    for (int i = 0; i < (int)(sizeof expected / sizeof expected[0]); i++)
        expect_check_failure(expected[i], bad_call, &i, expected[i]);
}

int main(void) {
    RUN(test_silu_matches_pytorch);
    RUN(test_silu_accuracy);
    RUN(test_silu_gradcheck);
    RUN(test_resample_matches_pytorch);
    RUN(test_resample_gradcheck_and_accumulate);
    RUN(test_elementwise_matches_pytorch);
    RUN(test_elementwise_gradcheck);
    RUN(test_reductions_thread_count_independent);
    RUN(test_elementwise_check_failures);
    return harness_finish();
}
