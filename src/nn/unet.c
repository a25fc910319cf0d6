/* UNet2DModel forward and backward (see unet.h): a walk over the layout's layers, the small layer kinds
 * (time embedding, conv_in, downsample, upsample, output head) written here, resnets and attention
 * blocks in their own files. The walk mirrors diffusers' UNet2DModel.forward (models/unets/unet_2d.py):
 *   emb = time_embedding(sinusoid(t)) [+ class_embedding(label)];   h = conv_in(x)   (x = 2x - 1 first
 *   when center_input_sample);  down blocks push every layer's output on the skip stack, up-block resnets
 *   pop one each and concatenate it after h;  out = conv_out(silu(conv_norm_out(h))).
 * Backward walks the layers in reverse; the gradient of a layer's output lives in a buffer of its own
 * when that output is also a skip (two consumers add into it), else in one of two alternating buffers. */
#include "nn/unet.h"

#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/check.h"
#include "ops/ops.h"
#include "ops/precision.h"
#include "ops/upsample_conv.h"

/* ------------------------------------------------------------------------------------------------ */
/* Set-up */

int unet_init(UNet *net, const UNetConfig *cfg, bool with_grads, Error *err) {
    *net = (UNet){0};
    if (unet_layout_init(&net->layout, cfg, err)) return -1;
    net->n_params = net->layout.params.n_floats;
    net->params = alloc_floats_or_null(net->n_params, 1);
    if (net->params && with_grads) net->grads = alloc_floats_or_null(net->n_params, 1);
    if (!net->params || (with_grads && !net->grads)) {
        const size_t n = net->n_params;
        unet_free(net);
        return error_set(err, "the model's %zu parameters need %.3g GB%s: more memory than this machine can give",
                         n, (double)n * 4e-9, with_grads ? ", twice with their gradients" : "");
    }
    return 0;
}

static void unet_unplan(UNet *net) {
    arena_free(&net->arena);
    free(net->states);
    free(net->skip_source);
    free(net->d_skip_out);
    free(net->class_labels);
    net->states = NULL, net->skip_source = NULL, net->d_skip_out = NULL, net->class_labels = NULL;
    net->batch = 0;
}

void unet_free(UNet *net) {
    unet_unplan(net);
    alloc_free(net->params);
    alloc_free(net->grads);
    unet_layout_free(&net->layout);
    *net = (UNet){0};
}

void unet_init_weights(UNet *net, uint64_t seed) { param_table_fill_init(&net->layout.params, net->params, seed); }

void unet_zero_grads(UNet *net) {
    CHECK(net->grads, "unet_zero_grads: the model was created without gradients");
    floats_zero(net->grads, net->n_params);
}

Tensor unet_scratch_view(const UNetScratch *s, int i, int ndim, const size_t *shape) {
    CHECK(i >= 0 && i < UNET_N_SCRATCH, "scratch buffer %d of %d", i, UNET_N_SCRATCH);
    Tensor t = {.data = s->buf[i], .ndim = ndim};
    for (int d = 0; d < ndim; d++) t.shape[d] = shape[d];
    CHECK(tensor_numel(t) <= s->n_floats[i], "scratch buffer %d of %zu floats cannot hold %zu", i, s->n_floats[i],
          tensor_numel(t));
    return t;
}

Tensor unet_scratch_zeroed(const UNetScratch *s, int i, int ndim, const size_t *shape) {
    Tensor t = unet_scratch_view(s, i, ndim, shape);
    tensor_zero(t);
    return t;
}

Tensor unet_scratch_to_write(const UNetScratch *s, int i, int ndim, const size_t *shape) {
    return tensor_overwrite(unet_scratch_view(s, i, ndim, shape));
}

/* ------------------------------------------------------------------------------------------------ */
/* Planning */

static bool bf16_activations_enabled = true;

void unet_bf16_activations(bool on) { bf16_activations_enabled = on; }

static Tensor image(Arena *arena, size_t n, size_t h, size_t w, size_t c) {
    return tensor_4d(arena_floats(arena, n * h * w * c), n, h, w, c);
}

static Tensor rows(Arena *arena, size_t n, size_t c) { return tensor_2d(arena_floats(arena, n * c), n, c); }

static size_t max_size(size_t a, size_t b) { return a > b ? a : b; }

void unet_scratch_need(size_t need[UNET_N_SCRATCH], int i, size_t n_floats) {
    CHECK(i >= 0 && i < UNET_N_SCRATCH, "scratch buffer %d of %d", i, UNET_N_SCRATCH);
    need[i] = max_size(need[i], n_floats);
}

