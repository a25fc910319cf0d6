/* Group norm: finite-difference gradients, PyTorch fixtures (tests/fixtures/group_norm.safetensors from
 * tools/torchref/fixtures_group_norm.py), the U-Net's realistic shapes against a plain double-precision
 * reference written here (guarded outputs, NaN/inf checks, backward accumulating twice), bitwise identical
 * results for 1, 2 and 3 threads, robustness to a large mean offset, a zero-variance group, and CHECK
 * failures; the fused GroupNorm + SiLU against the two ops it replaces. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/half.h"
#include "core/rng.h"
#include "core/threads.h"
#include "harness.h"
#include "ops/act.h"
#include "ops/group_norm.h"

/* ------------------------------------------------------------------------------------------------ */
/* Reference: the textbook formulas, one (sample, group) at a time, everything in double. */

typedef struct RefShape {
    size_t n, s, c, g;
} RefShape;

static void ref_forward(double *y, double *mean, double *rstd, const float *x, const float *w, const float *b,
                        RefShape sh, double eps) {
    size_t cg = sh.c / sh.g;
    for (size_t n = 0; n < sh.n; n++)
        for (size_t g = 0; g < sh.g; g++) {
            double sum = 0, sq = 0, count = (double)(sh.s * cg);
            for (size_t s = 0; s < sh.s; s++)
                for (size_t c = g * cg; c < (g + 1) * cg; c++) sum += x[(n * sh.s + s) * sh.c + c];
            double m = sum / count;
            for (size_t s = 0; s < sh.s; s++)
                for (size_t c = g * cg; c < (g + 1) * cg; c++) {
                    double d = x[(n * sh.s + s) * sh.c + c] - m;
                    sq += d * d;
                }
            double r = 1.0 / sqrt(sq / count + eps);
            mean[n * sh.g + g] = m, rstd[n * sh.g + g] = r;
            for (size_t s = 0; s < sh.s; s++)
                for (size_t c = g * cg; c < (g + 1) * cg; c++) {
                    size_t i = (n * sh.s + s) * sh.c + c;
                    y[i] = (x[i] - m) * r * (w ? w[c] : 1.0) + (b ? b[c] : 0.0);
                }
        }
}

/* dx = rstd / M (M w dy - sum(w dy) - xhat sum(w dy xhat)); dweight = sum dy xhat; dbias = sum dy. */
static void ref_backward(double *dx, double *dw, double *db, const float *dy, const float *x, const double *mean,
                         const double *rstd, const float *w, RefShape sh) {
    size_t cg = sh.c / sh.g;
    for (size_t c = 0; c < sh.c; c++) dw[c] = 0, db[c] = 0;
    for (size_t n = 0; n < sh.n; n++)
        for (size_t g = 0; g < sh.g; g++) {
            double m = mean[n * sh.g + g], r = rstd[n * sh.g + g], count = (double)(sh.s * cg), s1 = 0, s2 = 0;
            for (size_t s = 0; s < sh.s; s++)
                for (size_t c = g * cg; c < (g + 1) * cg; c++) {
                    size_t i = (n * sh.s + s) * sh.c + c;
                    double xhat = (x[i] - m) * r, wdy = dy[i] * (w ? w[c] : 1.0);
                    s1 += wdy, s2 += wdy * xhat;
                    dw[c] += dy[i] * xhat, db[c] += dy[i];
                }
            for (size_t s = 0; s < sh.s; s++)
                for (size_t c = g * cg; c < (g + 1) * cg; c++) {
                    size_t i = (n * sh.s + s) * sh.c + c;
                    double xhat = (x[i] - m) * r;
                    dx[i] = r / count * (count * dy[i] * (w ? w[c] : 1.0) - s1 - xhat * s2);
                }
        }
}

static float *to_floats(const double *x, size_t n) {
    float *f = xmalloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) f[i] = (float)x[i];
    return f;
}

/* A (N, S, C) activation as a 3-D tensor. */
static Tensor act3(float *data, RefShape sh) { return tensor_3d(data, sh.n, sh.s, sh.c); }

/* ------------------------------------------------------------------------------------------------ */
/* PyTorch fixtures */

typedef struct FixtureCase {
    const char *name;
    int ndim;
    size_t shape[4]; /* channels-last, as stored */
    bool affine;
} FixtureCase;

static void test_group_norm_matches_pytorch(void) {
    static const FixtureCase cases[] = {
        {"small", 4, {2, 6, 5, 8}, true},     {"offset", 4, {3, 4, 4, 12}, true}, {"tokens", 3, {2, 20, 6}, true},
        {"unet", 4, {2, 8, 8, 64}, true},     {"plain", 4, {1, 3, 7, 4}, false},
    };
    Fixture *fx = fixture_open("group_norm");
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        const FixtureCase *fc = &cases[k];
        char key[64], what[96];
#define LOAD(field, count) (snprintf(key, sizeof key, "%s." field, fc->name), fixture_floats(fx, key, (count)))
        Tensor shape_only = {.ndim = fc->ndim};
        memcpy(shape_only.shape, fc->shape, sizeof fc->shape);
        size_t numel = tensor_numel(shape_only), c = fc->shape[fc->ndim - 1], n = fc->shape[0];
        snprintf(key, sizeof key, "%s.groups", fc->name);
        int groups = (int)fixture_scalar(fx, key);
        snprintf(key, sizeof key, "%s.eps", fc->name);
        float eps = (float)fixture_scalar(fx, key);
        float *x = LOAD("x", numel), *dy = LOAD("dy", numel), *y_want = LOAD("y", numel), *dx_want = LOAD("dx", numel);
        float *mean_want = LOAD("mean", n * (size_t)groups), *rstd_want = LOAD("rstd", n * (size_t)groups);
        float *w = fc->affine ? LOAD("weight", c) : NULL, *b = fc->affine ? LOAD("bias", c) : NULL;
        float *dw_want = fc->affine ? LOAD("dweight", c) : NULL, *db_want = fc->affine ? LOAD("dbias", c) : NULL;
#undef LOAD
        Tensor xt = shape_only, dyt = shape_only, yt = shape_only, dxt = shape_only;
        xt.data = x, dyt.data = dy, yt.data = xcalloc(numel, sizeof(float)), dxt.data = xcalloc(numel, sizeof(float));
        float *mean = xcalloc(n * (size_t)groups, sizeof(float)), *rstd = xcalloc(n * (size_t)groups, sizeof(float));
        float *dw = xcalloc(c, sizeof(float)), *db = xcalloc(c, sizeof(float));
        Tensor wt = w ? tensor_1d(w, c) : tensor_none(), bt = b ? tensor_1d(b, c) : tensor_none();
        Tensor mt = tensor_2d(mean, n, (size_t)groups), rt = tensor_2d(rstd, n, (size_t)groups);

        group_norm_forward(yt, mt, rt, xt, wt, bt, groups, eps);
        group_norm_backward(dxt, w ? tensor_1d(dw, c) : tensor_none(), b ? tensor_1d(db, c) : tensor_none(), dyt, xt,
                            mt, rt, wt, groups);
        /* Tolerances: float results of O(1) values and sums of at most a few hundred terms. */
        snprintf(what, sizeof what, "%s: y", fc->name);
        expect_close(what, yt.data, y_want, numel, 1e-5, 1e-5);
        snprintf(what, sizeof what, "%s: mean", fc->name);
        expect_close(what, mean, mean_want, n * (size_t)groups, 1e-6, 1e-6);
        snprintf(what, sizeof what, "%s: rstd", fc->name);
        expect_close(what, rstd, rstd_want, n * (size_t)groups, 0, 1e-5);
        snprintf(what, sizeof what, "%s: dx", fc->name);
        expect_close(what, dxt.data, dx_want, numel, 1e-5, 1e-4);
        if (fc->affine) {
            snprintf(what, sizeof what, "%s: dweight", fc->name);
            expect_close(what, dw, dw_want, c, 1e-5, 1e-5);
            snprintf(what, sizeof what, "%s: dbias", fc->name);
            expect_close(what, db, db_want, c, 1e-5, 1e-5);
        }
        void *owned[] = {x, dy, y_want, dx_want, mean_want, rstd_want, w, b, dw_want, db_want, yt.data, dxt.data,
                         mean, rstd, dw, db};
        for (size_t i = 0; i < sizeof owned / sizeof owned[0]; i++) free(owned[i]);
    }
    fixture_close(fx);
}

