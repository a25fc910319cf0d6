/* conv2d fast path on oneDNN 2.6 (C API): the same op as conv2d_reference.c,
 *   out[n,y,x,o] = bias[o] + sum_{i,ky,kx} inp[n, y*s+ky-pt, x*s+kx-pl, i] * weight[o,i,ky,kx]
 * with its backward (torch.nn.functional.conv2d); shapes inp (N, H, W, Ci), weight (Co, Ci, kH, kW).
 *
 * Why it is shaped so:
 *   - Activations are described to oneDNN as nhwc over our own buffers: no reorder of inp, out, dout or
 *     dinp. Weights are `any`, which lets oneDNN pick its blocked layout and its fast kernels; plain
 *     oihw weights with nhwc data fall to a reference kernel about 100x slower. So every call moves the
 *     oihw weights into the kernel's layout or the blocked weight gradient back out, with our own loops
 *     where they beat oneDNN's reorder (conv2d_weights.c) and oneDNN's reorder elsewhere.
 *   - oneDNN overwrites its outputs but our backward accumulates (ops.h). The weight gradient is added
 *     into dweight by the same pass that moves it back to oihw (our loops, or a reorder with a `sum`
 *     post-op). At stride 1 with enough positions, backward-data runs as a forward convolution with
 *     a `sum` post-op straight into dinp (plan_try_data_as_forward); otherwise oneDNN's backward-data
 *     writes a scratch buffer that is added to dinp in one pass. The bias gradient (Co floats) is
 *     added from scratch too.
 *   - Inputs with fewer than 16 channels (conv_in) take backward-data as a matmul and a gather, and
 *     outputs with fewer than 16 (conv_out) the forward (plan_create_narrow) and, in fp32 at 3x3 and
 *     stride 1, the weight gradient from our own loops (conv2d_narrow_weights.c): oneDNN's convolution
 *     kernels waste most of each vector there.
 *   - fp32 1x1 convolutions on few channels (both <= 128) take their backward from our narrow kernels
 *     (narrow_gemm.c, pointwise_narrow_fits); their forward comes fused from shortcut_add.c.
 *   - fp32 forward convolutions with 16 outputs or fewer take oneDNN's direct kernels rather than the
 *     brgemm ones it offers first (prefers_direct).
 *   - fp32 3x3 convolutions at stride 1 with enough channels and positions (most of a U-Net's FLOPs) run
 *     as Winograd F(4x4, 3x3), about twice as fast, on channel-blocked copies of the activations
 *     (winograd_fits), a few images per call in large batches (images_per_call).
 *   - Primitives, memory objects and descriptors are built once per (kind, shape, params, bias,
 *     thread count) and kept in a small cache; the buffers they work in (blocked weights, oneDNN's
 *     scratchpad in user mode, the input-gradient scratch) are shared by all plans and only grow, so a
 *     warmed-up call allocates no buffer. (dnnl_primitive_execute itself still makes 4-7 small heap
 *     allocations per execution for its argument map, measured with an interposed malloc; oneDNN 2.6's
 *     C API offers no way around that.) oneDNN sizes its work partition by the thread count when a
 *     primitive is created, hence the count in the key.
 *   - Calls come from one thread at a time (ops.h), so the cache and buffers need no lock.
 *   - In bf16 precision on CPUs with AVX-512 BF16 but no AMX, wide 3x3 convolutions at stride 1 leave
 *     oneDNN for our own bf16 Winograd (conv2d_winograd_bf16.c), and their bias gradient is summed here.
 *     In fp32 on cores that split 512-bit FMAs, 3x3 convolutions up to 256x256 channels take our own fp32
 *     Winograd (conv2d_winograd_fp32.c) for all three passes.
 *   - In bf16 precision (ops/precision.h) the two operands of each pass are bf16 and the result fp32:
 *     the activation operand (forward and backward-weights: inp; backward-data and backward-weights:
 *     dout) is rounded into a bf16 copy in the workspace, and the weights reach the kernel's layout
 *     through oneDNN's reorder, which rounds as it moves. The weight gradient comes back in fp32, so our
 *     own weight moves still add it. Backward-data as forward runs in bf16 too (its flipped weights
 *     through oneDNN's reorder); the other special plans stay fp32-only: bf16 plans take the general
 *     one, except the narrow backward-data of conv_in's few input channels and the narrow forward, which
 *     stay fp32 (a bf16 plan of a narrow output takes oneDNN's convolution).
 * Results are bitwise repeatable for a fixed thread count; oneDNN's backward-weights reduction order
 * depends on the thread count, so dweight and dbias may differ in the last bits between counts. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <oneapi/dnnl/dnnl.h>
#include <oneapi/dnnl/dnnl_debug.h>

#include "core/alloc.h"
#include "core/check.h"
#include "core/cpu.h"
#include "core/half.h"
#include "core/threads.h"
#include "ops/conv2d_internal.h"
#include "ops/conv2d_weights.h"
#include "ops/dnnl_runtime.h"
#include "ops/lru_cache.h"
#include "ops/narrow_gemm.h"
#include "ops/precision.h"

typedef enum PlanKind { PLAN_FORWARD, PLAN_BACKWARD_DATA, PLAN_BACKWARD_WEIGHTS } PlanKind;

static const char *plan_kind_name(PlanKind kind) {
    return kind == PLAN_FORWARD ? "forward" : kind == PLAN_BACKWARD_DATA ? "backward-data" : "backward-weights";
}

typedef struct PlanKey {
    PlanKind kind;
    Conv2dShape s;
    Conv2dParams p;
    bool with_bias; /* forward: bias added; backward-weights: dbias computed */
    bool bf16;      /* bf16 operands, fp32 results */
    int n_threads;
} PlanKey;

/* An activation moved between our nhwc layout and a kernel's by a oneDNN reorder (see Plan). */
typedef struct Relayout {
    dnnl_primitive_t reorder;
    dnnl_memory_t from, to, scratchpad;
} Relayout;

/* One convolution primitive and everything it runs with. Memory objects carry no buffer of their own:
 * each call points them at the caller's tensors and the shared workspace. */
typedef struct Plan {
    PlanKey key;
    dnnl_primitive_desc_t hint_pd; /* backward plans: the forward descriptor oneDNN requires as a hint */
    dnnl_primitive_t conv;
    /* How weights reach the kernel's layout (forward, backward-data) or the weight gradient comes back
     * from it and is added into dweight (backward-weights): our own loops when they handle the layout
     * (own_layout.ok), else a oneDNN reorder (with a sum post-op for the gradient); neither when
     * oneDNN chose oihw itself for forward or backward-data. */
    WeightLayout own_layout;
    dnnl_primitive_t reorder;
    /* Backward-data run as the forward convolution of dout with the channel-transposed, spatially
     * flipped weights, adding into dinp through a sum post-op (see plan_try_data_as_forward); conv_set
     * is the same convolution without the sum, for a dinp marked for overwriting (NULL if oneDNN
     * offered it another kernel), with its own scratchpad. */
    bool data_as_forward;
    dnnl_primitive_t conv_set;
    dnnl_memory_t scratchpad_set;
    /* Backward-data of a narrow input, or the forward of a narrow output, as a matmul and a gather,
     * this many images per matmul (0: not such a plan; see plan_create_narrow). */
    size_t narrow_images;
    /* Plans whose kernel wants the activations in another layout than our nhwc (a forward on few
     * positions: nchw, FORWARD_NCHW_MAX_POSITIONS; Winograd plans: nChw16c, WINOGRAD_MIN_POSITIONS) work on
     * copies in the workspace: src_copy moves inp there (forward, backward-weights), dout_copy moves
     * dout (backward plans), result_copy moves the result back (forward: out; backward-data: added into
     * dinp). Unused copies have no reorder. */
    Relayout src_copy, dout_copy, result_copy;
    Relayout result_set; /* backward-data: result_copy writing dinp instead of adding (dinp marked for it) */
    dnnl_memory_t act_in, act_out;   /* forward: src, dst; backward-data: diff_dst, diff_src;
                                        backward-weights: src, diff_dst */
    dnnl_memory_t wei_user, wei;     /* weights (or their gradient) as oihw, and in the kernel's layout */
    dnnl_memory_t bias;              /* bias (forward) or diff_bias (backward-weights); NULL without */
    dnnl_memory_t scratchpad, reorder_scratchpad;
} Plan;

/* Every plan of a training step and a sampling step stays cached: they use 93 plans at fashion-mnist, 72 at
 * ddpm-cifar10 (batch 1, test_unet) and about 110 at the default preset. With room for 64, every step
 * rebuilt 64-89 of them, since a cycle longer than the cache evicts each plan just before its next use:
 * 1-2 % of a fashion-mnist training step. */
enum { PLAN_CACHE_CAPACITY = 256 };

/* Buffers shared by every plan; each grows to the largest need seen and is never shrunk. */
typedef struct Workspace {
    GrowBuffer wei, dwei, scratchpad, dinp, dbias, cols, inp_bf16, dout_bf16, flipped, src_copy, dout_copy, result_copy,
        grad_sums, bias_partials;
} Workspace;

/* Held weights (conv2d_hold_weights): a forward plan's weights in its kernel's layout (bf16 plans: rounded),
 * by the address of the oihw tensor they came from and that layout. */
typedef struct HeldWeights {
    const float *weight;
    dnnl_memory_desc_t layout;
    void *data;
} HeldWeights;

static Workspace ws;
static bool own_weight_moves = true;
static bool hold_weights;
static bool use_winograd = true;
static size_t winograd_call_bytes; /* 0: WINOGRAD_CALL_BYTES */
static HeldWeights *held;
static size_t n_held, held_capacity, held_bytes;
/* fp32 forward weights are held too while all held copies stay within this many bytes (conv2d.h):
 * fashion-mnist's all, the first layers of the larger presets. */
#define HOLD_FP32_MAX_BYTES ((size_t)64 << 20)

