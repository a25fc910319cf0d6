/* diffusers' self-attention block (Attention with AttnProcessor2_0, residual_connection=True, as built by
 * AttnDownBlock2D / AttnUpBlock2D / UNetMidBlock2D), forward and backward. A channels-last image
 * (N, H, W, C) already is the token sequence (N, L = H*W, C) the block works on:
 *   n = group_norm(x)  (when the block has one);  q, k, v = to_q(n), to_k(n), to_v(n)
 *   o = softmax(q k^T / sqrt(D)) v per head;     out = (to_out(o) + x) / rescale_output_factor */
#include <math.h>

#include "core/check.h"
#include "core/half.h"
#include "nn/unet_layers.h"
#include "ops/ops.h"

static Tensor tokens(Arena *arena, size_t n, size_t l, size_t c) {
    return tensor_3d(arena_floats(arena, n * l * c), n, l, c);
}

/* The q, k, v projections' parameters. */
static const UNetParamSlot QKV_WEIGHT[3] = {UNET_ATTN_TO_Q_WEIGHT, UNET_ATTN_TO_K_WEIGHT, UNET_ATTN_TO_V_WEIGHT};
static const UNetParamSlot QKV_BIAS[3] = {UNET_ATTN_TO_Q_BIAS, UNET_ATTN_TO_K_BIAS, UNET_ATTN_TO_V_BIAS};

void attention_plan(LayerState *s, Arena *arena) {
    const UNetLayer *l = s->layer;
    AttentionActs *a = &s->attn;
    size_t n = s->n, len = s->in_h * s->in_w, c = (size_t)l->out_channels;
    if (l->norm_groups > 0) {
        a->mean = tensor_2d(arena_floats(arena, n * (size_t)l->norm_groups), n, (size_t)l->norm_groups);
        a->rstd = tensor_2d(arena_floats(arena, n * (size_t)l->norm_groups), n, (size_t)l->norm_groups);
    }
    const bool bf16 = s->bf16 && attention_reads_bf16(n, len, c, l->n_heads) && linear_takes_bf16(n * len, c, c);
    for (int i = 0; i < 3; i++) {
        a->qkv[i] = tensor_none(), a->qkv16[i] = NULL;
        /* the arena counts floats: two bf16 values each */
        if (bf16) a->qkv16[i] = (uint16_t *)arena_floats(arena, (n * len * c + 1) / 2);
        else a->qkv[i] = tokens(arena, n, len, c);
    }
    a->o = tokens(arena, n, len, c);
    a->lse = tensor_3d(arena_floats(arena, n * (size_t)l->n_heads * len), n, (size_t)l->n_heads, len);
}

void attention_scratch_needs(const LayerState *s, bool backward, size_t need[UNET_N_SCRATCH]) {
    const size_t tokens_floats = s->n * s->in_h * s->in_w * (size_t)s->layer->out_channels;
    unet_scratch_need(need, 0, tokens_floats); /* the normed tokens */
    for (int i = 1; backward && i <= 4; i++) unet_scratch_need(need, i, tokens_floats);
}

/* group_norm(x) in scratch buffer 0, or x itself when the block has no norm. The normed tokens are not
 * kept for backward, which normalises again: one pass over x, for the memory of a whole activation. */
static Tensor normed_tokens(LayerState *s, Tensor x, const UNetScratch *scratch) {
    const UNetLayer *l = s->layer;
    if (l->norm_groups == 0) return x;
    Tensor normed = unet_scratch_view(scratch, 0, 3, x.shape);
    group_norm_forward(normed, s->attn.mean, s->attn.rstd, x, s->p[UNET_ATTN_GROUP_NORM_WEIGHT],
                       s->p[UNET_ATTN_GROUP_NORM_BIAS], l->norm_groups, (float)l->norm_eps);
    return normed;
}

/* The same rounded to bf16 as it is written (scratch buffer 0), for the bf16 projections to read. */
static const uint16_t *normed_tokens_bf16(LayerState *s, Tensor x, const UNetScratch *scratch) {
    const UNetLayer *l = s->layer;
    uint16_t *normed = (uint16_t *)unet_scratch_view(scratch, 0, 3, x.shape).data;
    if (l->norm_groups == 0)
        floats_to_bfloat16(normed, x.data, tensor_numel(x));
    else
        group_norm_forward_bf16(normed, s->attn.mean, s->attn.rstd, x, s->p[UNET_ATTN_GROUP_NORM_WEIGHT],
                                s->p[UNET_ATTN_GROUP_NORM_BIAS], l->norm_groups, (float)l->norm_eps);
    return normed;
}

static Tensor as_tokens(Tensor image) {
    Tensor tokens = tensor_3d(image.data, image.shape[0], image.shape[1] * image.shape[2], image.shape[3]);
    tokens.overwrite = image.overwrite;
    return tokens;
}

static float attention_scale(const UNetLayer *l) { return 1.0f / sqrtf((float)l->head_dim); }