/* What each layer asks of the scratch buffers: resnets and attention blocks say so themselves; the small
 * layers' backward (below) uses buffer 0 for one image-sized gradient, the time embedding 0 to 2. */
static void scratch_needs(const UNet *net, const LayerState *s, size_t need[UNET_N_SCRATCH]) {
    const UNetLayer *l = s->layer;
    const bool backward = net->grads != NULL;
    const size_t n = s->n, c_in = (size_t)(l->in_channels + l->skip_channels);
    switch (l->kind) {
    case UNET_LAYER_RESNET: resnet_scratch_needs(s, backward, need); return;
    case UNET_LAYER_ATTENTION: attention_scratch_needs(s, backward, need); return;
    case UNET_LAYER_TIME_EMBEDDING:
        for (int i = 0; backward && i <= 2; i++) unet_scratch_need(need, i, n * (size_t)net->layout.time_embed_dim);
        return;
    case UNET_LAYER_CONV_IN: /* d(centred input) */
    case UNET_LAYER_OUT:     /* d(silu(conv_norm_out(h))) */
        if (backward) unet_scratch_need(need, 0, n * s->in_h * s->in_w * c_in);
        return;
    case UNET_LAYER_UPSAMPLE:
        unet_scratch_need(need, 0, upsample_conv_work_floats(n, s->in_h, s->in_w, c_in, (size_t)l->out_channels, backward));
        return;
    case UNET_LAYER_DOWNSAMPLE: return;
    }
}

/* The plan's timeline (core/arena.h): layer k's forward runs at step k and its backward at step
 * 2 L - 1 - k, for L layers. */
static int backward_step(const UNet *net, int k) { return 2 * net->layout.n_layers - 1 - k; }

/* The up-block resnet that concatenates layer k's output (unet_plan checks that every skip has one), or -1. */
static int skip_reader(const UNet *net, int k) {
    for (int j = k + 1; j < net->layout.n_layers; j++)
        if (net->skip_source[j] == k) return j;
    return -1;
}

/* The last step that reads layer k's output: its backward in a training plan (the next layer's backward,
 * and the skip reader's, come before it), else the last forward that reads it. */
static int output_last_step(const UNet *net, int k) {
    if (net->grads) return backward_step(net, k);
    const int reader = skip_reader(net, k);
    return reader > k + 1 ? reader : k + 1;
}