/* ------------------------------------------------------------------------------------------------ */
/* Plans */

/* Whether a cached plan was built for key (lru_cache.h). */
static bool plan_matches(const void *plan, const void *key) {
    const PlanKey *a = &((const Plan *)plan)->key, *b = key;
    const Conv2dShape *x = &a->s, *y = &b->s;
    return a->kind == b->kind && a->with_bias == b->with_bias && a->bf16 == b->bf16 && a->n_threads == b->n_threads &&
           a->p.stride == b->p.stride && a->p.pad_top == b->p.pad_top && a->p.pad_bottom == b->p.pad_bottom &&
           a->p.pad_left == b->p.pad_left && a->p.pad_right == b->p.pad_right && x->n == y->n && x->h == y->h &&
           x->w == y->w && x->ci == y->ci && x->co == y->co && x->kh == y->kh && x->kw == y->kw;
}

static dnnl_memory_desc_t md_typed(int ndims, const dnnl_dims_t dims, dnnl_data_type_t type, dnnl_format_tag_t tag) {
    dnnl_memory_desc_t md;
    DNNL_CALL(dnnl_memory_desc_init_by_tag(&md, ndims, dims, type, tag));
    return md;
}

static dnnl_memory_desc_t md_of(int ndims, const dnnl_dims_t dims, dnnl_format_tag_t tag) {
    return md_typed(ndims, dims, dnnl_f32, tag);
}

/* A primitive descriptor, with a message naming the convolution when oneDNN cannot build one. */
static dnnl_primitive_desc_t pd_create(const PlanKey *key, const_dnnl_op_desc_t desc, const_dnnl_primitive_attr_t attr,
                                       const_dnnl_primitive_desc_t hint) {
    dnnl_primitive_desc_t pd;
    dnnl_status_t status = dnnl_primitive_desc_create(&pd, desc, attr, dnnl_runtime_engine(), hint);
    const Conv2dShape *s = &key->s;
    CHECK(status == dnnl_success,
          "oneDNN call dnnl_primitive_desc_create failed with status %s for conv2d %s: inp (%zu, %zu, %zu, %zu), "
          "weight (%zu, %zu, %zu, %zu), stride %d, padding (top %d, bottom %d, left %d, right %d)",
          dnnl_status2str(status), plan_kind_name(key->kind), s->n, s->h, s->w, s->ci, s->co, s->ci, s->kh, s->kw,
          key->p.stride, key->p.pad_top, key->p.pad_bottom, key->p.pad_left, key->p.pad_right);
    return pd;
}

/* fp32 forward convolutions with 16 output channels or fewer: oneDNN 2.6 offers its brgemm kernels first,
 * but its older direct kernels (jit:avx512_core) run these shapes faster. Measured per call inside
 * fashion-mnist's sampling step (ONEDNN_VERBOSE=1, means of 11-44 calls, 2 threads), brgemm against direct:
 * 64x28x28 16->16 0.93 / 0.72 ms, 32->16 1.45 / 1.34, 48->16 2.24 / 2.12, stride 2 16->16 0.234 / 0.205.
 * With 32 outputs the direct kernels ran faster alone (64x14x14 32->32 0.78 / 0.63 ms, warm data) but not
 * in the step (0.68 / 0.69, 96->32 1.82-1.99 / 1.93-2.22); from 64 outputs up brgemm wins or ties
 * (64x7x7 128->64 1.10 / 1.18 alone), with one input channel the direct kernel is 24x slower (64x28x28
 * 1->16), and 1x1 kernels have brgemm kernels of their own. Forward plans only: backward-data as forward
 * adds into dinp through a sum post-op, which the direct kernels apply before their last input channel
 * block (see plan_try_data_as_forward). */
enum { DIRECT_MAX_CO = 16, DIRECT_MIN_CI = 16 };

static bool prefers_direct(const PlanKey *key) {
    return key->kind == PLAN_FORWARD && !key->bf16 && key->s.kh * key->s.kw > 1 && key->s.co <= DIRECT_MAX_CO &&
           key->s.ci >= DIRECT_MIN_CI;
}

/* The descriptor of the implementation named `impl` if oneDNN offers it for desc, else of its first one. */
static dnnl_primitive_desc_t pd_create_preferring(const PlanKey *key, const_dnnl_op_desc_t desc,
                                                  const_dnnl_primitive_attr_t attr, const char *impl) {
    dnnl_primitive_desc_iterator_t it;
    if (dnnl_primitive_desc_iterator_create(&it, desc, attr, dnnl_runtime_engine(), NULL) == dnnl_success) {
        do {
            dnnl_primitive_desc_t pd = dnnl_primitive_desc_iterator_fetch(it);
            const char *name = "";
            DNNL_CALL(dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &name));
            if (strcmp(name, impl) == 0) {
                DNNL_CALL(dnnl_primitive_desc_iterator_destroy(it));
                return pd;
            }
            DNNL_CALL(dnnl_primitive_desc_destroy(pd));
        } while (dnnl_primitive_desc_iterator_next(it) == dnnl_success);
        DNNL_CALL(dnnl_primitive_desc_iterator_destroy(it));
    }
    return pd_create(key, desc, attr, NULL);
}

/* A oneDNN reorder from layout `from` to layout `to` (accumulate: added to what `to` holds), and the
 * memory object of its scratchpad. */
static dnnl_primitive_t reorder_create(const dnnl_memory_desc_t *from, const dnnl_memory_desc_t *to, bool accumulate,
                                       dnnl_memory_t *scratchpad) {
    dnnl_primitive_attr_t attr = dnnl_runtime_attr(accumulate);
    dnnl_primitive_desc_t pd;
    DNNL_CALL(dnnl_reorder_primitive_desc_create(&pd, from, dnnl_runtime_engine(), to, dnnl_runtime_engine(), attr));
    dnnl_primitive_t reorder;
    DNNL_CALL(dnnl_primitive_create(&reorder, pd));
    *scratchpad = dnnl_runtime_scratchpad(pd, &ws.scratchpad);
    DNNL_CALL(dnnl_primitive_desc_destroy(pd));
    DNNL_CALL(dnnl_primitive_attr_destroy(attr));
    return reorder;
}

/* How weights move between the user's oihw and the kernel's layout (see Plan); nothing to do when
 * they are equal, except for the gradient, which must still be added rather than written. */
static void plan_reorder(Plan *plan, const dnnl_memory_desc_t *user_md, const dnnl_memory_desc_t *kernel_md,
                         bool to_user_with_sum) {
    if (!to_user_with_sum && dnnl_memory_desc_equal(user_md, kernel_md)) return;
    plan->wei = dnnl_runtime_memory(kernel_md);
    if (to_user_with_sum) grow_buffer(&ws.dwei, dnnl_memory_desc_get_size(kernel_md));
    else grow_buffer(&ws.wei, dnnl_memory_desc_get_size(kernel_md));
    if (own_weight_moves) plan->own_layout = weight_layout_of(kernel_md);
    if (plan->own_layout.ok) return;
    const dnnl_memory_desc_t *from = to_user_with_sum ? kernel_md : user_md, *to = to_user_with_sum ? user_md : kernel_md;
    plan->reorder = reorder_create(from, to, to_user_with_sum, &plan->reorder_scratchpad);
}

/* Inputs narrower than one of oneDNN's 16-channel blocks (conv_in's RGB): its backward-data kernels
 * waste most of each vector there (13 GFLOP/s at 1 thread for 3->224 at 64x64, below PyTorch's 19).
 * Instead, a matmul and a gather per group of images (~70 GFLOP/s end to end at 1 thread there):
 *   cols[p, k, i] = sum_o dout[p, o] * weight[o, i, k]          (P x Co) (Co x kH kW Ci)
 *   dinp[n, iy, ix, i] += sum, over the taps k (in order) through which an output position p reads
 *                         (iy, ix), of cols[p, k, i]
 * Narrow outputs (conv_out's RGB or greyscale) take the forward the same way, which oneDNN's kernels
 * vectorise over output channels: fp32 16 -> 1 at 64x28x28 0.9 ms, as a matmul and gather 0.2 ms:
 *   cols[q, k, o] = sum_i inp[q, i] * weight[o, i, k]            (Q x Ci) (Ci x kH kW Co), Q inputs
 *   out[n, oy, ox, o] = bias[o] + sum, over the taps k (in order), of cols[input read by tap k, k, o]
 * cols holds kH kW copies of the result, so images go in equal groups (a divisor of N) of at most
 * NARROW_COLS_BYTES of it where they can (a single image may exceed that). The gather sums each
 * element in a fixed order into a local row first, so repeated calls add identical values. The forward's
 * outputs whose taps all lie inside the image take the same sums vectorised across a row
 * (narrow_forward_inside): in fashion-mnist's sampling step its gather fell from 1.5 % to 0.4 % of the
 * step's samples (perf). */
enum { NARROW_CI = 16, NARROW_CO = CONV2D_NARROW_CO };
#define NARROW_COLS_BYTES ((size_t)32 << 20)

static bool plan_is_narrow(const PlanKey *key) {
    if (key->kind == PLAN_BACKWARD_DATA) return key->s.ci < NARROW_CI;
    return key->kind == PLAN_FORWARD && key->s.co < NARROW_CO && !key->bf16;
}