/* ------------------------------------------------------------------------------------------------ */
/* Finite differences */

typedef struct GradCtx {
    Tensor x, y, dy, w, b, mean, rstd;
    int groups;
} GradCtx;

static double grad_loss(void *ctx) {
    GradCtx *g = ctx;
    group_norm_forward(g->y, g->mean, g->rstd, g->x, g->w, g->b, g->groups, 1e-5f);
    return dot_double(g->y.data, g->dy.data, tensor_numel(g->y));
}

static void gradcheck_shape(int ndim, const size_t *shape, int groups) {
    Tensor t = {.ndim = ndim};
    memcpy(t.shape, shape, (size_t)ndim * sizeof(size_t));
    size_t numel = tensor_numel(t), c = shape[ndim - 1], n = shape[0];
    GradCtx g = {.x = t, .y = t, .dy = t, .groups = groups};
    g.x.data = xmalloc(numel * sizeof(float)), g.y.data = xmalloc(numel * sizeof(float));
    g.dy.data = xmalloc(numel * sizeof(float));
    g.w = tensor_1d(xmalloc(c * sizeof(float)), c), g.b = tensor_1d(xmalloc(c * sizeof(float)), c);
    g.mean = tensor_2d(xmalloc(n * (size_t)groups * sizeof(float)), n, (size_t)groups);
    g.rstd = tensor_2d(xmalloc(n * (size_t)groups * sizeof(float)), n, (size_t)groups);
    fill_normal(g.x.data, numel, 1);
    fill_normal(g.dy.data, numel, 2);
    fill_uniform(g.w.data, c, 3, 0.5f, 1.5f);
    fill_normal(g.b.data, c, 4);
    Tensor dx = t;
    dx.data = xcalloc(numel, sizeof(float));
    float *dw = xcalloc(c, sizeof(float)), *db = xcalloc(c, sizeof(float));
    grad_loss(&g);
    group_norm_backward(dx, tensor_1d(dw, c), tensor_1d(db, c), g.dy, g.x, g.mean, g.rstd, g.w, groups);
    /* Step 1e-2 on O(1) inputs; the float forward's rounding puts ~5e-4 of noise on each difference. */
    gradcheck("group_norm dinp", grad_loss, &g, g.x.data, dx.data, numel, 200, 1e-2, 2e-3, 1e-2);
    gradcheck("group_norm dweight", grad_loss, &g, g.w.data, dw, c, 200, 1e-2, 2e-3, 1e-2);
    gradcheck("group_norm dbias", grad_loss, &g, g.b.data, db, c, 200, 1e-2, 2e-3, 1e-2);
    void *owned[] = {g.x.data, g.y.data, g.dy.data, g.w.data, g.b.data, g.mean.data, g.rstd.data, dx.data, dw, db};
    for (size_t i = 0; i < sizeof owned / sizeof owned[0]; i++) free(owned[i]);
}

static void test_group_norm_gradcheck(void) {
    /* The first two take the chunk split (one sample), the others the slab split (see group_norm.c). */
    gradcheck_shape(4, (size_t[]){1, 3, 5, 8}, 4);  /* 15 positions: a partial 8-row step */
    gradcheck_shape(3, (size_t[]){1, 20, 6}, 3);    /* tokens (N, L, C) */
    gradcheck_shape(2, (size_t[]){3, 12}, 4);       /* one position per sample, whole rows */
    gradcheck_shape(4, (size_t[]){2, 3, 5, 32}, 8); /* slabs of whole rows */
    gradcheck_shape(3, (size_t[]){2, 3, 128}, 2);   /* slabs of one group: 64 of 128 channels */
}

/* ------------------------------------------------------------------------------------------------ */
/* Realistic shapes against the double reference */

typedef struct Run {
    float *y, *mean, *rstd, *dx, *dw, *db;
} Run;

static Run run_alloc(RefShape sh) {
    size_t numel = sh.n * sh.s * sh.c;
    return (Run){guarded_alloc(numel), guarded_alloc(sh.n * sh.g), guarded_alloc(sh.n * sh.g),
                 guarded_alloc(numel), guarded_alloc(sh.c), guarded_alloc(sh.c)};
}

static void run_free(Run *r) {
    float *all[] = {r->y, r->mean, r->rstd, r->dx, r->dw, r->db};
    for (size_t i = 0; i < 6; i++) guarded_free(all[i]);
}

static void run_both(Run *r, RefShape sh, const float *x, const float *dy, const float *w, const float *b, float eps) {
    Tensor xt = act3((float *)x, sh), mt = tensor_2d(r->mean, sh.n, sh.g), rt = tensor_2d(r->rstd, sh.n, sh.g);
    Tensor wt = tensor_1d((float *)w, sh.c);
    group_norm_forward(act3(r->y, sh), mt, rt, xt, wt, tensor_1d((float *)b, sh.c), (int)sh.g, eps);
    group_norm_backward(act3(r->dx, sh), tensor_1d(r->dw, sh.c), tensor_1d(r->db, sh.c), act3((float *)dy, sh), xt,
                        mt, rt, wt, (int)sh.g);
}

static bool run_guards_ok(const char *what, const Run *r) {
    const float *all[] = {r->y, r->mean, r->rstd, r->dx, r->dw, r->db};
    bool ok = true;
    for (size_t i = 0; i < 6; i++) ok = guarded_check(what, all[i]) && ok;
    return ok;
}