/* Lays out every buffer in the arena; run once counting, once for real (core/arena.h). */
static void plan_buffers(UNet *net) {
    const UNetLayout *layout = &net->layout;
    Arena *arena = &net->arena;
    const size_t n = net->batch;
    const size_t temb = (size_t)layout->time_embed_dim;
    const int last_step = 2 * layout->n_layers - 1;
    size_t need[UNET_N_SCRATCH] = {0}, chain = 0; /* scratch floats; the largest gradient in the chain */
    arena_live(arena, 0, last_step);
    net->x_in = image(arena, n, net->height, net->width, (size_t)layout->config.in_channels);
    net->timesteps = arena_floats(arena, n);
    for (int i = 0; i < layout->n_layers; i++) {
        LayerState *s = &net->states[i];
        const UNetLayer *l = &layout->layers[i];
        s->layer = l;
        s->bf16 = net->bf16_activations;
        s->n = n;
        s->in_h = net->height >> l->in_level, s->in_w = net->width >> l->in_level;
        s->out_h = net->height >> l->out_level, s->out_w = net->width >> l->out_level;
        size_t c_in = (size_t)(l->in_channels + l->skip_channels), c_out = (size_t)l->out_channels;
        scratch_needs(net, s, need);
        if (!l->push_skip) chain = max_size(chain, n * s->out_h * s->out_w * c_out);
        /* What a layer saves is in use from its forward to its backward (in forward alone, its forward);
         * the time embedding's output is read by every resnet, so it is kept throughout. */
        if (l->kind == UNET_LAYER_TIME_EMBEDDING) arena_live(arena, 0, last_step);
        else arena_live(arena, i, net->grads ? backward_step(net, i) : i);
        switch (l->kind) {
        case UNET_LAYER_TIME_EMBEDDING:
            s->time.sinusoid = rows(arena, n, (size_t)l->in_channels);
            s->time.h1 = rows(arena, n, temb);
            s->time.a1 = rows(arena, n, temb);
            s->time.emb = rows(arena, n, temb);
            if (layout->config.num_class_embeds > 0) s->time.class_emb = rows(arena, n, temb);
            s->time.silu_emb = rows(arena, n, temb);
            s->out = s->time.silu_emb;
            break;
        case UNET_LAYER_RESNET: resnet_plan(s, arena); break;
        case UNET_LAYER_ATTENTION: attention_plan(s, arena); break;
        case UNET_LAYER_UPSAMPLE: {
            /* rewritten by every pass, but at an address of its own (conv2d_hold_weights) */
            const size_t n_phase_weights = upsample_conv_phase_weight_floats(n, s->in_h, s->in_w, c_in, c_out);
            arena_live(arena, 0, last_step);
            s->upsample.phase_weights = n_phase_weights ? arena_floats(arena, n_phase_weights) : NULL;
            break;
        }
        case UNET_LAYER_OUT:
            s->head.mean = rows(arena, n, (size_t)l->norm_groups);
            s->head.rstd = rows(arena, n, (size_t)l->norm_groups);
            conv_input_plan(&s->head.act, arena, s->bf16, n, s->in_h, s->in_w, c_in);
            /* The output itself is the caller's buffer, set by each forward pass. */
            break;
        case UNET_LAYER_CONV_IN:
        case UNET_LAYER_DOWNSAMPLE: break;
        }
        if (l->kind != UNET_LAYER_TIME_EMBEDDING && l->kind != UNET_LAYER_OUT) {
            arena_live(arena, i, output_last_step(net, i));
            s->out = image(arena, n, s->out_h, s->out_w, c_out);
        }
    }
    if (net->grads) {
        /* A skip's gradient is first added to by the resnet that concatenated it (unet_backward zeroes it
         * there) and last read by the layer's own backward. */
        for (int i = 0; i < layout->n_layers; i++)
            if (layout->layers[i].push_skip) {
                const Tensor o = net->states[i].out;
                arena_live(arena, backward_step(net, skip_reader(net, i)), backward_step(net, i));
                net->d_skip_out[i] = image(arena, o.shape[0], o.shape[1], o.shape[2], o.shape[3]);
            }
        arena_live(arena, layout->n_layers, last_step);
        net->d_chain[0] = arena_floats(arena, chain);
        net->d_chain[1] = arena_floats(arena, chain);
        net->d_silu_emb = rows(arena, n, temb);
    }
    arena_live(arena, 0, last_step);
    for (int i = 0; i < UNET_N_SCRATCH; i++) {
        net->scratch.n_floats[i] = need[i];
        net->scratch.buf[i] = need[i] ? arena_floats(arena, need[i]) : NULL;
    }
}

int unet_plan(UNet *net, size_t batch, size_t height, size_t width, Error *err) {
    const UNetLayout *layout = &net->layout;
    size_t factor = (size_t)1 << (layout->config.n_blocks - 1);
    CHECK(batch > 0 && height > 0 && width > 0, "unet_plan: batch %zu, %zux%zu", batch, height, width);
    CHECK(height % factor == 0 && width % factor == 0,
          "unet_plan: %zux%zu is not divisible by %zu, as %d resolution levels need", height, width, factor,
          layout->config.n_blocks);
    unet_unplan(net);
    net->batch = batch, net->height = height, net->width = width;
    net->bf16_activations = ops_precision() == OPS_PRECISION_BF16 && bf16_activations_enabled;
    net->states = xcalloc((size_t)layout->n_layers, sizeof *net->states);
    net->d_skip_out = xcalloc((size_t)layout->n_layers, sizeof *net->d_skip_out);
    net->skip_source = xcalloc((size_t)layout->n_layers, sizeof *net->skip_source);
    if (layout->config.num_class_embeds > 0) net->class_labels = xcalloc(batch, sizeof *net->class_labels);
    /* Replay the skip stack to know which output each up-block resnet concatenates. */
    int *stack = xcalloc((size_t)layout->n_layers, sizeof *stack), depth = 0;
    for (int i = 0; i < layout->n_layers; i++) {
        const UNetLayer *l = &layout->layers[i];
        net->skip_source[i] = -1;
        if (l->skip_channels > 0) {
            CHECK(depth > 0, "layer %s pops an empty skip stack", l->module);
            net->skip_source[i] = stack[--depth];
        }
        if (l->push_skip) stack[depth++] = i;
    }
    free(stack);
    CHECK(depth == 0, "unet_plan: %d skip outputs are never concatenated", depth);
    for (int i = 0; i < layout->n_layers; i++) {
        LayerState *s = &net->states[i];
        for (int slot = 0; slot < UNET_N_PARAM_SLOTS; slot++) {
            s->p[slot] = unet_layer_param(layout, &layout->layers[i], (UNetParamSlot)slot, net->params);
            s->g[slot] = net->grads ? unet_layer_param(layout, &layout->layers[i], (UNetParamSlot)slot, net->grads)
                                    : tensor_none();
        }
    }
    arena_begin_count(&net->arena);
    plan_buffers(net);
    if (arena_allocate(&net->arena)) {
        const double gb = (double)unet_plan_bytes(net) * 1e-9;
        unet_unplan(net);
        return error_set(err, "the activations of %zu images of %zux%zu need %.3g GB: more memory than this "
                         "machine can give (a smaller --batch needs less)", batch, height, width, gb);
    }
    plan_buffers(net);
    return 0;
}