static Plan *plan_create_narrow(const PlanKey *key) {
    const Conv2dShape *s = &key->s;
    const bool forward = key->kind == PLAN_FORWARD;
    const size_t taps = s->kh * s->kw, n_cols = taps * (forward ? s->co : s->ci);
    const size_t image_pos = forward ? s->h * s->w : s->ho * s->wo, k_dim = forward ? s->ci : s->co;
    size_t group = 1;
    for (size_t g = 1; g <= s->n; g++)
        if (s->n % g == 0 && g * image_pos * n_cols * sizeof(float) <= NARROW_COLS_BYTES) group = g;
    const size_t m = group * image_pos;
    const dnnl_dims_t src_dims = {(dnnl_dim_t)m, (dnnl_dim_t)k_dim}, wei_dims = {(dnnl_dim_t)k_dim, (dnnl_dim_t)n_cols};
    const dnnl_dims_t dst_dims = {(dnnl_dim_t)m, (dnnl_dim_t)n_cols};
    dnnl_memory_desc_t src_md = md_of(2, src_dims, dnnl_ab), wei_md = md_of(2, wei_dims, dnnl_ab);
    dnnl_memory_desc_t dst_md = md_of(2, dst_dims, dnnl_ab);
    dnnl_matmul_desc_t desc;
    DNNL_CALL(dnnl_matmul_desc_init(&desc, &src_md, &wei_md, NULL, &dst_md));
    dnnl_primitive_attr_t attr = dnnl_runtime_attr(false);
    dnnl_primitive_desc_t pd = pd_create(key, &desc, attr, NULL);
    Plan *plan = xcalloc(1, sizeof *plan);
    plan->key = *key;
    plan->narrow_images = group;
    DNNL_CALL(dnnl_primitive_create(&plan->conv, pd));
    plan->scratchpad = dnnl_runtime_scratchpad(pd, &ws.scratchpad);
    plan->act_in = dnnl_runtime_memory(&src_md);
    plan->wei_user = dnnl_runtime_memory(&wei_md);
    plan->act_out = dnnl_runtime_memory(&dst_md);
    grow_buffer(&ws.cols, (k_dim + m) * n_cols * sizeof(float));
    DNNL_CALL(dnnl_primitive_desc_destroy(pd));
    DNNL_CALL(dnnl_primitive_attr_destroy(attr));
    return plan;
}

/* At stride 1, backward-data is itself a forward convolution:
 *   dinp[n, y, x, i] = sum_{o, ky', kx'} dout[n, y + ky' - pt', x + kx' - pl', o] * weight'[i, o, ky', kx']
 * with weight'[i, o, ky', kx'] = weight[o, i, kH-1-ky', kW-1-kx'] and padding pt' = kH-1-pad_top (likewise
 * the other sides). oneDNN 2.6 runs forward with its brgemm kernels, faster than its backward-data
 * kernels (measured ~10 % at 1 thread on the U-Net's 3x3 shapes), and a forward convolution accepts a
 * sum post-op, so the result lands in dinp accumulated, with no scratch buffer and no extra pass.
 * Our own weight loops build weight' in the kernel's layout in one pass, but that pass is slower than
 * oneDNN's reorder for its backward-data layout (~6.4 vs ~3.1 ms for 896x896x3x3 at 1 thread), which
 * outweighs the faster kernel when there are few output positions per weight: at 8x8, N 2 (128
 * positions) this path measured 0.85x, at 32x32 and 64x64 1.12-1.15x. The break-even estimate is
 * ~250 positions; below DATA_AS_FORWARD_MIN_POSITIONS the backward-data primitive is used. Also
 * returns NULL (the caller builds that primitive) at stride 2, when a padding exceeds kernel - 1,
 * when our loops do not handle the layout oneDNN picks, or when its kernel is not a brgemm one: those
 * add the sum to the finished result, while the older jit kernels (all an AVX2 CPU has) add dinp in
 * partway through their input-channel loop, so a second backward would not add exactly the same
 * values (seen with ONEDNN_MAX_CPU_ISA=AVX2).
 * In bf16, the flipped weights are written plain in fp32 (weight_flip) and oneDNN's reorder rounds them
 * into the kernel's layout; its AMX forward kernels beat its backward-data ones by more than in fp32
 * (ddpm-cifar10 at batch 16: 3x3 128 channels at 32x32 1.86 against 2.40 ms, 1x1 256 -> 128 1.20
 * against 2.72 ms), and the sum post-op saves the pass that adds the scratch result into dinp. */
enum { DATA_AS_FORWARD_MIN_POSITIONS = 512 };

/* The primitive descriptor of backward-data as forward, adding into dinp (sum post-op) or writing it;
 * NULL where oneDNN has none. */
static dnnl_primitive_desc_t data_as_forward_pd(const dnnl_convolution_desc_t *desc, bool accumulate) {
    dnnl_primitive_attr_t attr = dnnl_runtime_attr(accumulate);
    dnnl_primitive_desc_t pd;
    dnnl_status_t status = dnnl_primitive_desc_create(&pd, desc, attr, dnnl_runtime_engine(), NULL);
    DNNL_CALL(dnnl_primitive_attr_destroy(attr));
    return status == dnnl_success ? pd : NULL;
}

static Plan *plan_try_data_as_forward(const PlanKey *key) {
    const Conv2dShape *s = &key->s;
    const Conv2dParams *p = &key->p;
    const int kh = (int)s->kh, kw = (int)s->kw;
    const dnnl_dims_t pad_lo = {kh - 1 - p->pad_top, kw - 1 - p->pad_left};
    const dnnl_dims_t pad_hi = {kh - 1 - p->pad_bottom, kw - 1 - p->pad_right};
    if (p->stride != 1 || (!own_weight_moves && !key->bf16) || s->n * s->ho * s->wo < DATA_AS_FORWARD_MIN_POSITIONS)
        return NULL;
    if (pad_lo[0] < 0 || pad_lo[1] < 0 || pad_hi[0] < 0 || pad_hi[1] < 0) return NULL;
    const dnnl_dims_t dout_dims = {(dnnl_dim_t)s->n, (dnnl_dim_t)s->co, (dnnl_dim_t)s->ho, (dnnl_dim_t)s->wo};
    const dnnl_dims_t dinp_dims = {(dnnl_dim_t)s->n, (dnnl_dim_t)s->ci, (dnnl_dim_t)s->h, (dnnl_dim_t)s->w};
    const dnnl_dims_t wei_dims = {(dnnl_dim_t)s->ci, (dnnl_dim_t)s->co, (dnnl_dim_t)s->kh, (dnnl_dim_t)s->kw};
    const dnnl_dims_t strides = {1, 1};
    const dnnl_data_type_t operand = key->bf16 ? dnnl_bf16 : dnnl_f32;
    dnnl_memory_desc_t dout_md = md_typed(4, dout_dims, operand, dnnl_nhwc), dinp_md = md_of(4, dinp_dims, dnnl_nhwc);
    dnnl_memory_desc_t wei_any = md_typed(4, wei_dims, operand, dnnl_format_tag_any);

    dnnl_convolution_desc_t desc;
    DNNL_CALL(dnnl_convolution_forward_desc_init(&desc, dnnl_forward_inference, dnnl_convolution_direct, &dout_md,
                                                 &wei_any, NULL, &dinp_md, strides, pad_lo, pad_hi));
    dnnl_primitive_desc_t pd = data_as_forward_pd(&desc, true);
    if (!pd) return NULL;
    const char *impl = "";
    DNNL_CALL(dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl));
    const dnnl_memory_desc_t *kernel_wei = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
    WeightLayout layout = weight_layout_of(kernel_wei);
    if ((!layout.ok && !key->bf16) || strncmp(impl, "brg", 3) != 0) {
        DNNL_CALL(dnnl_primitive_desc_destroy(pd));
        return NULL;
    }
    Plan *plan = xcalloc(1, sizeof *plan);
    plan->key = *key;
    plan->data_as_forward = true;
    DNNL_CALL(dnnl_primitive_create(&plan->conv, pd));
    plan->scratchpad = dnnl_runtime_scratchpad(pd, &ws.scratchpad);
    /* The writing twin must take the weights in the same layout, as the call moves them once for both. */
    dnnl_primitive_desc_t pd_set = data_as_forward_pd(&desc, false);
    if (pd_set && dnnl_memory_desc_equal(dnnl_primitive_desc_query_md(pd_set, dnnl_query_weights_md, 0), kernel_wei)) {
        DNNL_CALL(dnnl_primitive_create(&plan->conv_set, pd_set));
        plan->scratchpad_set = dnnl_runtime_scratchpad(pd_set, &ws.scratchpad);
    }
    if (pd_set) DNNL_CALL(dnnl_primitive_desc_destroy(pd_set));
    plan->act_in = dnnl_runtime_memory(&dout_md);
    plan->act_out = dnnl_runtime_memory(&dinp_md);
    if (key->bf16) {
        const dnnl_memory_desc_t flipped_md = md_of(4, wei_dims, dnnl_oihw);
        plan->wei_user = dnnl_runtime_memory(&flipped_md);
        grow_buffer(&ws.flipped, dnnl_memory_desc_get_size(&flipped_md));
        plan_reorder(plan, &flipped_md, kernel_wei, false);
    } else {
        plan->own_layout = layout;
        plan->wei = dnnl_runtime_memory(kernel_wei);
        grow_buffer(&ws.wei, dnnl_memory_desc_get_size(kernel_wei));
    }
    DNNL_CALL(dnnl_primitive_desc_destroy(pd));
    return plan;
}

/* Forward on few output positions (the deepest levels of a U-Net at small batch): oneDNN's channels-last
 * kernels want the weights in a blocked layout, and moving a 3x3 896x896 weight there (29 MB) costs ~22 %
 * of the call at 8x8, N 2. Its channels-first gemm kernel takes PyTorch's oihw weights as they are; the
 * activations go through channels-first copies instead, which at this size are small (0.5 MB).
 * Measured at 3x3 896->896, 1 / 2 threads (GFLOP/s, channels-last vs channels-first): 128 positions
 * 86 vs 99 / 178 vs 194; 256 positions 99 vs 99 / 201 vs 195; 512 (16x16, 672 ch) 111 vs 104. */
enum { FORWARD_NCHW_MAX_POSITIONS = 192 };

