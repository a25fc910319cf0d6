/* The linear layer's products on oneDNN matmul primitives (brgemm kernels), for linear.c:
 *   - bf16 precision (ops/precision.h), what torch.autocast(dtype=bfloat16) does to torch.nn.Linear: the
 *     three products take bf16 operands (inp, weight and dout rounded to nearest even on the way in) and
 *     accumulate in fp32 into fp32 results, on AMX tiles (or AVX-512 BF16's dot products); bias and bias
 *     gradient stay fp32 (the bias is the primitive's fp32 bias, the gradient linear.c's column sums). inp
 *     may come in bf16 already, and the forward on it then writes out rounded to bf16 (to nearest even, as
 *     core/half.h does) for a bf16 op to read;
 *   - fp32, the forward of many rows: the kernel adds the bias as it writes each row, where sgemm needs the
 *     bias broadcast into out first and then reads it back.
 *   forward:  out = inp weightᵀ + bias          src inp (M, Fi), weights weightᵀ (Fi, Fo) as strides
 *   backward: dinp += dout weight                src dout (M, Fo), weights weight (Fo, Fi), sum post-op
 *             dweight += doutᵀ inp               src doutᵀ (Fo, M) as strides, weights inp (M, Fi), sum
 * Which shapes take them, and the measurements: linear_bf16_applies, linear.c. Primitives are cached per
 * (product, shape, bias, types, thread count) like conv2d_dnnl.c's, the bf16 copies and oneDNN's scratchpad
 * grow to the largest need seen (no allocation once warmed up). Results are bitwise repeatable for a fixed
 * thread count. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#include <oneapi/dnnl/dnnl.h>

#include "core/alloc.h"
#include "core/half.h"
#include "core/threads.h"
#include "ops/dnnl_runtime.h"
#include "ops/lru_cache.h"
#include "ops/linear_internal.h"
#include "ops/precision.h"

/* The products of a linear layer. */
typedef enum Product { PRODUCT_FORWARD, PRODUCT_DINP, PRODUCT_DWEIGHT } Product;

typedef struct MatmulKey {
    Product product;
    size_t M, Fi, Fo;
    bool bias;
    dnnl_data_type_t operand, result; /* of src and weights; of dst */
    int n_threads; /* oneDNN partitions the work for the thread count it is created with */
} MatmulKey;

typedef struct Matmul {
    MatmulKey key;
    dnnl_primitive_t prim;
    dnnl_memory_t src, wei, bias, dst, scratchpad; /* bound to the operands per call */
} Matmul;

enum { MATMUL_CACHE_CAPACITY = 24 };

/* bf16 copies of the operands (0: rows of inp or dout, 1: the weights, 3: rows of inp beside dout's) and
 * oneDNN's scratchpad (2) */
static GrowBuffer buffers[4];

static const uint16_t *bf16_copy(int i, const float *src, size_t n) {
    uint16_t *dst = grow_buffer(&buffers[i], n * sizeof(uint16_t));
    floats_to_bfloat16(dst, src, n);
    return dst;
}

/* A rows x cols matrix, row-major, or its transpose through strides (element (r, c) at c * rows + r). */
static dnnl_memory_desc_t md_2d(size_t rows, size_t cols, dnnl_data_type_t type, bool transposed) {
    const dnnl_dims_t dims = {(dnnl_dim_t)rows, (dnnl_dim_t)cols};
    const dnnl_dims_t strides = {transposed ? 1 : (dnnl_dim_t)cols, transposed ? (dnnl_dim_t)rows : 1};
    dnnl_memory_desc_t md;
    DNNL_CALL(dnnl_memory_desc_init_by_strides(&md, 2, dims, type, strides));
    return md;
}