size_t unet_plan_bytes(const UNet *net) { return net->arena.capacity * sizeof(float); }

/* ------------------------------------------------------------------------------------------------ */
/* The small layers */

static Conv2dParams downsample_params(const UNetLayer *l) {
    if (l->padding == 1) return conv2d_params(2, 1);
    /* diffusers' Downsample2D with padding=0: F.pad(x, (0, 1, 0, 1)) then a stride-2 conv */
    return (Conv2dParams){.stride = 2, .pad_top = 0, .pad_bottom = 1, .pad_left = 0, .pad_right = 1};
}

static void time_forward(UNet *net, LayerState *s) {
    const UNetConfig *cfg = &net->layout.config;
    TimeActs *t = &s->time;
    TimestepEmbeddingParams tp = timestep_embedding_defaults();
    tp.flip_sin_to_cos = cfg->flip_sin_to_cos;
    tp.downscale_freq_shift = cfg->freq_shift;
    timestep_embedding(t->sinusoid, net->timesteps, tp);
    linear_forward(t->h1, t->sinusoid, s->p[UNET_TIME_LINEAR_1_WEIGHT], s->p[UNET_TIME_LINEAR_1_BIAS]);
    silu_forward(t->a1, t->h1);
    linear_forward(t->emb, t->a1, s->p[UNET_TIME_LINEAR_2_WEIGHT], s->p[UNET_TIME_LINEAR_2_BIAS]);
    if (cfg->num_class_embeds > 0) {
        embedding_forward(t->class_emb, s->p[UNET_CLASS_EMBEDDING], net->class_labels);
        add_scaled_forward(t->emb, t->emb, t->class_emb, 1.0f);
    }
    silu_forward(t->silu_emb, t->emb);
}

static void time_backward(UNet *net, LayerState *s) {
    TimeActs *t = &s->time;
    const UNetScratch *scratch = &net->scratch;
    const size_t n = net->batch, temb = t->emb.shape[1];
    Tensor d_emb = SCRATCH2(scratch, 0, n, temb);
    silu_backward(d_emb, net->d_silu_emb, t->emb);
    if (net->layout.config.num_class_embeds > 0) embedding_backward(s->g[UNET_CLASS_EMBEDDING], d_emb, net->class_labels);
    Tensor d_a1 = SCRATCH2(scratch, 1, n, temb);
    linear_backward(d_a1, s->g[UNET_TIME_LINEAR_2_WEIGHT], s->g[UNET_TIME_LINEAR_2_BIAS], d_emb, t->a1,
                    s->p[UNET_TIME_LINEAR_2_WEIGHT]);
    Tensor d_h1 = SCRATCH2(scratch, 2, n, temb);
    silu_backward(d_h1, d_a1, t->h1);
    linear_backward(tensor_none(), s->g[UNET_TIME_LINEAR_1_WEIGHT], s->g[UNET_TIME_LINEAR_1_BIAS], d_h1, t->sinusoid,
                    s->p[UNET_TIME_LINEAR_1_WEIGHT]);
}

static void head_forward(LayerState *s, Tensor in) {
    const UNetLayer *l = s->layer;
    conv_input_norm_silu(&s->head.act, s->head.mean, s->head.rstd, in, tensor_none(), tensor_none(),
                         s->p[UNET_OUT_NORM_WEIGHT], s->p[UNET_OUT_NORM_BIAS], l->norm_groups, (float)l->norm_eps);
    conv_input_forward(s->out, &s->head.act, s->p[UNET_OUT_CONV_WEIGHT], s->p[UNET_OUT_CONV_BIAS], conv2d_params(1, 1));
}