/* fp32 3x3 convolutions at stride 1 and padding 1 (most of a U-Net's FLOPs) run as Winograd F(4x4, 3x3)
 * (Lavin and Gray 2016; oneDNN's jit_wino_4x3 kernels): 36 multiplies per 4x4 output tile and input
 * channel where direct convolution takes 144. Its forward and backward-data ran 2.0-2.5x faster than
 * oneDNN's direct kernels at ddpm-cifar10 and default shapes with many positions, backward-weights
 * 1.9-2.2x; the copies to and from its channel-blocked layout (nChw16c) cost 10-20 % of that. The
 * weights are transformed on every call, which costs ~36 Ci Co floats of traffic whatever the batch,
 * so with few positions the direct kernels win (4x8x8, 896 channels: 0.65x; 16x8x8, 256: 0.99-1.2x).
 * Per-tile transforms cost ~(Ci + Co) against Ci Co multiplies, so narrow layers gain nothing either
 * (fashion-mnist's 64x14x14 64->32: 0.88-1.01x, 32->32: 0.82x; 64->64: 1.12-1.20x), nor do 7x7 images
 * (tiles of 4 cover 8x8: 0.92-1.0x). Channel counts must fill its 16-channel blocks. The results differ
 * from direct convolution by ~1e-6 relative (measured; the transforms' rounding), well inside the
 * fp32 tolerance of the fast-vs-reference tests.
 * Those measurements were on cores with full 512-bit FMA units. Cores that split each into two halves
 * (cpu_splits_fma512: AMD Zen 4) run the direct kernels at half the rate and the transforms at the same,
 * so there narrower layers and 7x7 images gain too (WINOGRAD_SPLIT_FMA_*). fashion-mnist's shapes at
 * batch 64, 2 threads, Winograd / direct ms (forward, backward-data, backward-weights): 7x7 64->64
 * 0.71 / 0.91, 0.70 / 0.95, 0.90 / 1.15; 7x7 128->64 1.44 / 1.80, 1.37 / 1.84, 1.51 / 3.10; 14x14 96->32
 * 3.08 / 3.21, 2.48 / 3.21, 2.82 / 4.23; 14x14 32->32 1.03 / 1.02, 1.07 / 1.06, 0.87 / 1.12; but 16
 * input channels lose (28x28 16->16 forward 1.41 / 0.96, 14x14 16->32 0.90 / 0.50). fashion-mnist b64 on
 * Zen 4 with this rule: training step -9 %, sampling step -5 % (medians of 9 and 11 paired runs). */
enum { WINOGRAD_MIN_POSITIONS = 1024, WINOGRAD_MIN_SIDE = 8, WINOGRAD_MIN_CHANNELS = 64, WINOGRAD_CHANNEL_BLOCK = 16 };
enum { WINOGRAD_SPLIT_FMA_MIN_SIDE = 7, WINOGRAD_SPLIT_FMA_MIN_CHANNELS = 32 };
static int winograd_split_fma = -1; /* the rule for cores that split 512-bit FMAs: -1 if this CPU does */

static Plan *plan_create_conv(const PlanKey *key, bool winograd);
static void plan_free(void *plan);

/* Whether oneDNN has Winograd kernels on this CPU (AVX-512), asked once with a probe plan. */
static bool winograd_available(void) {
    static int available = -1;
    if (available < 0) {
        const PlanKey probe = {.kind = PLAN_FORWARD,
                               .s = {.n = 1, .h = 32, .w = 32, .ci = 64, .co = 64, .kh = 3, .kw = 3,
                                     .ho = 32, .wo = 32},
                               .p = {.stride = 1, .pad_top = 1, .pad_bottom = 1, .pad_left = 1, .pad_right = 1},
                               .n_threads = threads_get()};
        Plan *plan = plan_create_conv(&probe, true);
        available = plan != NULL;
        plan_free(plan);
    }
    return available;
}

bool conv2d_fast_has_winograd(void) { return winograd_available(); }

static bool winograd_fits(const PlanKey *key) {
    const Conv2dShape *s = &key->s;
    const Conv2dParams *p = &key->p;
    if (winograd_split_fma < 0) winograd_split_fma = cpu_splits_fma512();
    const size_t min_channels = winograd_split_fma ? WINOGRAD_SPLIT_FMA_MIN_CHANNELS : WINOGRAD_MIN_CHANNELS;
    const size_t min_side = winograd_split_fma ? WINOGRAD_SPLIT_FMA_MIN_SIDE : WINOGRAD_MIN_SIDE;
    const bool pad1 = p->pad_top == 1 && p->pad_bottom == 1 && p->pad_left == 1 && p->pad_right == 1;
    const bool channels = s->ci >= min_channels && s->co >= min_channels && s->ci % WINOGRAD_CHANNEL_BLOCK == 0 &&
                          s->co % WINOGRAD_CHANNEL_BLOCK == 0;
    const bool positions = s->ho >= min_side && s->wo >= min_side && s->n * s->ho * s->wo >= WINOGRAD_MIN_POSITIONS;
    return use_winograd && !key->bf16 && s->kh == 3 && s->kw == 3 && p->stride == 1 && pad1 && channels && positions &&
           winograd_available();
}

/* A copy of an activation from layout `from` to layout `to` (accumulate: added to what `to` holds). */
static Relayout relayout_create(const dnnl_memory_desc_t *from, const dnnl_memory_desc_t *to, bool accumulate) {
    Relayout r = {.from = dnnl_runtime_memory(from), .to = dnnl_runtime_memory(to)};
    r.reorder = reorder_create(from, to, accumulate, &r.scratchpad);
    return r;
}

/* The plan for key with oneDNN's convolution primitives: direct, or Winograd (see winograd_fits), which
 * returns NULL where oneDNN offers no Winograd kernel for the shape. */
static Plan *plan_create_conv(const PlanKey *key, bool winograd) {
    const Conv2dShape *s = &key->s;
    const Conv2dParams *p = &key->p;
    const dnnl_dims_t src_dims = {(dnnl_dim_t)s->n, (dnnl_dim_t)s->ci, (dnnl_dim_t)s->h, (dnnl_dim_t)s->w};
    const dnnl_dims_t dst_dims = {(dnnl_dim_t)s->n, (dnnl_dim_t)s->co, (dnnl_dim_t)s->ho, (dnnl_dim_t)s->wo};
    const dnnl_dims_t wei_dims = {(dnnl_dim_t)s->co, (dnnl_dim_t)s->ci, (dnnl_dim_t)s->kh, (dnnl_dim_t)s->kw};
    const dnnl_dims_t bias_dims = {(dnnl_dim_t)s->co};
    const dnnl_dims_t strides = {p->stride, p->stride};
    const dnnl_dims_t pad_lo = {p->pad_top, p->pad_left}, pad_hi = {p->pad_bottom, p->pad_right};
    const bool nchw = !winograd && key->kind == PLAN_FORWARD && !key->bf16 &&
                      s->n * s->ho * s->wo <= FORWARD_NCHW_MAX_POSITIONS;
    const dnnl_format_tag_t act_tag = winograd ? dnnl_nChw16c : nchw ? dnnl_nchw : dnnl_nhwc;
    const dnnl_alg_kind_t algorithm = winograd ? dnnl_convolution_winograd : dnnl_convolution_direct;
    /* The operands' type; results (dst, diff_src, diff_weights, bias and its gradient) are always fp32. The
     * forward descriptor has bf16 dst when it only serves as a backward plan's hint. */
    const dnnl_data_type_t operand = key->bf16 ? dnnl_bf16 : dnnl_f32;
    dnnl_memory_desc_t src_md = md_typed(4, src_dims, operand, act_tag);
    dnnl_memory_desc_t dst_md = md_typed(4, dst_dims, key->kind == PLAN_FORWARD ? dnnl_f32 : operand, act_tag);
    dnnl_memory_desc_t wei_any = md_typed(4, wei_dims, operand, nchw ? dnnl_oihw : dnnl_format_tag_any);
    dnnl_memory_desc_t wei_user = md_of(4, wei_dims, dnnl_oihw);
    dnnl_memory_desc_t bias_md = md_of(1, bias_dims, dnnl_a);
    const dnnl_memory_desc_t *bias_or_null = key->with_bias ? &bias_md : NULL;

    dnnl_primitive_attr_t attr = dnnl_runtime_attr(false);
    dnnl_convolution_desc_t fwd_desc, desc;
    DNNL_CALL(dnnl_convolution_forward_desc_init(&fwd_desc, dnnl_forward_training, algorithm, &src_md, &wei_any,
                                                 bias_or_null, &dst_md, strides, pad_lo, pad_hi));
    if (key->kind == PLAN_BACKWARD_DATA) {
        src_md = md_of(4, src_dims, act_tag); /* diff_src */
        DNNL_CALL(dnnl_convolution_backward_data_desc_init(&desc, algorithm, &src_md, &wei_any, &dst_md, strides,
                                                           pad_lo, pad_hi));
    } else if (key->kind == PLAN_BACKWARD_WEIGHTS) {
        dnnl_memory_desc_t dwei_any = md_of(4, wei_dims, dnnl_format_tag_any);
        DNNL_CALL(dnnl_convolution_backward_weights_desc_init(&desc, algorithm, &src_md, &dwei_any, bias_or_null,
                                                              &dst_md, strides, pad_lo, pad_hi));
    }
    dnnl_primitive_desc_t hint_pd = NULL, pd = NULL;
    if (winograd) {
        dnnl_status_t status = dnnl_primitive_desc_create(key->kind == PLAN_FORWARD ? &pd : &hint_pd, &fwd_desc,
                                                          key->kind == PLAN_FORWARD ? attr : NULL,
                                                          dnnl_runtime_engine(), NULL);
        if (status == dnnl_success && key->kind != PLAN_FORWARD)
            status = dnnl_primitive_desc_create(&pd, &desc, attr, dnnl_runtime_engine(), hint_pd);
        const char *impl = "";
        if (status == dnnl_success) DNNL_CALL(dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl));
        if (status != dnnl_success || !strstr(impl, "wino")) {
            if (status == dnnl_success) DNNL_CALL(dnnl_primitive_desc_destroy(pd));
            if (hint_pd) DNNL_CALL(dnnl_primitive_desc_destroy(hint_pd));
            DNNL_CALL(dnnl_primitive_attr_destroy(attr));
            return NULL;
        }
    } else if (key->kind == PLAN_FORWARD) {
        pd = prefers_direct(key) ? pd_create_preferring(key, &fwd_desc, attr, "jit:avx512_core")
                                 : pd_create(key, &fwd_desc, attr, NULL);
    } else {
        hint_pd = pd_create(key, &fwd_desc, NULL, NULL);
        pd = pd_create(key, &desc, attr, hint_pd);
    }
    DNNL_CALL(dnnl_primitive_attr_destroy(attr));

    Plan *plan = xcalloc(1, sizeof *plan);
    plan->key = *key;
    plan->hint_pd = hint_pd;
    DNNL_CALL(dnnl_primitive_create(&plan->conv, pd));
    plan->scratchpad = dnnl_runtime_scratchpad(pd, &ws.scratchpad);
    plan->wei_user = dnnl_runtime_memory(&wei_user);
    const dnnl_memory_desc_t *kernel_wei = dnnl_primitive_desc_query_md(
        pd, key->kind == PLAN_BACKWARD_WEIGHTS ? dnnl_query_diff_weights_md : dnnl_query_weights_md, 0);
    plan_reorder(plan, &wei_user, kernel_wei, key->kind == PLAN_BACKWARD_WEIGHTS);
    if (key->with_bias && key->kind != PLAN_BACKWARD_DATA) plan->bias = dnnl_runtime_memory(&bias_md);
    /* act_in, act_out: forward src, dst; backward-data diff_dst, diff_src; backward-weights src, diff_dst */
    const bool data = key->kind == PLAN_BACKWARD_DATA;
    plan->act_in = dnnl_runtime_memory(data ? &dst_md : &src_md);
    plan->act_out = dnnl_runtime_memory(data ? &src_md : &dst_md);
    if (data && act_tag == dnnl_nhwc) grow_buffer(&ws.dinp, s->n * s->h * s->w * s->ci * sizeof(float));
    if (key->kind == PLAN_BACKWARD_WEIGHTS && key->with_bias) grow_buffer(&ws.dbias, s->co * sizeof(float));
    if (act_tag != dnnl_nhwc) {
        const dnnl_memory_desc_t src_user = md_of(4, src_dims, dnnl_nhwc), dst_user = md_of(4, dst_dims, dnnl_nhwc);
        const size_t src_bytes = dnnl_memory_desc_get_size(&src_md), dst_bytes = dnnl_memory_desc_get_size(&dst_md);
        if (key->kind != PLAN_BACKWARD_DATA) {
            plan->src_copy = relayout_create(&src_user, &src_md, false);
            grow_buffer(&ws.src_copy, src_bytes);
        }
        if (key->kind != PLAN_FORWARD) {
            plan->dout_copy = relayout_create(&dst_user, &dst_md, false);
            grow_buffer(&ws.dout_copy, dst_bytes);
        }
        if (key->kind == PLAN_FORWARD) {
            plan->result_copy = relayout_create(&dst_md, &dst_user, false);
            grow_buffer(&ws.result_copy, dst_bytes);
        }
        if (data) {
            plan->result_copy = relayout_create(&src_md, &src_user, true);
            plan->result_set = relayout_create(&src_md, &src_user, false);
            grow_buffer(&ws.result_copy, src_bytes);
        }
    }
    DNNL_CALL(dnnl_primitive_desc_destroy(pd)); /* the primitive keeps its own copy; kernel_wei dies here */
    return plan;
}