static void check_realistic(RefShape sh, float eps) {
    size_t numel = sh.n * sh.s * sh.c;
    char what[128];
    snprintf(what, sizeof what, "(%zu, %zu, %zu) G=%zu", sh.n, sh.s, sh.c, sh.g);
    float *x = xmalloc(numel * sizeof(float)), *dy = xmalloc(numel * sizeof(float));
    float *w = xmalloc(sh.c * sizeof(float)), *b = xmalloc(sh.c * sizeof(float));
    fill_normal(x, numel, 11);
    for (size_t i = 0; i < numel; i++) x[i] = 0.5f + 2.0f * x[i] + 0.01f * (float)(i % sh.c); /* channel offsets */
    fill_normal(dy, numel, 12);
    fill_uniform(w, sh.c, 13, 0.5f, 1.5f);
    fill_normal(b, sh.c, 14);

    double *y_ref = xmalloc(numel * sizeof(double)), *dx_ref = xmalloc(numel * sizeof(double));
    double *mean_ref = xmalloc(sh.n * sh.g * sizeof(double)), *rstd_ref = xmalloc(sh.n * sh.g * sizeof(double));
    double *dw_ref = xmalloc(sh.c * sizeof(double)), *db_ref = xmalloc(sh.c * sizeof(double));
    ref_forward(y_ref, mean_ref, rstd_ref, x, w, b, sh, eps);
    ref_backward(dx_ref, dw_ref, db_ref, dy, x, mean_ref, rstd_ref, w, sh);

    Run r = run_alloc(sh);
    run_both(&r, sh, x, dy, w, b, eps);
    bool ok = run_guards_ok(what, &r);
    ok = expect_all_finite(what, r.y, numel) && expect_all_finite(what, r.dx, numel) && ok;
    float *want;
    /* Outputs of O(5): float rounding of the statistics and of the final multiply-add. */
    want = to_floats(y_ref, numel), ok = expect_close("y vs double reference", r.y, want, numel, 1e-5, 1e-5) && ok;
    free(want);
    want = to_floats(mean_ref, sh.n * sh.g);
    ok = expect_close("mean vs double reference", r.mean, want, sh.n * sh.g, 1e-7, 1e-6) && ok;
    free(want);
    want = to_floats(rstd_ref, sh.n * sh.g);
    ok = expect_close("rstd vs double reference", r.rstd, want, sh.n * sh.g, 0, 1e-6) && ok;
    free(want);
    want = to_floats(dx_ref, numel), ok = expect_close("dx vs double reference", r.dx, want, numel, 1e-5, 1e-4) && ok;
    free(want);
    /* Parameter gradients sum N S = up to 8192 terms: compare relative to the largest. */
    want = to_floats(dw_ref, sh.c), ok = expect_close_scaled("dweight vs double reference", r.dw, want, sh.c, 1e-5) && ok;
    free(want);
    want = to_floats(db_ref, sh.c), ok = expect_close_scaled("dbias vs double reference", r.db, want, sh.c, 1e-5) && ok;
    free(want);

    /* Backward accumulates: a second call into the same gradients adds the same amounts again. */
    float *dx1 = xmalloc(numel * sizeof(float)), *dw1 = xmalloc(sh.c * sizeof(float)), *db1 = xmalloc(sh.c * sizeof(float));
    memcpy(dx1, r.dx, numel * sizeof(float)), memcpy(dw1, r.dw, sh.c * sizeof(float)), memcpy(db1, r.db, sh.c * sizeof(float));
    Tensor xt = act3(x, sh), mt = tensor_2d(r.mean, sh.n, sh.g), rt = tensor_2d(r.rstd, sh.n, sh.g);
    group_norm_backward(act3(r.dx, sh), tensor_1d(r.dw, sh.c), tensor_1d(r.db, sh.c), act3(dy, sh), xt, mt, rt,
                        tensor_1d(w, sh.c), (int)sh.g);
    for (size_t i = 0; i < numel; i++) dx1[i] *= 2;
    for (size_t i = 0; i < sh.c; i++) dw1[i] *= 2, db1[i] *= 2;
    ok = expect_close("dx after two backward calls", r.dx, dx1, numel, 1e-6, 1e-6) && ok;
    ok = expect_close("dweight after two backward calls", r.dw, dw1, sh.c, 1e-6, 1e-6) && ok;
    ok = expect_close("dbias after two backward calls", r.db, db1, sh.c, 1e-6, 1e-6) && ok;
    ok = run_guards_ok(what, &r) && ok;
    if (!ok) printf("  (failures above are for %s)\n", what);

    run_free(&r);
    void *owned[] = {x, dy, w, b, y_ref, dx_ref, mean_ref, rstd_ref, dw_ref, db_ref, dx1, dw1, db1};
    for (size_t i = 0; i < sizeof owned / sizeof owned[0]; i++) free(owned[i]);
}

static void test_group_norm_realistic_shapes(void) {
    /* The U-Net's group norms at batch 2, G = 32 (C = 672 at 64 x 64 comes from an up block's concat).
     * Sanitizer builds run the same channel counts at a quarter of the positions. */
#ifdef __SANITIZE_ADDRESS__
    const size_t div = 4;
#else
    const size_t div = 1;
#endif
    static const size_t shapes[][3] = {{64, 64, 224}, {32, 32, 448}, {16, 16, 672}, {8, 8, 896},
                                       {64, 64, 448}, {64, 64, 672}};
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        size_t s = shapes[i][0] * shapes[i][1] / (shapes[i][0] > 8 ? div : 1);
        check_realistic((RefShape){2, s, shapes[i][2], 32}, i % 2 ? 1e-6f : 1e-5f);
    }
    check_realistic((RefShape){1, 37, 20, 4}, 1e-5f); /* one sample, positions not a multiple of 8 */
}


/* Large outputs in 64-byte aligned memory are written with non-temporal stores, others with ordinary
 * ones: the same arithmetic, the same bits, and nothing written past the end. */
static void test_group_norm_streamed_output(void) {
#ifdef __SANITIZE_ADDRESS__
    RefShape sh = {1, 4096, 512, 32}; /* 8 MB, the smallest streamed size */
#else
    RefShape sh = {2, 4096, 448, 32};
#endif
    size_t numel = sh.n * sh.s * sh.c;
    float *x = xmalloc(numel * sizeof(float)), *w = xmalloc(sh.c * sizeof(float)), *b = xmalloc(sh.c * sizeof(float));
    fill_normal(x, numel, 51), fill_normal(w, sh.c, 52), fill_normal(b, sh.c, 53);
    float *aligned = alloc_floats(numel + 16), *plain = xmalloc((numel + 1) * sizeof(float));
    float *unaligned = plain + ((uintptr_t)plain % 64 == 0); /* 4 bytes off a 64-byte boundary at least */
    for (size_t i = 0; i < 16; i++) aligned[numel + i] = -7.0f;
    float mean[64], rstd[64];
    Tensor mt = tensor_2d(mean, sh.n, sh.g), rt = tensor_2d(rstd, sh.n, sh.g);
    group_norm_forward(act3(aligned, sh), mt, rt, act3(x, sh), tensor_1d(w, sh.c), tensor_1d(b, sh.c), (int)sh.g, 1e-5f);
    group_norm_forward(act3(unaligned, sh), mt, rt, act3(x, sh), tensor_1d(w, sh.c), tensor_1d(b, sh.c), (int)sh.g, 1e-5f);
    EXPECT(memcmp(aligned, unaligned, numel * sizeof(float)) == 0, "streamed and ordinary outputs differ");
    bool intact = true;
    for (size_t i = 0; i < 16; i++) intact = intact && aligned[numel + i] == -7.0f;
    EXPECT(intact, "the streamed output wrote past its end");
    free(x), free(w), free(b), alloc_free(aligned), free(plain);
}