static void *matmul_create(const void *key_ptr) {
    const MatmulKey *key = key_ptr;
    const size_t M = key->M, Fi = key->Fi, Fo = key->Fo;
    const dnnl_data_type_t t = key->operand, r = key->result;
    dnnl_memory_desc_t src, wei, dst, bias = md_2d(1, Fo, dnnl_f32, false);
    if (key->product == PRODUCT_FORWARD) {
        src = md_2d(M, Fi, t, false), wei = md_2d(Fi, Fo, t, true), dst = md_2d(M, Fo, r, false);
    } else if (key->product == PRODUCT_DINP) {
        src = md_2d(M, Fo, t, false), wei = md_2d(Fo, Fi, t, false), dst = md_2d(M, Fi, r, false);
    } else {
        src = md_2d(Fo, M, t, true), wei = md_2d(M, Fi, t, false), dst = md_2d(Fo, Fi, r, false);
    }
    dnnl_primitive_attr_t attr = dnnl_runtime_attr(key->product != PRODUCT_FORWARD); /* the backward accumulates */
    dnnl_matmul_desc_t desc;
    DNNL_CALL(dnnl_matmul_desc_init(&desc, &src, &wei, key->bias ? &bias : NULL, &dst));
    dnnl_primitive_desc_t pd;
    DNNL_CALL(dnnl_primitive_desc_create(&pd, &desc, attr, dnnl_runtime_engine(), NULL));
    Matmul *mm = xcalloc(1, sizeof *mm);
    mm->key = *key;
    DNNL_CALL(dnnl_primitive_create(&mm->prim, pd));
    mm->scratchpad = dnnl_runtime_scratchpad(pd, &buffers[2]);
    mm->src = dnnl_runtime_memory(&src), mm->wei = dnnl_runtime_memory(&wei), mm->dst = dnnl_runtime_memory(&dst);
    if (key->bias) mm->bias = dnnl_runtime_memory(&bias);
    DNNL_CALL(dnnl_primitive_desc_destroy(pd));
    DNNL_CALL(dnnl_primitive_attr_destroy(attr));
    return mm;
}

static void matmul_free(void *entry) {
    Matmul *mm = entry;
    DNNL_CALL(dnnl_primitive_destroy(mm->prim));
    dnnl_memory_t all[] = {mm->src, mm->wei, mm->bias, mm->dst, mm->scratchpad};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) dnnl_runtime_memory_free(all[i]);
    free(mm);
}

/* Whether a cached primitive was built for key (lru_cache.h). */
static bool matmul_matches(const void *matmul, const void *key) {
    const MatmulKey *a = &((const Matmul *)matmul)->key, *b = key;
    return a->product == b->product && a->M == b->M && a->Fi == b->Fi && a->Fo == b->Fo && a->bias == b->bias &&
           a->operand == b->operand && a->result == b->result && a->n_threads == b->n_threads;
}

static LruCache matmuls = {
    .capacity = MATMUL_CACHE_CAPACITY, .matches = matmul_matches, .create = matmul_create, .destroy = matmul_free};

static Matmul *matmul_get(const MatmulKey *key) { return lru_cache_get(&matmuls, key); }

static void run(Product product, dnnl_data_type_t operand, dnnl_data_type_t result, LinearShape s, const void *src,
                const void *wei, const float *bias, void *dst) {
    const MatmulKey key = {product, s.M, s.Fi, s.Fo, bias != NULL, operand, result, threads_get()};
    Matmul *mm = matmul_get(&key);
    dnnl_runtime_bind(mm->src, src), dnnl_runtime_bind(mm->wei, wei), dnnl_runtime_bind(mm->bias, bias), dnnl_runtime_bind(mm->dst, dst);
    dnnl_runtime_bind(mm->scratchpad, buffers[2].data);
    dnnl_exec_arg_t args[5] = {{DNNL_ARG_SRC, mm->src}, {DNNL_ARG_WEIGHTS, mm->wei}, {DNNL_ARG_DST, mm->dst},
                               {DNNL_ARG_SCRATCHPAD, mm->scratchpad}, {DNNL_ARG_BIAS, mm->bias}};
    DNNL_CALL(dnnl_primitive_execute(mm->prim, dnnl_runtime_stream(), bias ? 5 : 4, args));
    DNNL_CALL(dnnl_stream_wait(dnnl_runtime_stream()));
}