static void *plan_create(const void *key_ptr) {
    const PlanKey *key = key_ptr;
    if (plan_is_narrow(key)) return plan_create_narrow(key);
    Plan *plan = NULL;
    if (winograd_fits(key)) plan = plan_create_conv(key, true);
    if (!plan && key->kind == PLAN_BACKWARD_DATA) plan = plan_try_data_as_forward(key);
    return plan ? plan : plan_create_conv(key, false);
}

static void relayout_free(Relayout *r) {
    if (!r->reorder) return;
    DNNL_CALL(dnnl_primitive_destroy(r->reorder));
    dnnl_runtime_memory_free(r->from);
    dnnl_runtime_memory_free(r->to);
    dnnl_runtime_memory_free(r->scratchpad);
}

static void plan_free(void *entry) {
    Plan *plan = entry;
    if (!plan) return;
    relayout_free(&plan->src_copy);
    relayout_free(&plan->dout_copy);
    relayout_free(&plan->result_copy);
    relayout_free(&plan->result_set);
    DNNL_CALL(dnnl_primitive_destroy(plan->conv));
    if (plan->conv_set) DNNL_CALL(dnnl_primitive_destroy(plan->conv_set));
    dnnl_runtime_memory_free(plan->scratchpad_set);
    if (plan->reorder) DNNL_CALL(dnnl_primitive_destroy(plan->reorder));
    if (plan->hint_pd) DNNL_CALL(dnnl_primitive_desc_destroy(plan->hint_pd));
    dnnl_runtime_memory_free(plan->act_in);
    dnnl_runtime_memory_free(plan->act_out);
    dnnl_runtime_memory_free(plan->wei_user);
    dnnl_runtime_memory_free(plan->wei);
    dnnl_runtime_memory_free(plan->bias);
    dnnl_runtime_memory_free(plan->scratchpad);
    dnnl_runtime_memory_free(plan->reorder_scratchpad);
    free(plan);
}

static LruCache plans = {
    .capacity = PLAN_CACHE_CAPACITY, .matches = plan_matches, .create = plan_create, .destroy = plan_free};

static Plan *plan_get(const PlanKey *key) { return lru_cache_get(&plans, key); }

size_t conv2d_fast_plans_built(void) { return plans.created; }

void conv2d_fast_use_own_weight_moves(bool on) {
    conv2d_cache_free();
    own_weight_moves = on;
}

void conv2d_fast_use_winograd(bool on, size_t call_bytes) {
    conv2d_cache_free();
    use_winograd = on;
    winograd_call_bytes = call_bytes;
}

void conv2d_fast_winograd_split_fma(int mode) {
    conv2d_cache_free();
    winograd_split_fma = mode;
}

static void held_weights_free(void) {
    conv2d_winograd_bf16_release_held();
    conv2d_winograd_fp32_release_held();
    for (size_t i = 0; i < n_held; i++) alloc_free(held[i].data);
    free(held);
    held = NULL;
    n_held = held_capacity = held_bytes = 0;
}

void conv2d_hold_weights(bool hold) {
    held_weights_free();
    hold_weights = hold;
}

bool conv2d_fast_runs_winograd_fp32(Conv2dShape s, Conv2dParams p, bool *hold) {
    *hold = hold_weights;
    return use_winograd && conv2d_winograd_fp32_fits(s, p);
}

void conv2d_cache_free(void) {
    held_weights_free();
    conv2d_winograd_bf16_free();
    conv2d_winograd_fp32_free();
    lru_cache_clear(&plans);
    GrowBuffer *buffers[] = {&ws.wei,       &ws.dwei,     &ws.scratchpad, &ws.dinp,      &ws.dbias,
                             &ws.cols,      &ws.inp_bf16, &ws.dout_bf16,  &ws.flipped,   &ws.src_copy,
                             &ws.dout_copy, &ws.result_copy, &ws.grad_sums, &ws.bias_partials};
    for (size_t i = 0; i < sizeof buffers / sizeof buffers[0]; i++) grow_buffer_free(buffers[i]);
}

/* ------------------------------------------------------------------------------------------------ */
/* Running plans */

static void execute(dnnl_primitive_t prim, int n_args, const dnnl_exec_arg_t *args) {
    DNNL_CALL(dnnl_primitive_execute(prim, dnnl_runtime_stream(), n_args, args));
}

/* Runs a narrow plan's matmul on rows (its src, group images' worth) into cols. */
static void narrow_matmul(const Plan *plan, const float *rows, float *w_cols, float *cols) {
    dnnl_runtime_bind(plan->act_in, rows);
    dnnl_runtime_bind(plan->wei_user, w_cols);
    dnnl_runtime_bind(plan->act_out, cols);
    dnnl_runtime_bind(plan->scratchpad, ws.scratchpad.data);
    execute(plan->conv, 4,
            (dnnl_exec_arg_t[]){{DNNL_ARG_SRC, plan->act_in}, {DNNL_ARG_WEIGHTS, plan->wei_user},
                                {DNNL_ARG_DST, plan->act_out}, {DNNL_ARG_SCRATCHPAD, plan->scratchpad}});
    DNNL_CALL(dnnl_stream_wait(dnnl_runtime_stream()));
}

/* acc[0 .. width) = the sum, over the taps (ky, kx) in order, of cols[partner position, tap, 0 .. width)
 * where the partner of (n, y, x) lies in the image: the gather of both narrow plans. Forward: (y, x) is an
 * output position and its partner the input the tap reads (cols per input position); backward-data: (y, x)
 * is an input position and its partner the output that reads it through the tap (cols per output). */
static void narrow_gather(float *acc, const float *cols, bool forward, Conv2dShape s, Conv2dParams p, size_t n,
                          size_t y, size_t x, size_t width) {
    const size_t rows = forward ? s.h : s.ho, row_len = forward ? s.w : s.wo, n_cols = s.kh * s.kw * width;
    for (size_t c = 0; c < width; c++) acc[c] = 0;
    for (size_t ky = 0; ky < s.kh; ky++) {
        const ptrdiff_t py = forward ? (ptrdiff_t)(y * (size_t)p.stride + ky) - p.pad_top
                                     : conv2d_out_index(y, ky, p.stride, p.pad_top, s.ho);
        if (py < 0 || py >= (ptrdiff_t)rows) continue;
        for (size_t kx = 0; kx < s.kw; kx++) {
            const ptrdiff_t px = forward ? (ptrdiff_t)(x * (size_t)p.stride + kx) - p.pad_left
                                         : conv2d_out_index(x, kx, p.stride, p.pad_left, s.wo);
            if (px < 0 || px >= (ptrdiff_t)row_len) continue;
            const float *c = cols + ((n * rows + (size_t)py) * row_len + (size_t)px) * n_cols + (ky * s.kw + kx) * width;
            for (size_t k = 0; k < width; k++) acc[k] += c[k];
        }
    }
}