/* ------------------------------------------------------------------------------------------------ */
/* Fused GroupNorm + SiLU: the forward output has the same bits as group_norm_forward then silu_forward
 * (streamed or not); backward, which recomputes the normalised values from the statistics, matches the
 * two backward ops within float rounding; finite differences. */

typedef struct FusedRun {
    float *y, *mean, *rstd, *dx, *dw, *db;
} FusedRun;

/* The unfused ops (fused = false) or the fused op, forward and backward, on x + shift (shift (N, C) or NULL:
 * the fused op takes it as its shift argument, the unfused ones get x + shift formed); dx, dw, db start at
 * 0.5 so that accumulation is checked too. */
static FusedRun fused_run(bool fused, RefShape sh, const float *x, const float *shift, const float *dy, const float *w,
                          const float *b) {
    size_t numel = sh.n * sh.s * sh.c;
    FusedRun r = {alloc_floats(numel), alloc_floats(sh.n * sh.g), alloc_floats(sh.n * sh.g), alloc_floats(numel),
                  alloc_floats(sh.c), alloc_floats(sh.c)};
    for (size_t i = 0; i < numel; i++) r.dx[i] = 0.5f;
    for (size_t i = 0; i < sh.c; i++) r.dw[i] = 0.5f, r.db[i] = 0.5f;
    Tensor xt = act3((float *)x, sh), mt = tensor_2d(r.mean, sh.n, sh.g), rt = tensor_2d(r.rstd, sh.n, sh.g);
    Tensor wt = tensor_1d((float *)w, sh.c), bt = tensor_1d((float *)b, sh.c), dwt = tensor_1d(r.dw, sh.c);
    Tensor dbt = tensor_1d(r.db, sh.c);
    if (fused) {
        Tensor st = shift ? tensor_2d((float *)shift, sh.n, sh.c) : tensor_none();
        group_norm_silu_forward(act3(r.y, sh), mt, rt, xt, tensor_none(), st, wt, bt, (int)sh.g, 1e-5f);
        group_norm_silu_backward(act3(r.dx, sh), tensor_none(), dwt, dbt, act3((float *)dy, sh), xt, tensor_none(),
                                 st, mt, rt, wt, bt, (int)sh.g);
        return r;
    }
    float *n = alloc_floats(numel), *dn = alloc_floats(numel), *summed = NULL;
    if (shift) {
        summed = alloc_floats(numel);
        for (size_t i = 0; i < numel; i++) summed[i] = x[i] + shift[i / (sh.s * sh.c) * sh.c + i % sh.c];
        xt = act3(summed, sh);
    }
    memset(dn, 0, numel * sizeof(float));
    group_norm_forward(act3(n, sh), mt, rt, xt, wt, bt, (int)sh.g, 1e-5f);
    silu_forward(act3(r.y, sh), act3(n, sh));
    silu_backward(act3(dn, sh), act3((float *)dy, sh), act3(n, sh));
    group_norm_backward(act3(r.dx, sh), dwt, dbt, act3(dn, sh), xt, mt, rt, wt, (int)sh.g);
    alloc_free(n), alloc_free(dn);
    if (summed) alloc_free(summed);
    return r;
}

static void fused_free(FusedRun *r) {
    float *all[] = {r->y, r->mean, r->rstd, r->dx, r->dw, r->db};
    for (size_t i = 0; i < 6; i++) alloc_free(all[i]);
}

/* ------------------------------------------------------------------------------------------------ */
/* Thread count: chunks depend only on the shape and partial sums combine in a fixed order, so the
 * results, of the plain and the fused op, are bitwise identical for any number of threads. */

static void test_group_norm_thread_count_independent(void) {
    static const RefShape shapes[] = {{2, 4096, 224, 32}, {2, 64, 896, 32}, {3, 1000, 24, 6}};
    int saved = threads_get();
    for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++) {
        RefShape sh = shapes[k];
        size_t numel = sh.n * sh.s * sh.c;
        float *x = xmalloc(numel * sizeof(float)), *dy = xmalloc(numel * sizeof(float));
        float *w = xmalloc(sh.c * sizeof(float)), *b = xmalloc(sh.c * sizeof(float));
        fill_normal(x, numel, 21), fill_normal(dy, numel, 22), fill_normal(w, sh.c, 23), fill_normal(b, sh.c, 24);
        Run runs[3];
        for (int t = 0; t < 3; t++) {
            threads_set(t + 1);
            runs[t] = run_alloc(sh);
            run_both(&runs[t], sh, x, dy, w, b, 1e-5f);
        }
        threads_set(saved);
        for (int t = 1; t < 3; t++) {
            bool same = memcmp(runs[0].y, runs[t].y, numel * sizeof(float)) == 0 &&
                        memcmp(runs[0].mean, runs[t].mean, sh.n * sh.g * sizeof(float)) == 0 &&
                        memcmp(runs[0].rstd, runs[t].rstd, sh.n * sh.g * sizeof(float)) == 0 &&
                        memcmp(runs[0].dx, runs[t].dx, numel * sizeof(float)) == 0 &&
                        memcmp(runs[0].dw, runs[t].dw, sh.c * sizeof(float)) == 0 &&
                        memcmp(runs[0].db, runs[t].db, sh.c * sizeof(float)) == 0;
            EXPECT(same, "(%zu, %zu, %zu): results with %d threads differ from 1 thread", sh.n, sh.s, sh.c, t + 1);
        }
        /* The fused GroupNorm + SiLU too. */
        threads_set(1);
        FusedRun one = fused_run(true, sh, x, NULL, dy, w, b);
        threads_set(3);
        FusedRun three = fused_run(true, sh, x, NULL, dy, w, b);
        threads_set(saved);
        bool same = memcmp(one.y, three.y, numel * sizeof(float)) == 0 &&
                    memcmp(one.dx, three.dx, numel * sizeof(float)) == 0 &&
                    memcmp(one.dw, three.dw, sh.c * sizeof(float)) == 0 &&
                    memcmp(one.db, three.db, sh.c * sizeof(float)) == 0;
        EXPECT(same, "(%zu, %zu, %zu): fused results with 3 threads differ from 1 thread", sh.n, sh.s, sh.c);
        fused_free(&one), fused_free(&three);
        for (int t = 0; t < 3; t++) run_free(&runs[t]);
        free(x), free(dy), free(w), free(b);
    }
}