/* Enough rows, on AMX; and 128 features or more in and out on CPUs with AVX-512 BF16 but no AMX, where the
 * bf16 products run at only twice the fp32 rate. ddpm-cifar10's attention projections at batch 16 (M 4096,
 * 256 -> 256, 2 threads), fp32 sgemm against these products with their rounding copies: on AMX forward
 * 1.72-1.76 against 0.58 ms, backward (with the bias gradient) 4.3-4.4 against 2.2-2.4 ms; the training step
 * 0.83 -> 0.77 s, the sampling step 0.19 -> 0.16 s. On AMD Zen 4 (paired runs of the step, bf16): training
 * -5 %, sampling -11 %; but fashion-mnist's projections of 32 and 64 features at batch 64 made its training
 * step 9 % slower, hence the width. The time embedding's few rows (the batch) stay on sgemm. */
bool linear_bf16_applies(LinearShape s) {
    const bool wide = s.Fi >= 128 && s.Fo >= 128;
    return s.M >= 256 && (ops_amx_supported() ? s.Fi >= 32 && s.Fo >= 32 : ops_bf16_supported() && wide);
}

/* The bf16 products of many rows run on blocks of BF16_BLOCK_ROWS, so that the rounded copies stay small:
 * whole, ddpm-cifar10's at batch 128 (32768 rows of 256) took 32 MB more peak memory. */
#define BF16_BLOCK_ROWS 8192

/* s cut to the rows of the block from row r. */
static LinearShape block_at(LinearShape s, size_t r) {
    s.M = s.M - r < BF16_BLOCK_ROWS ? s.M - r : BF16_BLOCK_ROWS;
    return s;
}

void linear_bf16_forward(LinearShape s, float *out, const float *inp, const float *weight, const float *bias) {
    const uint16_t *w = bf16_copy(1, weight, s.Fo * s.Fi);
    for (size_t r = 0; r < s.M; r += BF16_BLOCK_ROWS) {
        const LinearShape b = block_at(s, r);
        run(PRODUCT_FORWARD, dnnl_bf16, dnnl_f32, b, bf16_copy(0, inp + r * s.Fi, b.M * s.Fi), w, bias,
            out + r * s.Fo);
    }
}

void linear_bf16_forward_bf16_rows(LinearShape s, uint16_t *out, const uint16_t *inp, const float *weight,
                                   const float *bias) {
    run(PRODUCT_FORWARD, dnnl_bf16, dnnl_bf16, s, inp, bf16_copy(1, weight, s.Fo * s.Fi), bias, out);
}

void linear_fp32_forward_dnnl(LinearShape s, float *out, const float *inp, const float *weight, const float *bias) {
    run(PRODUCT_FORWARD, dnnl_f32, dnnl_f32, s, inp, weight, bias, out);
}

void linear_bf16_backward(LinearShape s, float *dinp, float *dweight, const float *dout, const float *inp,
                          const uint16_t *inp_bf16, const float *weight) {
    const uint16_t *w = dinp ? bf16_copy(1, weight, s.Fo * s.Fi) : NULL;
    for (size_t r = 0; r < s.M; r += BF16_BLOCK_ROWS) {
        const LinearShape b = block_at(s, r);
        const uint16_t *g = bf16_copy(0, dout + r * s.Fo, b.M * s.Fo);
        if (dinp) run(PRODUCT_DINP, dnnl_bf16, dnnl_f32, b, g, w, NULL, dinp + r * s.Fi);
        if (dweight) {
            const uint16_t *x = inp_bf16 ? inp_bf16 + r * s.Fi : bf16_copy(3, inp + r * s.Fi, b.M * s.Fi);
            run(PRODUCT_DWEIGHT, dnnl_bf16, dnnl_f32, b, g, x, NULL, dweight);
        }
    }
}

void linear_dnnl_cache_free(void) {
    lru_cache_clear(&matmuls);
    for (int i = 0; i < 4; i++) grow_buffer_free(&buffers[i]);
}