/* narrow_gather's forward for the outputs [x0, x1) of row (n, y) whose taps all lie inside the input's row
 * (stride 1): the same sums in the same order, vectorised across outputs, into r_row = bias + the sums. */
static void narrow_forward_inside(float *r_row, const float *cols, const float *bias, Conv2dShape s, Conv2dParams p,
                                  size_t n, size_t y, size_t x0, size_t x1, size_t width) {
    const size_t n_cols = s.kh * s.kw * width;
    for (size_t c = 0; c < width; c++) {
        const float b = bias ? bias[c] : 0.0f;
#pragma omp simd
        for (size_t x = x0; x < x1; x++) {
            float acc = 0;
            for (size_t ky = 0; ky < s.kh; ky++) {
                const ptrdiff_t py = (ptrdiff_t)(y + ky) - p.pad_top;
                if (py < 0 || py >= (ptrdiff_t)s.h) continue;
                const float *row = cols + ((n * s.h + (size_t)py) * s.w + x - (size_t)p.pad_left) * n_cols + c;
                for (size_t kx = 0; kx < s.kw; kx++) acc += row[kx * n_cols + (ky * s.kw + kx) * width];
            }
            r_row[x * width + c] = b + acc;
        }
    }
}

/* A narrow plan's pass (see plan_create_narrow): the weights as a (K x taps width) matrix, then per group
 * of images the matmul and the gather. Forward (K = Ci, width = Co): out = bias + the gathered sums;
 * backward-data (K = Co, width = Ci): dinp += the gathered sums. */
static void narrow_run(const Plan *plan, float *result, const float *src, Tensor weight, const float *bias,
                       Conv2dShape s, Conv2dParams p) {
    const bool forward = plan->key.kind == PLAN_FORWARD;
    const size_t taps = s.kh * s.kw, k_dim = forward ? s.ci : s.co, width = forward ? s.co : s.ci;
    const size_t n_cols = taps * width, group = plan->narrow_images;
    const size_t src_pos = forward ? s.h * s.w : s.ho * s.wo, rows = forward ? s.ho : s.h, row_len = forward ? s.wo : s.w;
    float *w_cols = ws.cols.data, *cols = (float *)ws.cols.data + k_dim * n_cols;
    for (size_t kd = 0; kd < k_dim; kd++)
        for (size_t k = 0; k < taps; k++)
            for (size_t c = 0; c < width; c++) {
                const size_t o = forward ? c : kd, i = forward ? kd : c;
                w_cols[kd * n_cols + k * width + c] = weight.data[(o * s.ci + i) * taps + k];
            }
    /* Forward at stride 1: the outputs [x_in, x_end) of a row read every tap inside the image's row */
    size_t x_in = 0, x_end = 0;
    if (forward && p.stride == 1 && (size_t)p.pad_left + s.w >= s.kw - 1) {
        x_in = (size_t)p.pad_left < row_len ? (size_t)p.pad_left : row_len;
        x_end = s.w + (size_t)p.pad_left + 1 - s.kw < row_len ? s.w + (size_t)p.pad_left + 1 - s.kw : row_len;
        if (x_end < x_in) x_end = x_in;
    }
    for (size_t n0 = 0; n0 < s.n; n0 += group) {
        narrow_matmul(plan, src + n0 * src_pos * k_dim, w_cols, cols);
        float *result_group = result + n0 * rows * row_len * width;
#pragma omp parallel for collapse(2) schedule(static)
        for (size_t n = 0; n < group; n++)
            for (size_t y = 0; y < rows; y++) {
                float *r_row = result_group + (n * rows + y) * row_len * width;
                for (size_t x = 0; x < row_len; x++) {
                    if (x >= x_in && x < x_end) continue; /* narrow_forward_inside's, below */
                    float acc[NARROW_CI > NARROW_CO ? NARROW_CI : NARROW_CO];
                    narrow_gather(acc, cols, forward, s, p, n, y, x, width);
                    float *r = r_row + x * width;
                    for (size_t c = 0; c < width; c++) r[c] = forward ? (bias ? bias[c] : 0.0f) + acc[c] : r[c] + acc[c];
                }
                if (x_end > x_in) narrow_forward_inside(r_row, cols, bias, s, p, n, y, x_in, x_end, width);
            }
    }
}

static PlanKey key_of(PlanKind kind, Conv2dShape s, Conv2dParams p, bool with_bias) {
    return (PlanKey){.kind = kind, .s = s, .p = p, .with_bias = with_bias,
                     .bf16 = ops_precision() == OPS_PRECISION_BF16, .n_threads = threads_get()};
}

/* Runs a copy between layouts (see Plan) from `from` to `to`. */
static void relayout(const Relayout *r, const void *from, void *to) {
    dnnl_runtime_bind(r->from, from);
    dnnl_runtime_bind(r->to, to);
    dnnl_runtime_bind(r->scratchpad, ws.scratchpad.data);
    execute(r->reorder, 3,
            (dnnl_exec_arg_t[]){{DNNL_ARG_FROM, r->from}, {DNNL_ARG_TO, r->to}, {DNNL_ARG_SCRATCHPAD, r->scratchpad}});
}

/* A bf16 copy of n floats in the workspace buffer b. */
static const uint16_t *bf16_copy(GrowBuffer *b, const float *src, size_t n) {
    uint16_t *copy = grow_buffer(b, n * sizeof(uint16_t));
    floats_to_bfloat16(copy, src, n);
    return copy;
}

/* The held copy of weight in plan's kernel layout, made on first use (see conv2d_hold_weights), or NULL
 * for an fp32 plan past the budget; *fresh tells whether it still has to be filled. */
static void *held_weights_of(const Plan *plan, const float *weight, bool *fresh) {
    const dnnl_memory_desc_t *layout;
    DNNL_CALL(dnnl_memory_get_memory_desc(plan->wei, &layout));
    for (size_t i = 0; i < n_held; i++)
        if (held[i].weight == weight && dnnl_memory_desc_equal(&held[i].layout, layout)) {
            *fresh = false;
            return held[i].data;
        }
    const size_t bytes = dnnl_memory_desc_get_size(layout);
    if (!plan->key.bf16 && held_bytes + bytes > HOLD_FP32_MAX_BYTES) return NULL;
    held_bytes += bytes;
    if (n_held == held_capacity) {
        held_capacity = held_capacity ? 2 * held_capacity : 64;
        held = xrealloc(held, held_capacity * sizeof *held);
    }
    held[n_held] = (HeldWeights){.weight = weight, .layout = *layout, .data = alloc_aligned(bytes)};
    *fresh = true;
    return held[n_held++].data;
}

/* Moves the oihw weights into the kernel's layout (in the workspace, or in a held copy for a forward plan
 * while weights are held and the budget allows, moved only on first use) and returns the memory to use. */
static dnnl_memory_t weights_in(Plan *plan, const float *weight) {
    if (!plan->wei) {
        dnnl_runtime_bind(plan->wei_user, weight);
        return plan->wei_user;
    }
    bool fresh = true; /* held_weights_of leaves it when it holds nothing */
    void *dst = hold_weights && plan->key.kind == PLAN_FORWARD ? held_weights_of(plan, weight, &fresh) : NULL;
    if (!dst) dst = ws.wei.data;
    dnnl_runtime_bind(plan->wei, dst);
    if (!fresh) return plan->wei;
    if (plan->own_layout.ok) {
        weight_to_blocked(&plan->own_layout, dst, weight);
        return plan->wei;
    }
    dnnl_runtime_bind(plan->wei_user, weight);
    dnnl_runtime_bind(plan->reorder_scratchpad, ws.scratchpad.data);
    execute(plan->reorder, 3,
            (dnnl_exec_arg_t[]){{DNNL_ARG_FROM, plan->wei_user}, {DNNL_ARG_TO, plan->wei},
                                {DNNL_ARG_SCRATCHPAD, plan->reorder_scratchpad}});
    return plan->wei;
}

/* The input as the plan reads it: fp32 inp (rounded into the workspace for a bf16 plan), or inp_bf16. */
static const void *input_of(const Plan *plan, const float *inp, const uint16_t *inp_bf16, size_t n) {
    if (inp_bf16) {
        CHECK(plan->key.bf16, "conv2d: a bf16 input needs bf16 precision (ops_set_precision)");
        return inp_bf16;
    }
    if (plan->key.bf16) return bf16_copy(&ws.inp_bf16, inp, n);
    return inp;
}

/* A shape-only view of a bf16 input for the argument checks, and its own overlap check (2-byte values). */
static Tensor bf16_shape(const char *where, Tensor out, Bf16Image inp) {
    static float placeholder;
    CHECK(inp.data, "%s: inp is NULL", where);
    Tensor view = tensor_4d(&placeholder, inp.n, inp.h, inp.w, inp.c);
    uintptr_t a0 = (uintptr_t)inp.data, a1 = a0 + tensor_numel(view) * sizeof(uint16_t);
    uintptr_t b0 = (uintptr_t)out.data, b1 = b0 + (tensor_is_none(out) ? 0 : tensor_numel(out) * sizeof(float));
    CHECK(!(a0 < b1 && b0 < a1), "%s: an output overlaps the bf16 input", where);
    return view;
}