static void check_fused(RefShape sh) {
    size_t numel = sh.n * sh.s * sh.c;
    float *x = xmalloc(numel * sizeof(float)), *dy = xmalloc(numel * sizeof(float));
    float *w = xmalloc(sh.c * sizeof(float)), *b = xmalloc(sh.c * sizeof(float));
    fill_normal(x, numel, 61), fill_normal(dy, numel, 62);
    fill_uniform(w, sh.c, 63, 0.5f, 1.5f), fill_normal(b, sh.c, 64);
    FusedRun want = fused_run(false, sh, x, NULL, dy, w, b), got = fused_run(true, sh, x, NULL, dy, w, b);
    char what[96];
    snprintf(what, sizeof what, "(%zu, %zu, %zu) G=%zu", sh.n, sh.s, sh.c, sh.g);
    bool ok = memcmp(got.y, want.y, numel * sizeof(float)) == 0 &&
              memcmp(got.mean, want.mean, sh.n * sh.g * sizeof(float)) == 0 &&
              memcmp(got.rstd, want.rstd, sh.n * sh.g * sizeof(float)) == 0;
    EXPECT(ok, "%s: fused forward differs from group_norm_forward + silu_forward", what);
    /* The bf16 output is that output rounded to bf16. */
    uint16_t *y16 = xmalloc(numel * sizeof(uint16_t));
    group_norm_silu_forward_bf16(y16, tensor_2d(got.mean, sh.n, sh.g), tensor_2d(got.rstd, sh.n, sh.g), act3(x, sh),
                                 tensor_none(), tensor_none(), tensor_1d(w, sh.c), tensor_1d(b, sh.c), (int)sh.g,
                                 1e-5f);
    size_t wrong = 0;
    for (size_t i = 0; i < numel; i++) wrong += y16[i] != float_to_bfloat16(want.y[i]);
    EXPECT(wrong == 0, "%s: %zu bf16 outputs are not the fp32 output rounded", what, wrong);
    /* So is group_norm_forward_bf16's, without the SiLU: group_norm_forward's output rounded. */
    float *normed = xmalloc(numel * sizeof(float));
    Tensor mean = tensor_2d(got.mean, sh.n, sh.g), rstd = tensor_2d(got.rstd, sh.n, sh.g);
    group_norm_forward(act3(normed, sh), mean, rstd, act3(x, sh), tensor_1d(w, sh.c), tensor_1d(b, sh.c), (int)sh.g,
                       1e-5f);
    group_norm_forward_bf16(y16, mean, rstd, act3(x, sh), tensor_1d(w, sh.c), tensor_1d(b, sh.c), (int)sh.g, 1e-5f);
    wrong = 0;
    for (size_t i = 0; i < numel; i++) wrong += y16[i] != float_to_bfloat16(normed[i]);
    EXPECT(wrong == 0, "%s: %zu bf16 normed values are not group_norm_forward's rounded", what, wrong);
    free(y16), free(normed);
    /* The recomputed normalised values differ from the stored ones by an ulp or two (coefficients rounded
     * from the float statistics); gradients of O(1) differ by that much times their size. */
    ok = expect_close("fused dx vs unfused", got.dx, want.dx, numel, 2e-5, 2e-5);
    ok = expect_close_scaled("fused dweight vs unfused", got.dw, want.dw, sh.c, 1e-5) && ok;
    ok = expect_close_scaled("fused dbias vs unfused", got.db, want.db, sh.c, 1e-5) && ok;
    if (!ok) printf("  (failures above are for %s)\n", what);
    fused_free(&want), fused_free(&got);
    free(x), free(dy), free(w), free(b);
}

static void test_group_norm_silu_matches_unfused(void) {
#ifdef __SANITIZE_ADDRESS__
    const size_t div = 4;
#else
    const size_t div = 1;
#endif
    check_fused((RefShape){2, 64 * 64 / div, 224, 32}); /* chunks */
    check_fused((RefShape){2, 8 * 8, 896, 32});         /* slabs */
    check_fused((RefShape){2, 4096, 448, 32});          /* chunks, streamed output (> 8 MB, aligned) */
    check_fused((RefShape){1, 37, 20, 4});              /* positions not a multiple of 8 */
}

/* With a shift (diffusers' time embedding before norm2), the fused op on x and shift against the unfused
 * ops on x + shift formed in float: the same up to that sum's rounding, forward and backward. */
static void check_shifted(RefShape sh) {
    size_t numel = sh.n * sh.s * sh.c;
    float *x = xmalloc(numel * sizeof(float)), *dy = xmalloc(numel * sizeof(float));
    float *w = xmalloc(sh.c * sizeof(float)), *b = xmalloc(sh.c * sizeof(float));
    float *shift = xmalloc(sh.n * sh.c * sizeof(float));
    fill_normal(x, numel, 81), fill_normal(dy, numel, 82), fill_normal(shift, sh.n * sh.c, 85);
    fill_uniform(w, sh.c, 83, 0.5f, 1.5f), fill_normal(b, sh.c, 84);
    for (size_t i = 0; i < sh.n * sh.c; i++) shift[i] *= 3.0f; /* offsets of the size of x's spread and more */
    FusedRun want = fused_run(false, sh, x, shift, dy, w, b), got = fused_run(true, sh, x, shift, dy, w, b);
    char what[96];
    snprintf(what, sizeof what, "(%zu, %zu, %zu) G=%zu, shifted", sh.n, sh.s, sh.c, sh.g);
    bool ok = expect_close("shifted y", got.y, want.y, numel, 2e-5, 2e-5);
    ok = expect_close("shifted mean", got.mean, want.mean, sh.n * sh.g, 1e-6, 1e-6) && ok;
    ok = expect_close("shifted rstd", got.rstd, want.rstd, sh.n * sh.g, 1e-6, 1e-6) && ok;
    ok = expect_close("shifted dx", got.dx, want.dx, numel, 2e-5, 2e-5) && ok;
    ok = expect_close_scaled("shifted dweight", got.dw, want.dw, sh.c, 1e-5) && ok;
    ok = expect_close_scaled("shifted dbias", got.db, want.db, sh.c, 1e-5) && ok;
    if (!ok) printf("  (failures above are for %s)\n", what);
    fused_free(&want), fused_free(&got);
    free(x), free(dy), free(w), free(b), free(shift);
}

static void test_group_norm_silu_shift(void) {
    check_shifted((RefShape){2, 4096, 96, 32}); /* chunks */
    check_shifted((RefShape){2, 8 * 8, 256, 32}); /* slabs */
    check_shifted((RefShape){3, 37, 20, 4});     /* positions not a multiple of 8 */
}

/* The fused backward on the two parts against the concatenation: the same bits of dx (written into part
 * a, added to part b's earlier contents, as an up block's resnet does) and of dweight and dbias. */
