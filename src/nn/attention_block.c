/* diffusers' self-attention block (Attention with AttnProcessor2_0, residual_connection=True, as built by
 * AttnDownBlock2D / AttnUpBlock2D / UNetMidBlock2D), forward and backward. A channels-last image
 * (N, H, W, C) already is the token sequence (N, L = H*W, C) the block works on:
 *   n = group_norm(x)  (when the block has one);  q, k, v = to_q(n), to_k(n), to_v(n)
 *   o = softmax(q k^T / sqrt(D)) v per head;     out = (to_out(o) + x) / rescale_output_factor */
#include <math.h>

#include "core/check.h"
#include "nn/unet_layers.h"
#include "ops/ops.h"

static Tensor tokens(Arena *arena, size_t n, size_t l, size_t c) {
    return tensor_3d(arena_floats(arena, n * l * c), n, l, c);
}

void attention_plan(LayerState *s, Arena *arena) {
    const UNetLayer *l = s->layer;
    AttentionActs *a = &s->attn;
    size_t n = s->n, len = s->in_h * s->in_w, c = (size_t)l->out_channels;
    if (l->norm_groups > 0) {
        a->mean = tensor_2d(arena_floats(arena, n * (size_t)l->norm_groups), n, (size_t)l->norm_groups);
        a->rstd = tensor_2d(arena_floats(arena, n * (size_t)l->norm_groups), n, (size_t)l->norm_groups);
    }
    a->q = a->k = a->v = tensor_none();
    a->q16 = a->k16 = a->v16 = NULL;
    if (s->bf16 && attention_reads_bf16(n, len, c, l->n_heads) && linear_writes_bf16(n * len, c, c)) {
        /* the arena counts floats: two bf16 values each */
        a->q16 = (uint16_t *)arena_floats(arena, (n * len * c + 1) / 2);
        a->k16 = (uint16_t *)arena_floats(arena, (n * len * c + 1) / 2);
        a->v16 = (uint16_t *)arena_floats(arena, (n * len * c + 1) / 2);
    } else {
        a->q = tokens(arena, n, len, c);
        a->k = tokens(arena, n, len, c);
        a->v = tokens(arena, n, len, c);
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

static Tensor as_tokens(Tensor image) {
    return tensor_3d(image.data, image.shape[0], image.shape[1] * image.shape[2], image.shape[3]);
}

static float attention_scale(const UNetLayer *l) { return 1.0f / sqrtf((float)l->head_dim); }

void attention_block_forward(LayerState *s, Tensor in, const UNetScratch *scratch) {
    const UNetLayer *l = s->layer;
    AttentionActs *a = &s->attn;
    const Tensor *p = s->p;
    Tensor x = as_tokens(in), out = as_tokens(s->out);
    Tensor normed = normed_tokens(s, x, scratch);
    if (a->q16) {
        linear_forward_to_bf16(a->q16, normed, p[UNET_ATTN_TO_Q_WEIGHT], p[UNET_ATTN_TO_Q_BIAS]);
        linear_forward_to_bf16(a->k16, normed, p[UNET_ATTN_TO_K_WEIGHT], p[UNET_ATTN_TO_K_BIAS]);
        linear_forward_to_bf16(a->v16, normed, p[UNET_ATTN_TO_V_WEIGHT], p[UNET_ATTN_TO_V_BIAS]);
        attention_forward_bf16_qkv(a->o, a->lse, a->q16, a->k16, a->v16, l->n_heads, attention_scale(l));
    } else {
        linear_forward(a->q, normed, p[UNET_ATTN_TO_Q_WEIGHT], p[UNET_ATTN_TO_Q_BIAS]);
        linear_forward(a->k, normed, p[UNET_ATTN_TO_K_WEIGHT], p[UNET_ATTN_TO_K_BIAS]);
        linear_forward(a->v, normed, p[UNET_ATTN_TO_V_WEIGHT], p[UNET_ATTN_TO_V_BIAS]);
        attention_forward(a->o, a->lse, a->q, a->k, a->v, l->n_heads, attention_scale(l));
    }
    linear_forward(out, a->o, p[UNET_ATTN_TO_OUT_WEIGHT], p[UNET_ATTN_TO_OUT_BIAS]);
    add_scaled_forward(out, out, x, (float)(1.0 / l->output_scale));
}

void attention_block_backward(LayerState *s, Tensor d_in, Tensor dout, Tensor in, const UNetScratch *scratch) {
    const UNetLayer *l = s->layer;
    AttentionActs *a = &s->attn;
    const Tensor *p = s->p, *g = s->g;
    const size_t n = s->n, len = s->in_h * s->in_w, c = (size_t)l->out_channels;
    Tensor x = as_tokens(in), dx = as_tokens(d_in), dy = as_tokens(dout);
    const float inv_scale = (float)(1.0 / l->output_scale);
    /* out = (to_out(o) + x) * inv_scale */
    Tensor d_proj = dy;
    if (inv_scale != 1.0f) {
        d_proj = unet_scratch_zeroed(scratch, 0, 3, (size_t[]){n, len, c});
        add_scaled_backward(d_proj, tensor_none(), dy, inv_scale);
    }
    add_scaled_backward(dx, tensor_none(), dy, inv_scale);
    Tensor d_o = unet_scratch_zeroed(scratch, 1, 3, (size_t[]){n, len, c});
    linear_backward(d_o, g[UNET_ATTN_TO_OUT_WEIGHT], g[UNET_ATTN_TO_OUT_BIAS], d_proj, a->o, p[UNET_ATTN_TO_OUT_WEIGHT]);
    Tensor dq = unet_scratch_zeroed(scratch, 2, 3, (size_t[]){n, len, c});
    Tensor dk = unet_scratch_zeroed(scratch, 3, 3, (size_t[]){n, len, c});
    Tensor dv = unet_scratch_zeroed(scratch, 4, 3, (size_t[]){n, len, c});
    if (a->q16)
        attention_backward_bf16_qkv(dq, dk, dv, d_o, a->q16, a->k16, a->v16, a->o, a->lse, l->n_heads,
                                    attention_scale(l));
    else
        attention_backward(dq, dk, dv, d_o, a->q, a->k, a->v, a->o, a->lse, l->n_heads, attention_scale(l));
    /* q, k, v = to_q(n), to_k(n), to_v(n): their input gradients add up in d_normed; d_proj in scratch 0
     * is spent, so the normed tokens go there */
    Tensor normed = normed_tokens(s, x, scratch);
    Tensor d_normed = l->norm_groups > 0 ? unet_scratch_zeroed(scratch, 1, 3, (size_t[]){n, len, c}) : dx;
    linear_backward(d_normed, g[UNET_ATTN_TO_Q_WEIGHT], g[UNET_ATTN_TO_Q_BIAS], dq, normed, p[UNET_ATTN_TO_Q_WEIGHT]);
    linear_backward(d_normed, g[UNET_ATTN_TO_K_WEIGHT], g[UNET_ATTN_TO_K_BIAS], dk, normed, p[UNET_ATTN_TO_K_WEIGHT]);
    linear_backward(d_normed, g[UNET_ATTN_TO_V_WEIGHT], g[UNET_ATTN_TO_V_BIAS], dv, normed, p[UNET_ATTN_TO_V_WEIGHT]);
    if (l->norm_groups > 0)
        group_norm_backward(dx, g[UNET_ATTN_GROUP_NORM_WEIGHT], g[UNET_ATTN_GROUP_NORM_BIAS], d_normed, x, a->mean,
                            a->rstd, p[UNET_ATTN_GROUP_NORM_WEIGHT], l->norm_groups);
}