static void head_backward(LayerState *s, Tensor d_in, Tensor dout, Tensor in, const UNetScratch *scratch) {
    const UNetLayer *l = s->layer;
    Tensor d_act = SCRATCH4(scratch, 0, in.shape[0], in.shape[1], in.shape[2], in.shape[3]);
    conv_input_backward(d_act, s->g[UNET_OUT_CONV_WEIGHT], s->g[UNET_OUT_CONV_BIAS], dout, &s->head.act,
                        s->p[UNET_OUT_CONV_WEIGHT], conv2d_params(1, 1));
    group_norm_silu_backward(d_in, tensor_none(), s->g[UNET_OUT_NORM_WEIGHT], s->g[UNET_OUT_NORM_BIAS], d_act, in,
                             tensor_none(), tensor_none(), s->head.mean, s->head.rstd, s->p[UNET_OUT_NORM_WEIGHT],
                             s->p[UNET_OUT_NORM_BIAS], l->norm_groups);
}

/* ------------------------------------------------------------------------------------------------ */
/* The walk */

void unet_forward(UNet *net, float *out, const float *x, const float *timesteps, const int *class_labels,
                  const UNetDropoutKeys *dropout) {
    const UNetLayout *layout = &net->layout;
    const UNetConfig *cfg = &layout->config;
    CHECK(net->batch > 0, "unet_forward: call unet_plan first");
    CHECK(out && x && timesteps, "unet_forward: out %p, x %p, timesteps %p", (void *)out, (const void *)x,
          (const void *)timesteps);
    CHECK((cfg->num_class_embeds > 0) == (class_labels != NULL),
          "unet_forward: the model has %d classes but class labels were%s given", cfg->num_class_embeds,
          class_labels ? "" : " not");
    const size_t n = net->batch;
    memcpy(net->x_in.data, x, tensor_numel(net->x_in) * sizeof(float));
    if (cfg->center_input_sample)
        for (size_t i = 0, m = tensor_numel(net->x_in); i < m; i++) net->x_in.data[i] = 2.0f * net->x_in.data[i] - 1.0f;
    memcpy(net->timesteps, timesteps, n * sizeof(float));
    if (class_labels) memcpy(net->class_labels, class_labels, n * sizeof(int));
    net->dropout = dropout ? *dropout : (UNetDropoutKeys){0};

    Tensor silu_emb = net->states[0].out;
    Tensor h = net->x_in;
    for (int i = 0; i < layout->n_layers; i++) {
        LayerState *s = &net->states[i];
        const UNetLayer *l = s->layer;
        switch (l->kind) {
        case UNET_LAYER_TIME_EMBEDDING:
            time_forward(net, s);
            continue; /* a side input, not part of the chain */
        case UNET_LAYER_CONV_IN:
            conv2d_forward(s->out, h, s->p[UNET_CONV_WEIGHT], s->p[UNET_CONV_BIAS], conv2d_params(1, 1));
            break;
        case UNET_LAYER_RESNET: {
            Tensor skip = net->skip_source[i] >= 0 ? net->states[net->skip_source[i]].out : tensor_none();
            resnet_forward(s, h, skip, silu_emb, &net->scratch, &net->dropout, (uint64_t)i);
            break;
        }
        case UNET_LAYER_ATTENTION:
            attention_block_forward(s, h, &net->scratch);
            break;
        case UNET_LAYER_DOWNSAMPLE:
            conv2d_forward(s->out, h, s->p[UNET_CONV_WEIGHT], s->p[UNET_CONV_BIAS], downsample_params(l));
            break;
        case UNET_LAYER_UPSAMPLE:
            upsample_conv_forward(s->out, h, s->p[UNET_CONV_WEIGHT], s->p[UNET_CONV_BIAS], net->scratch.buf[0],
                                  s->upsample.phase_weights);
            break;
        case UNET_LAYER_OUT:
            s->out = tensor_4d(out, n, s->out_h, s->out_w, (size_t)l->out_channels);
            head_forward(s, h);
            break;
        }
        h = s->out;
    }
}

/* Where the gradient of layer i's output goes: its own buffer when the output is also a skip, else the
 * alternating chain buffer for i: zeroed, since backward functions accumulate, unless layer i + 1, the
 * one that computes it, writes it first (then marked for overwriting). */