static void check_two_parts_backward(RefShape sh, size_t ca, const float *x, float *xa, float *xb, Tensor st,
                                     Tensor mt, Tensor rt, float *w, float *b, int shifted) {
    const size_t numel = sh.n * sh.s * sh.c, rows = sh.n * sh.s, cb = sh.c - ca;
    const RefShape sha = {sh.n, sh.s, ca, sh.g}, shb = {sh.n, sh.s, cb, sh.g};
    float *dy = xmalloc(numel * sizeof(float)), *dx = xmalloc(numel * sizeof(float));
    float *dxa = xmalloc(rows * ca * sizeof(float)), *dxb = xmalloc(rows * cb * sizeof(float));
    float *dwb = xcalloc(4 * sh.c, sizeof(float)); /* dweight, dbias: whole, then parts */
    fill_normal(dy, numel, 95), fill_normal(dx, numel, 96);
    for (size_t r = 0; r < rows; r++) memcpy(dxb + r * cb, dx + r * sh.c + ca, cb * sizeof(float));
    Tensor wt = tensor_1d(w, sh.c), bt = tensor_1d(b, sh.c);
    /* whole: part a's channels written (dx zeroed there first), part b's added to */
    for (size_t r = 0; r < rows; r++) memset(dx + r * sh.c, 0, ca * sizeof(float));
    group_norm_silu_backward(act3(dx, sh), tensor_none(), tensor_1d(dwb, sh.c), tensor_1d(dwb + sh.c, sh.c),
                             act3(dy, sh), act3((float *)x, sh), tensor_none(), st, mt, rt, wt, bt, (int)sh.g);
    group_norm_silu_backward(tensor_overwrite(act3(dxa, sha)), act3(dxb, shb), tensor_1d(dwb + 2 * sh.c, sh.c),
                             tensor_1d(dwb + 3 * sh.c, sh.c), act3(dy, sh), act3(xa, sha), act3(xb, shb), st, mt, rt,
                             wt, bt, (int)sh.g);
    bool same = memcmp(dwb, dwb + 2 * sh.c, 2 * sh.c * sizeof(float)) == 0;
    for (size_t r = 0; r < rows; r++)
        same = same && memcmp(dx + r * sh.c, dxa + r * ca, ca * sizeof(float)) == 0 &&
               memcmp(dx + r * sh.c + ca, dxb + r * cb, cb * sizeof(float)) == 0;
    EXPECT(same, "(%zu, %zu, %zu + %zu) G=%zu%s: the backward on two parts differs from the concatenation's", sh.n,
           sh.s, ca, cb, sh.g, shifted ? ", shifted" : "");
    free(dy), free(dx), free(dxa), free(dxb), free(dwb);
}

/* An input in two parts (an up block's hidden state and skip): the fused ops on (x[.., :ca], x[.., ca:])
 * give the same bits as on x (forward here, backward above), with and without a shift, fp32 and bf16,
 * wherever the split falls (inside a group, inside a slab, off a vector boundary). */
static void check_two_parts(RefShape sh, size_t ca) {
    const size_t numel = sh.n * sh.s * sh.c, rows = sh.n * sh.s, cb = sh.c - ca;
    float *x = xmalloc(numel * sizeof(float)), *xa = xmalloc(rows * ca * sizeof(float));
    float *xb = xmalloc(rows * cb * sizeof(float)), *shift = xmalloc(sh.n * sh.c * sizeof(float));
    float *w = xmalloc(sh.c * sizeof(float)), *b = xmalloc(sh.c * sizeof(float));
    fill_normal(x, numel, 91), fill_normal(shift, sh.n * sh.c, 92);
    fill_uniform(w, sh.c, 93, 0.5f, 1.5f), fill_normal(b, sh.c, 94);
    for (size_t r = 0; r < rows; r++) {
        memcpy(xa + r * ca, x + r * sh.c, ca * sizeof(float));
        memcpy(xb + r * cb, x + r * sh.c + ca, cb * sizeof(float));
    }
    float *y[2], *mean[2], *rstd[2];
    uint16_t *y16[2];
    const RefShape sha = {sh.n, sh.s, ca, sh.g}, shb = {sh.n, sh.s, cb, sh.g};
    for (int shifted = 0; shifted < 2; shifted++) {
        Tensor st = shifted ? tensor_2d(shift, sh.n, sh.c) : tensor_none();
        for (int k = 0; k < 2; k++) {
            y[k] = xmalloc(numel * sizeof(float)), y16[k] = xmalloc(numel * sizeof(uint16_t));
            mean[k] = xmalloc(sh.n * sh.g * sizeof(float)), rstd[k] = xmalloc(sh.n * sh.g * sizeof(float));
            Tensor mt = tensor_2d(mean[k], sh.n, sh.g), rt = tensor_2d(rstd[k], sh.n, sh.g);
            Tensor in = k ? act3(xa, sha) : act3(x, sh), in2 = k ? act3(xb, shb) : tensor_none();
            group_norm_silu_forward(act3(y[k], sh), mt, rt, in, in2, st, tensor_1d(w, sh.c), tensor_1d(b, sh.c),
                                    (int)sh.g, 1e-5f);
            group_norm_silu_forward_bf16(y16[k], mt, rt, in, in2, st, tensor_1d(w, sh.c), tensor_1d(b, sh.c),
                                         (int)sh.g, 1e-5f);
        }
        bool same = memcmp(y[0], y[1], numel * sizeof(float)) == 0 &&
                    memcmp(mean[0], mean[1], sh.n * sh.g * sizeof(float)) == 0 &&
                    memcmp(rstd[0], rstd[1], sh.n * sh.g * sizeof(float)) == 0;
        EXPECT(same, "(%zu, %zu, %zu + %zu) G=%zu%s: two parts differ from their concatenation", sh.n, sh.s, ca, cb,
               sh.g, shifted ? ", shifted" : "");
        EXPECT(memcmp(y16[0], y16[1], numel * sizeof(uint16_t)) == 0,
               "(%zu, %zu, %zu + %zu)%s: two parts' bf16 output differs", sh.n, sh.s, ca, cb,
               shifted ? ", shifted" : "");
        check_two_parts_backward(sh, ca, x, xa, xb, st, tensor_2d(mean[0], sh.n, sh.g), tensor_2d(rstd[0], sh.n, sh.g),
                                 w, b, shifted);
        for (int k = 0; k < 2; k++) free(y[k]), free(y16[k]), free(mean[k]), free(rstd[k]);
    }
    free(x), free(xa), free(xb), free(shift), free(w), free(b);
}

static void test_group_norm_silu_two_parts(void) {
    check_two_parts((RefShape){3, 28 * 28, 48, 8}, 32); /* slabs of whole rows; group 5 split 2 + 4 */
    check_two_parts((RefShape){2, 14 * 14, 96, 8}, 64); /* slabs of whole rows, split at a group's end */
    check_two_parts((RefShape){2, 8 * 8, 896, 32}, 500); /* slabs of 112 channels, one split at 52 */
    check_two_parts((RefShape){2, 4096, 256, 32}, 160); /* chunks of a large input: the next blocks prefetched */
    check_two_parts((RefShape){1, 37, 20, 4}, 7);       /* positions not a multiple of 8, odd widths */
}

typedef struct FusedGradCtx {
    RefShape sh;
    float *x, *y, *dy, *w, *b, *mean, *rstd, *shift;
} FusedGradCtx;