void attention_block_forward(LayerState *s, Tensor in, const UNetScratch *scratch) {
    const UNetLayer *l = s->layer;
    AttentionActs *a = &s->attn;
    const Tensor *p = s->p;
    Tensor x = as_tokens(in), out = as_tokens(s->out);
    if (a->qkv16[0]) {
        const uint16_t *normed = normed_tokens_bf16(s, x, scratch);
        for (int i = 0; i < 3; i++)
            linear_forward_bf16(a->qkv16[i], normed, x.shape[0] * x.shape[1], p[QKV_WEIGHT[i]], p[QKV_BIAS[i]]);
        attention_forward_bf16_qkv(a->o, a->lse, a->qkv16[0], a->qkv16[1], a->qkv16[2], l->n_heads,
                                   attention_scale(l));
    } else {
        Tensor normed = normed_tokens(s, x, scratch);
        for (int i = 0; i < 3; i++) linear_forward(a->qkv[i], normed, p[QKV_WEIGHT[i]], p[QKV_BIAS[i]]);
        attention_forward(a->o, a->lse, a->qkv[0], a->qkv[1], a->qkv[2], l->n_heads, attention_scale(l));
    }
    linear_residual_forward(out, a->o, p[UNET_ATTN_TO_OUT_WEIGHT], p[UNET_ATTN_TO_OUT_BIAS], x,
                            (float)(1.0 / l->output_scale));
}

void attention_block_backward(LayerState *s, Tensor d_in, Tensor dout, Tensor in, const UNetScratch *scratch) {
    const UNetLayer *l = s->layer;
    AttentionActs *a = &s->attn;
    const Tensor *p = s->p, *g = s->g;
    const size_t n = s->n, len = s->in_h * s->in_w, c = (size_t)l->out_channels;
    Tensor x = as_tokens(in), dx = as_tokens(d_in), dy = as_tokens(dout);
    const float inv_scale = (float)(1.0 / l->output_scale);
    /* out = (to_out(o) + x) * inv_scale; dx is written here first (it may arrive marked for overwriting:
     * unet.c), then added to */
    Tensor d_proj = dy;
    if (inv_scale != 1.0f) {
        d_proj = unet_scratch_to_write(scratch, 0, 3, (size_t[]){n, len, c});
        add_scaled_backward(d_proj, tensor_none(), dy, inv_scale);
    }
    add_scaled_backward(dx, tensor_none(), dy, inv_scale);
    dx = tensor_accumulate(dx);
    Tensor d_o = unet_scratch_to_write(scratch, 1, 3, (size_t[]){n, len, c});
    linear_backward(d_o, g[UNET_ATTN_TO_OUT_WEIGHT], g[UNET_ATTN_TO_OUT_BIAS], d_proj, a->o, p[UNET_ATTN_TO_OUT_WEIGHT]);
    Tensor d_qkv[3];
    for (int i = 0; i < 3; i++) d_qkv[i] = unet_scratch_to_write(scratch, 2 + i, 3, (size_t[]){n, len, c});
    if (a->qkv16[0])
        attention_backward_bf16_qkv(d_qkv[0], d_qkv[1], d_qkv[2], d_o, a->qkv16[0], a->qkv16[1], a->qkv16[2], a->o,
                                    a->lse, l->n_heads, attention_scale(l));
    else
        attention_backward(d_qkv[0], d_qkv[1], d_qkv[2], d_o, a->qkv[0], a->qkv[1], a->qkv[2], a->o, a->lse,
                           l->n_heads, attention_scale(l));
    /* q, k, v = to_q(n), to_k(n), to_v(n): their input gradients add up in d_normed (to_q's written); d_proj
     * in scratch 0 is spent, so the normed tokens go there */
    Tensor d_normed = l->norm_groups > 0 ? unet_scratch_to_write(scratch, 1, 3, (size_t[]){n, len, c}) : dx;
    if (a->qkv16[0]) {
        const uint16_t *normed = normed_tokens_bf16(s, x, scratch);
        for (int i = 0; i < 3; i++, d_normed = tensor_accumulate(d_normed))
            linear_backward_bf16_input(d_normed, g[QKV_WEIGHT[i]], g[QKV_BIAS[i]], d_qkv[i], normed, p[QKV_WEIGHT[i]]);
    } else {
        Tensor normed = normed_tokens(s, x, scratch);
        for (int i = 0; i < 3; i++, d_normed = tensor_accumulate(d_normed))
            linear_backward(d_normed, g[QKV_WEIGHT[i]], g[QKV_BIAS[i]], d_qkv[i], normed, p[QKV_WEIGHT[i]]);
    }
    if (l->norm_groups > 0)
        group_norm_backward(dx, g[UNET_ATTN_GROUP_NORM_WEIGHT], g[UNET_ATTN_GROUP_NORM_BIAS], d_normed, x, a->mean,
                            a->rstd, p[UNET_ATTN_GROUP_NORM_WEIGHT], l->norm_groups);
}