static Tensor output_gradient(UNet *net, int i) {
    if (net->layout.layers[i].push_skip) return net->d_skip_out[i];
    Tensor o = net->states[i].out;
    Tensor d = {.data = net->d_chain[i % 2], .ndim = o.ndim};
    memcpy(d.shape, o.shape, sizeof d.shape);
    const LayerState *consumer = &net->states[i + 1];
    const UNetLayerKind kind = consumer->layer->kind;
    if (kind == UNET_LAYER_ATTENTION || kind == UNET_LAYER_DOWNSAMPLE ||
        (kind == UNET_LAYER_RESNET && resnet_writes_d_in(consumer)))
        return tensor_overwrite(d);
    tensor_zero(d);
    return d;
}

void unet_backward(UNet *net, float *dx, const float *dout) {
    const UNetLayout *layout = &net->layout;
    CHECK(net->grads, "unet_backward: the model was created without gradients");
    CHECK(net->batch > 0 && dout, "unet_backward: no plan or no dout");
    tensor_zero(net->d_silu_emb);
    const UNetScratch *scratch = &net->scratch;
    Tensor silu_emb = net->states[0].out;
    Tensor d_out = net->states[layout->n_layers - 1].out;
    d_out.data = (float *)dout; /* read only */
    for (int i = layout->n_layers - 1; i >= 1; i--) {
        LayerState *s = &net->states[i];
        const UNetLayer *l = s->layer;
        if (l->kind == UNET_LAYER_CONV_IN) {
            if (!dx) {
                conv2d_backward(tensor_none(), s->g[UNET_CONV_WEIGHT], s->g[UNET_CONV_BIAS], d_out, net->x_in,
                                s->p[UNET_CONV_WEIGHT], conv2d_params(1, 1));
                break;
            }
            Tensor x = net->x_in, d_x = x;
            d_x.data = dx;
            if (!layout->config.center_input_sample) {
                conv2d_backward(d_x, s->g[UNET_CONV_WEIGHT], s->g[UNET_CONV_BIAS], d_out, x, s->p[UNET_CONV_WEIGHT],
                                conv2d_params(1, 1));
            } else {
                /* x_in = 2x - 1 */
                Tensor d_centred = SCRATCH4(scratch, 0, x.shape[0], x.shape[1], x.shape[2], x.shape[3]);
                conv2d_backward(d_centred, s->g[UNET_CONV_WEIGHT], s->g[UNET_CONV_BIAS], d_out, x,
                                s->p[UNET_CONV_WEIGHT], conv2d_params(1, 1));
                add_scaled_backward(d_x, tensor_none(), d_centred, 2.0f);
            }
            break;
        }
        Tensor in = net->states[i - 1].out;
        Tensor d_in = output_gradient(net, i - 1);
        switch (l->kind) {
        case UNET_LAYER_RESNET: {
            int src = net->skip_source[i];
            Tensor skip = src >= 0 ? net->states[src].out : tensor_none();
            /* The skip's gradient starts here (its memory was another buffer's until now): written, unless
             * the skip is also the input (no mid block), whose gradient lands in the same buffer. */
            Tensor d_skip = src < 0 ? tensor_none() : net->d_skip_out[src];
            if (src == i - 1) tensor_zero(d_skip);
            else if (src >= 0) d_skip = tensor_overwrite(d_skip);
            resnet_backward(s, d_in, d_skip, net->d_silu_emb, d_out, in, skip, silu_emb, scratch, &net->dropout,
                            (uint64_t)i);
            break;
        }
        case UNET_LAYER_ATTENTION:
            attention_block_backward(s, d_in, d_out, in, scratch);
            break;
        case UNET_LAYER_DOWNSAMPLE:
            conv2d_backward(d_in, s->g[UNET_CONV_WEIGHT], s->g[UNET_CONV_BIAS], d_out, in, s->p[UNET_CONV_WEIGHT],
                            downsample_params(l));
            break;
        case UNET_LAYER_UPSAMPLE:
            upsample_conv_backward(d_in, s->g[UNET_CONV_WEIGHT], s->g[UNET_CONV_BIAS], d_out, in, s->p[UNET_CONV_WEIGHT],
                                   scratch->buf[0], s->upsample.phase_weights);
            break;
        case UNET_LAYER_OUT:
            head_backward(s, d_in, d_out, in, scratch);
            break;
        case UNET_LAYER_TIME_EMBEDDING:
        case UNET_LAYER_CONV_IN:
            CHECK(0, "layer %d (%s) out of place", i, unet_layer_kind_name(l->kind));
        }
        d_out = d_in;
    }
    time_backward(net, &net->states[0]);
}