static double fused_grad_loss(void *ctx) {
    FusedGradCtx *g = ctx;
    RefShape sh = g->sh;
    group_norm_silu_forward(act3(g->y, sh), tensor_2d(g->mean, sh.n, sh.g), tensor_2d(g->rstd, sh.n, sh.g),
                            act3(g->x, sh), tensor_none(), tensor_2d(g->shift, sh.n, sh.c), tensor_1d(g->w, sh.c),
                            tensor_1d(g->b, sh.c), (int)sh.g, 1e-5f);
    return dot_double(g->y, g->dy, sh.n * sh.s * sh.c);
}

static void fused_gradcheck_shape(RefShape sh) {
    size_t numel = sh.n * sh.s * sh.c;
    FusedGradCtx g = {sh,
                      xmalloc(numel * sizeof(float)),
                      xmalloc(numel * sizeof(float)),
                      xmalloc(numel * sizeof(float)),
                      xmalloc(sh.c * sizeof(float)),
                      xmalloc(sh.c * sizeof(float)),
                      xmalloc(sh.n * sh.g * sizeof(float)),
                      xmalloc(sh.n * sh.g * sizeof(float)),
                      xmalloc(sh.n * sh.c * sizeof(float))};
    fill_normal(g.x, numel, 71), fill_normal(g.dy, numel, 72);
    fill_uniform(g.w, sh.c, 73, 0.5f, 1.5f), fill_normal(g.b, sh.c, 74), fill_normal(g.shift, sh.n * sh.c, 75);
    float *dx = xcalloc(numel, sizeof(float)), *dw = xcalloc(sh.c, sizeof(float)), *db = xcalloc(sh.c, sizeof(float));
    fused_grad_loss(&g);
    group_norm_silu_backward(act3(dx, sh), tensor_none(), tensor_1d(dw, sh.c), tensor_1d(db, sh.c), act3(g.dy, sh),
                             act3(g.x, sh), tensor_none(),
                             tensor_2d(g.shift, sh.n, sh.c), tensor_2d(g.mean, sh.n, sh.g),
                             tensor_2d(g.rstd, sh.n, sh.g), tensor_1d(g.w, sh.c), tensor_1d(g.b, sh.c), (int)sh.g);
    /* The shift's gradient is dx summed over positions (the op's input is x + shift). */
    float *dshift = xcalloc(sh.n * sh.c, sizeof(float));
    for (size_t i = 0; i < numel; i++) dshift[i / (sh.s * sh.c) * sh.c + i % sh.c] += dx[i];
    gradcheck("group_norm_silu dinp", fused_grad_loss, &g, g.x, dx, numel, 200, 1e-2, 2e-3, 1e-2);
    gradcheck("group_norm_silu dshift", fused_grad_loss, &g, g.shift, dshift, sh.n * sh.c, 200, 1e-2, 2e-3, 1e-2);
    gradcheck("group_norm_silu dweight", fused_grad_loss, &g, g.w, dw, sh.c, 200, 1e-2, 2e-3, 1e-2);
    gradcheck("group_norm_silu dbias", fused_grad_loss, &g, g.b, db, sh.c, 200, 1e-2, 2e-3, 1e-2);
    void *owned[] = {g.x, g.y, g.dy, g.w, g.b, g.mean, g.rstd, g.shift, dx, dw, db, dshift};
    for (size_t i = 0; i < sizeof owned / sizeof owned[0]; i++) free(owned[i]);
}

static void test_group_norm_silu_gradcheck(void) {
    fused_gradcheck_shape((RefShape){1, 15, 8, 4});  /* chunks (one sample), a partial 8-row step */
    fused_gradcheck_shape((RefShape){2, 15, 32, 8}); /* slabs of whole rows */
    fused_gradcheck_shape((RefShape){2, 3, 128, 2}); /* slabs of one group: 64 of 128 channels */
}


/* ------------------------------------------------------------------------------------------------ */
/* A mean far from zero next to a small spread: the one-pass E[x^2] - E[x]^2 in float loses every digit
 * here (mean^2 = 1e6 against a variance of 1e-4); the two-pass statistics must not. */

static void check_offset(RefShape sh) {
    size_t numel = sh.n * sh.s * sh.c;
    float *x = xmalloc(numel * sizeof(float)), *y = xmalloc(numel * sizeof(float));
    float *w = xmalloc(sh.c * sizeof(float)), *b = xmalloc(sh.c * sizeof(float));
    fill_normal(x, numel, 31);
    for (size_t i = 0; i < numel; i++) x[i] = 1000.0f + 0.01f * x[i];
    fill_uniform(w, sh.c, 32, 0.5f, 1.5f), fill_normal(b, sh.c, 33);
    float mean[8], rstd[8];
    group_norm_forward(act3(y, sh), tensor_2d(mean, sh.n, sh.g), tensor_2d(rstd, sh.n, sh.g), act3(x, sh),
                       tensor_1d(w, sh.c), tensor_1d(b, sh.c), (int)sh.g, 1e-6f);
    double *y_ref = xmalloc(numel * sizeof(double)), mean_ref[8], rstd_ref[8];
    ref_forward(y_ref, mean_ref, rstd_ref, x, w, b, sh, 1e-6);
    float mean_want[8], rstd_want[8];
    for (int i = 0; i < 8; i++) mean_want[i] = (float)mean_ref[i], rstd_want[i] = (float)rstd_ref[i];
    expect_close("offset data: mean", mean, mean_want, 8, 0, 1e-7);
    expect_close("offset data: rstd", rstd, rstd_want, 8, 0, 1e-5);
    /* out = x a + (bias - mean a) rounds at ulp(mean a) = ulp(1e5) ~ 0.008, the size of the input's own
     * quantisation ulp(1000) rstd |w| (PyTorch evaluates the same expression). */
    float *want = to_floats(y_ref, numel);
    expect_close("offset data: y", y, want, numel, 0.03, 0);
    free(want), free(x), free(y), free(w), free(b), free(y_ref);
}

static void test_group_norm_robust_to_offset(void) {
    check_offset((RefShape){2, 4096, 16, 4}); /* slab split */
    check_offset((RefShape){2, 32768, 16, 4}); /* chunk split */
}

/* A group whose values are all equal has variance 0 (its M2 may round to a tiny negative): rstd must be
 * 1 / sqrt(eps), the output the bias, nothing NaN. */