/* Winograd plans run a batch in calls of whole images: oneDNN's scratchpad holds the transformed
 * activations of a whole call at some shapes, and the layout copies grow with the call too. In one call
 * per batch, ddpm-cifar10 at batch 128 peaked at 8.05 GB against the direct kernels' 6.82 (PyTorch:
 * 7.91). Calls of as many images as a divisor of the batch allows within WINOGRAD_CALL_BYTES of the
 * widest activation: 32 MB peaked at 7.08 GB with the training step as fast (10.6 s; 8 MB: 6.91 GB but
 * 11.2 s). Calls too small for winograd_fits make one call of the whole batch instead, so the direct
 * kernels never run in pieces.
 * bf16 plans run in calls too (BF16_CALL_BYTES of the widest activation in fp32), for their bf16 copies of
 * the activation operand and oneDNN's backward-data result: whole, these held 190 MB at ddpm-cifar10's
 * batch 128 (the 1x1 shortcuts of 384 channels at 32x32); in calls, its peak fell from 5.21 to 5.10 GB
 * (16 MB calls: 5.08), the step as fast. Not the narrow layers, whose plans divide the batch their own way. */
#define WINOGRAD_CALL_BYTES ((size_t)32 << 20)
#define BF16_CALL_BYTES ((size_t)32 << 20)

static size_t images_per_call(Conv2dShape s, Conv2dParams p) {
    PlanKey key = key_of(PLAN_FORWARD, s, p, false);
    const bool winograd = winograd_fits(&key), bf16 = key.bf16 && s.ci >= NARROW_CI && s.co >= NARROW_CO;
    if (!winograd && !bf16) return s.n;
    const size_t image_bytes = s.h * s.w * (s.ci > s.co ? s.ci : s.co) * sizeof(float);
    const size_t limit = bf16 ? BF16_CALL_BYTES : winograd_call_bytes ? winograd_call_bytes : WINOGRAD_CALL_BYTES;
    size_t images = 1;
    for (size_t g = 1; g <= s.n; g++)
        if (s.n % g == 0 && g * image_bytes <= limit) images = g;
    key.s.n = images;
    return bf16 || winograd_fits(&key) ? images : s.n;
}

static void forward(Conv2dShape s, Tensor out, const float *inp, const uint16_t *inp_bf16, Tensor weight, Tensor bias,
                    Conv2dParams p) {
    bool with_bias = !tensor_is_none(bias);
    if (conv2d_winograd_bf16_fits(s, p)) {
        conv2d_winograd_bf16_forward(out.data, inp, inp_bf16, weight.data, with_bias ? bias.data : NULL, s,
                                     hold_weights);
        return;
    }
    if (inp && use_winograd && conv2d_winograd_fp32_fits(s, p)) {
        conv2d_winograd_fp32_forward(out.data, inp, weight.data, with_bias ? bias.data : NULL, s, p, hold_weights,
                                     NULL);
        return;
    }
    Conv2dShape call = s;
    call.n = images_per_call(s, p);
    PlanKey key = key_of(PLAN_FORWARD, call, p, with_bias);
    Plan *plan = plan_get(&key);
    if (plan->narrow_images) {
        narrow_run(plan, out.data, inp, weight, bias.data, s, p);
        return;
    }
    dnnl_memory_t wei = weights_in(plan, weight.data);
    const bool copies = plan->src_copy.reorder;
    const size_t in_step = call.n * s.h * s.w * s.ci, out_step = call.n * s.ho * s.wo * s.co;
    dnnl_runtime_bind(plan->bias, bias.data);
    dnnl_runtime_bind(plan->scratchpad, ws.scratchpad.data);
    for (size_t k = 0; k * call.n < s.n; k++) {
        const float *in = inp ? inp + k * in_step : NULL;
        float *o = out.data + k * out_step;
        if (copies) relayout(&plan->src_copy, in, ws.src_copy.data);
        const uint16_t *in_bf16 = inp_bf16 ? inp_bf16 + k * in_step : NULL;
        dnnl_runtime_bind(plan->act_in, copies ? ws.src_copy.data : input_of(plan, in, in_bf16, in_step));
        dnnl_runtime_bind(plan->act_out, copies ? ws.result_copy.data : o);
        dnnl_exec_arg_t args[5] = {{DNNL_ARG_SRC, plan->act_in}, {DNNL_ARG_WEIGHTS, wei},
                                   {DNNL_ARG_DST, plan->act_out}, {DNNL_ARG_SCRATCHPAD, plan->scratchpad},
                                   {DNNL_ARG_BIAS, plan->bias}};
        execute(plan->conv, with_bias ? 5 : 4, args);
        if (copies) relayout(&plan->result_copy, ws.result_copy.data, o);
    }
    DNNL_CALL(dnnl_stream_wait(dnnl_runtime_stream()));
}

void conv2d_forward(Tensor out, Tensor inp, Tensor weight, Tensor bias, Conv2dParams p) {
    forward(conv2d_check_forward(__func__, out, inp, weight, bias, p), out, inp.data, NULL, weight, bias, p);
}

void conv2d_forward_bf16_input(Tensor out, Bf16Image inp, Tensor weight, Tensor bias, Conv2dParams p) {
    Tensor view = bf16_shape(__func__, out, inp);
    forward(conv2d_check_forward(__func__, out, view, weight, bias, p), out, NULL, inp.data, weight, bias, p);
}

/* dst[i] += src[i]: how oneDNN's overwritten outputs join the caller's accumulated gradients. */
static void add_into(float *restrict dst, const float *restrict src, size_t n) {
    if (n < ((size_t)1 << 15)) { /* a bias gradient: not worth waking the threads */
#pragma omp simd
        for (size_t i = 0; i < n; i++) dst[i] += src[i];
        return;
    }
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; i++) dst[i] += src[i];
}

/* The copy of dout in the kernel's layout (ws.dout_copy) for a plan with copies, made by the first of
 * one backward call's two plans that needs it (*made tells) and read by both. */
static const float *dout_copy_of(const Plan *plan, const float *dout, bool *made) {
    if (!*made) relayout(&plan->dout_copy, dout, ws.dout_copy.data);
    *made = true;
    return ws.dout_copy.data;
}

/* Moves the weights where plan's backward-data reads them and returns that memory: flipped for a plan
 * that runs as a forward convolution. */
static dnnl_memory_t backward_data_weights(Plan *plan, const float *weight, Conv2dShape s) {
    if (!plan->data_as_forward) return weights_in(plan, weight);
    if (plan->key.bf16) {
        weight_flip(ws.flipped.data, weight, s.co, s.ci, s.kh, s.kw);
        return weights_in(plan, ws.flipped.data);
    }
    dnnl_runtime_bind(plan->wei, ws.wei.data);
    weight_to_blocked_flipped(&plan->own_layout, ws.wei.data, weight);
    return plan->wei;
}

/* The input gradient of one call's images (n_dinp floats from dinp): as a forward convolution summing
 * into dinp where that plan could be built; else through oneDNN's backward-data into the workspace (or,
 * for a plan with copies, its layout's copy of it), then added to dinp. With overwrite, written into
 * dinp instead (whatever it held). */
static void backward_data(Plan *plan, dnnl_memory_t wei, float *dinp, size_t n_dinp, bool overwrite,
                          const float *dout, const uint16_t *dout_bf16, bool *dout_copied) {
    const bool copies = plan->result_copy.reorder, as_forward = plan->data_as_forward;
    /* A dinp marked for overwriting is written by the forward twin without the sum, by the copy back
     * without the sum, or by oneDNN's backward-data straight into it; only a forward plan without its
     * twin adds into it, from zero. */
    const bool set = overwrite && (!as_forward || plan->conv_set);
    const bool twin = set && as_forward;
    if (overwrite && !set) floats_zero(dinp, n_dinp);
    if (copies) dnnl_runtime_bind(plan->act_in, dout_copy_of(plan, dout, dout_copied));
    else dnnl_runtime_bind(plan->act_in, plan->key.bf16 ? (const void *)dout_bf16 : dout);
    dnnl_runtime_bind(plan->act_out, copies ? ws.result_copy.data : as_forward || set ? dinp : ws.dinp.data);
    dnnl_memory_t scratchpad = twin ? plan->scratchpad_set : plan->scratchpad;
    dnnl_runtime_bind(scratchpad, ws.scratchpad.data);
    execute(twin ? plan->conv_set : plan->conv, 4,
            (dnnl_exec_arg_t[]){{as_forward ? DNNL_ARG_SRC : DNNL_ARG_DIFF_DST, plan->act_in},
                                {DNNL_ARG_WEIGHTS, wei},
                                {as_forward ? DNNL_ARG_DST : DNNL_ARG_DIFF_SRC, plan->act_out},
                                {DNNL_ARG_SCRATCHPAD, scratchpad}});
    if (copies) relayout(set ? &plan->result_set : &plan->result_copy, ws.result_copy.data, dinp);
    DNNL_CALL(dnnl_stream_wait(dnnl_runtime_stream()));
    if (!copies && !as_forward && !set) add_into(dinp, ws.dinp.data, n_dinp);
}

/* dbias alone, when no weight gradient is wanted (or our Winograd or shortcut_add computes it): the sum of
 * dout's rows in double, over a fixed number of blocks of rows summed in parallel and then in order, so the
 * bits do not depend on the thread count. Rows stream whole: a sum per channel down dout's column took 56 ms
 * of ddpm-cifar10's 32x32 128-channel backward at batch 128, this about 2. */
#define BIAS_BLOCKS 32

void conv2d_bias_gradient(float *dbias, const float *dout, size_t n_pos, size_t co) {
    double *partial = grow_buffer(&ws.bias_partials, BIAS_BLOCKS * co * sizeof(double));
#pragma omp parallel for schedule(static)
    for (size_t b = 0; b < BIAS_BLOCKS; b++) {
        double *acc = partial + b * co;
        for (size_t o = 0; o < co; o++) acc[o] = 0;
        for (size_t pos = b * n_pos / BIAS_BLOCKS; pos < (b + 1) * n_pos / BIAS_BLOCKS; pos++) {
            const float *row = dout + pos * co;
#pragma omp simd
            for (size_t o = 0; o < co; o++) acc[o] += row[o];
        }
    }
    for (size_t o = 0; o < co; o++) {
        double sum = 0;
        for (size_t b = 0; b < BIAS_BLOCKS; b++) sum += partial[b * co + o];
        dbias[o] += (float)sum;
    }
}

/* The weight gradient of one call's images (inp: n_inp floats), computed in the kernel's layout in the
 * workspace, is reordered back to oihw and summed into dweight in the same pass; the bias gradient is
 * added from the workspace. */
static void backward_weights(Plan *plan, Tensor dweight, Tensor dbias, const float *dout, const uint16_t *dout_bf16,
                             bool *dout_copied, const float *inp, const uint16_t *inp_bf16, size_t n_inp) {
    const bool with_bias = !tensor_is_none(dbias);
    dnnl_runtime_bind(plan->wei, ws.dwei.data);
    if (plan->src_copy.reorder) {
        relayout(&plan->src_copy, inp, ws.src_copy.data);
        dnnl_runtime_bind(plan->act_in, ws.src_copy.data);
        dnnl_runtime_bind(plan->act_out, dout_copy_of(plan, dout, dout_copied));
    } else {
        dnnl_runtime_bind(plan->act_in, input_of(plan, inp, inp_bf16, n_inp));
        dnnl_runtime_bind(plan->act_out, plan->key.bf16 ? (const void *)dout_bf16 : dout);
    }
    dnnl_runtime_bind(plan->bias, ws.dbias.data);
    dnnl_runtime_bind(plan->scratchpad, ws.scratchpad.data);
    dnnl_exec_arg_t args[5] = {{DNNL_ARG_SRC, plan->act_in}, {DNNL_ARG_DIFF_DST, plan->act_out},
                               {DNNL_ARG_DIFF_WEIGHTS, plan->wei}, {DNNL_ARG_SCRATCHPAD, plan->scratchpad},
                               {DNNL_ARG_DIFF_BIAS, plan->bias}};
    execute(plan->conv, with_bias ? 5 : 4, args);
    if (plan->own_layout.ok) {
        DNNL_CALL(dnnl_stream_wait(dnnl_runtime_stream()));
        weight_add_from_blocked(&plan->own_layout, dweight.data, ws.dwei.data);
    } else {
        dnnl_runtime_bind(plan->wei_user, dweight.data);
        dnnl_runtime_bind(plan->reorder_scratchpad, ws.scratchpad.data);
        execute(plan->reorder, 3,
                (dnnl_exec_arg_t[]){{DNNL_ARG_FROM, plan->wei}, {DNNL_ARG_TO, plan->wei_user},
                                    {DNNL_ARG_SCRATCHPAD, plan->reorder_scratchpad}});
        DNNL_CALL(dnnl_stream_wait(dnnl_runtime_stream()));
    }
    if (with_bias) add_into(dbias.data, ws.dbias.data, dbias.shape[0]);
}

/* fp32 1x1 convolutions at stride 1 without padding on few channels (the narrow resnet blocks' shortcuts):
 * their backward as narrow_gemm.c's products of the positions' rows. oneDNN's 1x1 kernels ran
 * fashion-mnist's at 75-160 GFLOP/s (backward-weights of 64x28x28 48->16: 1.0 ms), 5.9 ms of its 145 ms
 * training step. */
static bool pointwise_narrow_fits(Conv2dShape s, Conv2dParams p) {
    const bool pointwise = s.kh == 1 && s.kw == 1 && p.stride == 1 && p.pad_top == 0 && p.pad_bottom == 0 &&
                           p.pad_left == 0 && p.pad_right == 0;
    return pointwise && ops_precision() == OPS_PRECISION_FP32 && narrow_gemm_serves(s.co, s.ci) &&
           narrow_weight_grad_serves(s.co, s.ci);
}

/* Both gradients call by call (images_per_call): each call's backward-data then backward-weights, which
 * share its copy of dout when they run in another layout. With several calls, the weight and bias
 * gradients are summed in the workspace first and added to dweight and dbias once, as one call would:
 * accumulation stays one addition per element. */
static void backward(Conv2dShape s, Tensor dinp, Tensor dweight, Tensor dbias, Tensor dout, const float *inp,
                     const uint16_t *inp_bf16, Tensor weight, Conv2dParams p) {
    bool want_dinp = !tensor_is_none(dinp);
    bool want_dweight = !tensor_is_none(dweight);
    if (conv2d_winograd_bf16_fits(s, p)) {
        if (want_dinp) conv2d_winograd_bf16_backward_data(dinp.data, !dinp.overwrite, dout.data, weight.data, s);
        if (want_dweight) conv2d_winograd_bf16_backward_weights(dweight.data, dout.data, inp, inp_bf16, s);
        if (!tensor_is_none(dbias)) conv2d_bias_gradient(dbias.data, dout.data, s.n * s.ho * s.wo, s.co);
        return;
    }
    if (use_winograd && conv2d_winograd_fp32_fits(s, p)) { /* the bias gradient below */
        if (want_dinp)
            conv2d_winograd_fp32_backward_data(dinp.data, !dinp.overwrite, dout.data, weight.data, s, p, NULL);
        if (want_dweight && inp) conv2d_winograd_fp32_backward_weights(dweight.data, dout.data, inp, s, p, NULL);
        want_dinp = false;
        want_dweight = want_dweight && !inp;
    }
    if (pointwise_narrow_fits(s, p)) { /* the bias gradient with the weight's, else below */
        const size_t rows = s.n * s.h * s.w;
        /* dinp (+)= dout weight: weight (Co, Ci) is the product's (K, outputs) */
        if (want_dinp)
            narrow_gemm_kco(dinp.data, dinp.overwrite ? NULL : dinp.data, dout.data, s.co, NULL, 0, weight.data,
                            NULL, s.ci, rows, 1.0f);
        if (want_dweight && inp) {
            narrow_weight_grad(dweight.data, dbias.data, dout.data, s.co, inp, s.ci, NULL, 0, rows);
            return;
        }
        want_dinp = false;
    }
    if (want_dweight && inp && ops_precision() == OPS_PRECISION_FP32 && conv2d_narrow_weights_fit(s, p)) {
        conv2d_narrow_weight_grad(dweight, dbias, dout.data, inp, s, p);
        want_dweight = false;
    } else if (!want_dweight && !tensor_is_none(dbias)) {
        conv2d_bias_gradient(dbias.data, dout.data, s.n * s.ho * s.wo, s.co);
    }
    if (!want_dinp && !want_dweight) return;
    /* In bf16, both passes of a call read the same rounded copy of its dout. */
    const bool dout_rounded = ops_precision() == OPS_PRECISION_BF16 && (want_dweight || s.ci >= NARROW_CI);
    Conv2dShape call = s;
    call.n = images_per_call(s, p);
    Plan *data = NULL, *weights = NULL;
    if (want_dinp) {
        PlanKey key = key_of(PLAN_BACKWARD_DATA, call, p, false);
        data = plan_get(&key);
    }
    if (want_dweight) {
        PlanKey key = key_of(PLAN_BACKWARD_WEIGHTS, call, p, !tensor_is_none(dbias));
        weights = plan_get(&key);
    }
    if (data && data->narrow_images) {
        if (dinp.overwrite) tensor_zero(dinp); /* narrow_run adds */
        narrow_run(data, dinp.data, dout.data, weight, NULL, s, p);
        data = NULL;
    }
    dnnl_memory_t data_wei = data ? backward_data_weights(data, weight.data, s) : NULL;
    Tensor dweight_sum = dweight, dbias_sum = dbias;
    if (weights && call.n < s.n) {
        const size_t n_weight = tensor_numel(dweight), n_bias = tensor_is_none(dbias) ? 0 : s.co;
        grow_buffer(&ws.grad_sums, (n_weight + n_bias) * sizeof(float));
        floats_zero(ws.grad_sums.data, n_weight + n_bias);
        dweight_sum.data = ws.grad_sums.data;
        if (n_bias) dbias_sum.data = (float *)ws.grad_sums.data + n_weight;
    }
    const size_t in_step = call.n * s.h * s.w * s.ci, out_step = call.n * s.ho * s.wo * s.co;
    for (size_t k = 0; k * call.n < s.n; k++) {
        bool dout_copied = false;
        const float *dout_k = dout.data + k * out_step;
        const uint16_t *dout_bf16_k = dout_rounded ? bf16_copy(&ws.dout_bf16, dout_k, out_step) : NULL;
        if (data)
            backward_data(data, data_wei, dinp.data + k * in_step, in_step, dinp.overwrite, dout_k, dout_bf16_k,
                          &dout_copied);
        if (weights)
            backward_weights(weights, dweight_sum, dbias_sum, dout_k, dout_bf16_k, &dout_copied,
                             inp ? inp + k * in_step : NULL, inp_bf16 ? inp_bf16 + k * in_step : NULL, in_step);
    }
    if (dweight_sum.data != dweight.data) add_into(dweight.data, dweight_sum.data, tensor_numel(dweight));
    if (dbias_sum.data != dbias.data) add_into(dbias.data, dbias_sum.data, s.co);
}

void conv2d_backward(Tensor dinp, Tensor dweight, Tensor dbias, Tensor dout, Tensor inp, Tensor weight,
                     Conv2dParams p) {
    Conv2dShape s = conv2d_check_backward(__func__, dinp, dweight, dbias, dout, inp, weight, p);
    backward(s, dinp, dweight, dbias, dout, inp.data, NULL, weight, p);
}

void conv2d_backward_bf16_input(Tensor dinp, Tensor dweight, Tensor dbias, Tensor dout, Bf16Image inp, Tensor weight,
                                Conv2dParams p) {
    Tensor view = bf16_shape(__func__, dweight, inp);
    Conv2dShape s = conv2d_check_backward(__func__, dinp, dweight, dbias, dout, view, weight, p);
    backward(s, dinp, dweight, dbias, dout, NULL, inp.data, weight, p);
}