static void check_constant_group(RefShape sh) {
    size_t numel = sh.n * sh.s * sh.c;
    float *x = xmalloc(numel * sizeof(float)), *y = xmalloc(numel * sizeof(float)), *dy = xmalloc(numel * sizeof(float));
    float *dx = xcalloc(numel, sizeof(float)), w[16], b[16], dw[16] = {0}, db[16] = {0}, mean[8], rstd[8];
    fill_normal(x, numel, 41), fill_normal(dy, numel, 42), fill_uniform(w, sh.c, 43, 0.5f, 1.5f), fill_normal(b, sh.c, 44);
    for (size_t i = 0; i < numel; i++)
        if (i % sh.c < 4) x[i] = 3.7f; /* group 0 of both samples */
    Tensor mt = tensor_2d(mean, 2, sh.g), rt = tensor_2d(rstd, 2, sh.g), wt = tensor_1d(w, sh.c);
    group_norm_forward(act3(y, sh), mt, rt, act3(x, sh), wt, tensor_1d(b, sh.c), (int)sh.g, 1e-5f);
    group_norm_backward(act3(dx, sh), tensor_1d(dw, sh.c), tensor_1d(db, sh.c), act3(dy, sh), act3(x, sh), mt, rt,
                        wt, (int)sh.g);
    float want = (float)(1.0 / sqrt((double)1e-5f));
    EXPECT(fabsf(rstd[0] - want) <= 1e-6f * want && fabsf(rstd[sh.g] - want) <= 1e-6f * want,
           "rstd of a constant group: %g and %g, expected %g", (double)rstd[0], (double)rstd[sh.g], (double)want);
    EXPECT(mean[0] == 3.7f && mean[sh.g] == 3.7f, "mean of a constant group: %.9g", (double)mean[0]);
    double worst = 0;
    for (size_t i = 0; i < numel; i++)
        if (i % sh.c < 4) worst = fmax(worst, fabs((double)y[i] - b[i % sh.c]));
    /* x a and mean a (a = rstd w ~ 300) cancel up to the rounding of values ~ 1e3. */
    EXPECT(worst < 2e-4, "a constant group's output is off its bias by %g", worst);
    expect_all_finite("constant group y", y, numel);
    expect_all_finite("constant group dx", dx, numel);
    expect_all_finite("constant group dweight", dw, sh.c);
    free(x), free(y), free(dy), free(dx);
}

static void test_group_norm_constant_group(void) {
    check_constant_group((RefShape){2, 65536, 8, 2}); /* chunk split: a sample is past the slab size */
    check_constant_group((RefShape){2, 100, 16, 4}); /* slab split */
}

/* ------------------------------------------------------------------------------------------------ */
/* CHECK failures */

typedef struct BadCall {
    int which;
} BadCall;

static void bad_call(void *ctx) {
    int which = ((BadCall *)ctx)->which;
    static float x[2 * 3 * 8], y[2 * 3 * 8], w[8], b[8], m[8], r[8];
    Tensor xt = tensor_3d(x, 2, 3, 8), mt = tensor_2d(m, 2, 4), rt = tensor_2d(r, 2, 4);
    Tensor wt = tensor_1d(w, 8), bt = tensor_1d(b, 8);
    switch (which) {
    case 0: group_norm_forward(tensor_3d(y, 2, 4, 8), mt, rt, xt, wt, bt, 4, 1e-5f); break;
    case 1: group_norm_forward(tensor_3d(y, 2, 3, 8), mt, rt, xt, wt, bt, 3, 1e-5f); break;
    case 2: group_norm_forward(tensor_3d(y, 2, 3, 8), tensor_2d(m, 4, 2), rt, xt, wt, bt, 4, 1e-5f); break;
    case 3: group_norm_forward(tensor_3d(y, 2, 3, 8), mt, rt, xt, tensor_1d(w, 4), bt, 4, 1e-5f); break;
    case 4: group_norm_forward(tensor_3d(y, 2, 3, 8), mt, rt, xt, wt, bt, 4, -1.0f); break;
    case 5: group_norm_forward(tensor_1d(y, 8), mt, rt, tensor_1d(x, 8), wt, bt, 4, 1e-5f); break;
    case 6: group_norm_backward(tensor_3d(y, 2, 3, 8), tensor_1d(w, 8), tensor_none(), xt, xt, mt, rt, tensor_none(), 4);
        break;
    case 7: group_norm_backward(tensor_3d(y, 2, 3, 4), tensor_none(), tensor_none(), xt, xt, mt, rt, wt, 4); break;
    case 8:
        group_norm_silu_backward(tensor_3d(y, 2, 3, 8), tensor_none(), tensor_none(), tensor_none(), xt, xt,
                                 tensor_none(), tensor_none(), mt, rt, wt, tensor_1d(w, 4), 4);
        break;
    case 9:
        group_norm_silu_forward(tensor_3d(y, 2, 3, 8), mt, rt, xt, tensor_none(), tensor_2d(b, 1, 8), wt, bt, 4, 1e-5f);
        break;
    case 10: /* a second part's gradient without the part */
        group_norm_silu_backward(tensor_3d(y, 2, 3, 8), tensor_3d(y, 2, 3, 4), tensor_none(), tensor_none(), xt, xt,
                                 tensor_none(), tensor_none(), mt, rt, wt, bt, 4);
        break;
    case 11: /* two parts, the second one's gradient missing */
        group_norm_silu_backward(tensor_3d(y, 2, 3, 4), tensor_none(), tensor_none(), tensor_none(), xt,
                                 tensor_3d(x, 2, 3, 4), tensor_3d(x, 2, 3, 4), tensor_none(), mt, rt, wt, bt, 4);
        break;
    default: /* a second part of 3 samples next to the first's 2 */
        group_norm_silu_forward(tensor_3d(y, 2, 3, 8), mt, rt, tensor_3d(x, 2, 3, 4), tensor_3d(x, 3, 3, 4),
                                tensor_none(), wt, bt, 4, 1e-5f);
        break;
    }
}

static void test_group_norm_check_failures(void) {
    static const char *expected[] = {
        "out has shape (2, 4, 8), expected (2, 3, 8)", "n_groups 3 does not divide the 8 channels",
        "mean has shape (4, 2), expected (2, 4)",      "weight has shape (4), expected (8)",
        "eps is -1",                                    "inp has shape (8), expected (N, ..., C)",
        "dweight is requested but weight is none",      "dinp has shape (2, 3, 4), expected (2, 3, 8)",
        "group_norm_silu_backward: bias has shape (4), expected (8)",
        "group_norm_silu_forward: shift has shape (1, 8), expected (2, 8)",
        "group_norm_silu_backward: dinp2 is given without inp2",
        "group_norm_silu_backward: one of dinp and dinp2 is none",
        "group_norm_silu_forward: inp2 has shape (3, 3, 4), expected (2, 3, 4)",
    };
    for (int i = 0; i < (int)(sizeof expected / sizeof expected[0]); i++)
        expect_check_failure(expected[i], bad_call, &(BadCall){i}, expected[i]);
}

int main(void) {
    RUN(test_group_norm_matches_pytorch);
    RUN(test_group_norm_gradcheck);
    RUN(test_group_norm_realistic_shapes);
    RUN(test_group_norm_thread_count_independent);
    RUN(test_group_norm_streamed_output);
    RUN(test_group_norm_silu_matches_unfused);
    RUN(test_group_norm_silu_shift);
    RUN(test_group_norm_silu_two_parts);
    RUN(test_group_norm_silu_gradcheck);
    RUN(test_group_norm_robust_to_offset);
    RUN(test_group_norm_constant_group);
    RUN(test_group_norm_check_failures);
    return harness_finish();
}
