/* diffusers' ResnetBlock2D (models/resnet.py), forward and backward, on channels-last activations:
 *   x = concat(h, skip)                     (up blocks; read, and their gradients written, where they lie)
 *   a1 = silu(norm1(x));  a1, x = resample(a1), resample(x)     ("resnet" up/down sampling only)
 *   c1 = conv1(a1)
 *   default:      n = norm2(c1 + time_emb_proj(silu(emb)))    (the sum fused into the norm, never stored)
 *   scale_shift:  n = norm2(c1) * (1 + scale) + shift, (scale, shift) = time_emb_proj(silu(emb))
 *   a2 = dropout(silu(n));  out = (shortcut(x) + conv2(a2)) / output_scale_factor
 * shortcut is a 1x1 conv when the channel count changes, else the identity. A norm straight before a SiLU
 * runs fused with it (norm1 always, norm2 in "default" mode). Backward runs the same ops in reverse; the
 * scratch buffer each gradient uses is noted beside it (see unet_layers.h). */
#include <string.h>

#include "core/check.h"
#include "core/rng.h"
#include "nn/unet_layers.h"
#include "ops/ops.h"
#include "ops/shortcut_add.h"

static Tensor act4(Arena *arena, size_t n, size_t h, size_t w, size_t c) {
    return tensor_4d(arena_floats(arena, n * h * w * c), n, h, w, c);
}

static Tensor act2(Arena *arena, size_t n, size_t c) { return tensor_2d(arena_floats(arena, n * c), n, c); }

void resnet_plan(LayerState *s, Arena *arena) {
    const UNetLayer *l = s->layer;
    ResnetActs *a = &s->resnet;
    size_t n = s->n, c_in = (size_t)(l->in_channels + l->skip_channels), c_out = (size_t)l->out_channels;
    size_t groups = (size_t)l->norm_groups;
    bool scale_shift = l->time_scale_shift == UNET_TIME_SCALE_SHIFT_SCALE_SHIFT;
    a->mean1 = act2(arena, n, groups);
    a->rstd1 = act2(arena, n, groups);
    const bool resample = l->resample != UNET_RESNET_RESAMPLE_NONE;
    conv_input_plan(&a->a1, arena, s->bf16 && !resample, n, s->in_h, s->in_w, c_in);
    if (resample) {
        conv_input_plan(&a->a1r, arena, false, n, s->out_h, s->out_w, c_in);
        a->xr = act4(arena, n, s->out_h, s->out_w, c_in);
    } else {
        a->a1r = a->a1;
    }
    a->c1 = act4(arena, n, s->out_h, s->out_w, c_out);
    a->temb = act2(arena, n, scale_shift ? 2 * c_out : c_out);
    a->mean2 = act2(arena, n, groups);
    a->rstd2 = act2(arena, n, groups);
    if (scale_shift) {
        a->n2 = act4(arena, n, s->out_h, s->out_w, c_out);
        a->n2s = act4(arena, n, s->out_h, s->out_w, c_out);
    }
    /* dropout and the scale_shift modulation work on the fp32 values */
    conv_input_plan(&a->a2, arena, s->bf16 && l->dropout == 0 && !scale_shift, n, s->out_h, s->out_w, c_out);
}

void resnet_scratch_needs(const LayerState *s, bool backward, size_t need[UNET_N_SCRATCH]) {
    const UNetLayer *l = s->layer;
    const size_t n = s->n, c_in = (size_t)(l->in_channels + l->skip_channels), c_out = (size_t)l->out_channels;
    const size_t in_image = n * s->in_h * s->in_w * c_in, out_positions = n * s->out_h * s->out_w;
    const bool resample = l->resample != UNET_RESNET_RESAMPLE_NONE;
    const bool scale_shift = l->time_scale_shift == UNET_TIME_SCALE_SHIFT_SCALE_SHIFT;
    /* forward: 0 the shortcut conv's output, the scale and shift halves; 6 x_cat (also in backward) */
    unet_scratch_need(need, 0, out_positions * c_out);
    unet_scratch_need(need, 0, 2 * n * c_out);
    if (l->skip_channels > 0) unet_scratch_need(need, 6, in_image);
    if (!backward) return;
    unet_scratch_need(need, 0, 6 * n * c_out); /* d_temb, scale_shift staging */
    unet_scratch_need(need, 1, out_positions * (c_in > c_out ? c_in : c_out));
    if (scale_shift) unet_scratch_need(need, 2, out_positions * c_out);
    if (resample) unet_scratch_need(need, 2, in_image);
    unet_scratch_need(need, 3, out_positions * c_out);
    if (resample) unet_scratch_need(need, 4, out_positions * c_in);
    if (l->skip_channels > 0) unet_scratch_need(need, 5, in_image);
}

/* x_cat = concat(in, skip) in scratch buffer 6, or `in` itself without a skip. Forward forms it only to
 * resample it or for a shortcut that shortcut_add does not serve (norm1 and shortcut_add read in and skip
 * where they lie); backward likewise, where shortcut_add_backward does not serve (both halves are saved
 * anyway, the previous layer's output and the skip). Without the concatenation and the split of its
 * gradient, fashion-mnist's training step ran 2.2 % faster (12 pairs). */
static Tensor concat_input(const LayerState *s, Tensor in, Tensor skip, const UNetScratch *scratch) {
    if (s->layer->skip_channels == 0) return in;
    Tensor x_cat = unet_scratch_view(scratch, 6, 4,
                                     (size_t[]){s->n, s->in_h, s->in_w, in.shape[3] + skip.shape[3]});
    concat_channels_forward(x_cat, in, skip);
    return x_cat;
}

/* Columns [first, first + C) of a (N, 2C) tensor: the scale or shift half of the time projection,
 * copied out because the ops take contiguous (N, C) tensors. */
static void split_halves(Tensor both, Tensor scale, Tensor shift) {
    size_t n = both.shape[0], c = both.shape[1] / 2;
    for (size_t i = 0; i < n; i++) {
        memcpy(scale.data + i * c, both.data + i * 2 * c, c * sizeof(float));
        memcpy(shift.data + i * c, both.data + i * 2 * c + c, c * sizeof(float));
    }
}

static void merge_halves(Tensor both, Tensor dscale, Tensor dshift) {
    size_t n = both.shape[0], c = both.shape[1] / 2;
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < c; j++) {
            both.data[i * 2 * c + j] += dscale.data[i * c + j];
            both.data[i * 2 * c + c + j] += dshift.data[i * c + j];
        }
}

/* Dropout of each sample with its own key range, so masks follow samples rather than batch positions.
 * In place (out == inp). Applied to a gradient it is dropout's backward: the same mask and scale. */
static void dropout_per_sample(Tensor out, Tensor inp, double p, const UNetDropoutKeys *keys, uint64_t layer_index) {
    size_t n = inp.shape[0], per_sample = tensor_numel(inp) / n;
    for (size_t i = 0; i < n; i++) {
        DropoutParams dp = {.p = (float)p, .seed = keys->seed,
                            .stream = rng_stream(RNG_PURPOSE_DROPOUT, keys->step, layer_index),
                            .first_index = keys->sample_ids[i] * per_sample};
        dropout_forward(tensor_1d(out.data + i * per_sample, per_sample), tensor_1d(inp.data + i * per_sample, per_sample),
                        dp);
    }
}

static bool dropout_on(const UNetLayer *l, const UNetDropoutKeys *keys) {
    return l->dropout > 0 && keys && keys->active;
}

static void resample_forward(UNetResnetResample r, Tensor out, Tensor inp) {
    if (r == UNET_RESNET_RESAMPLE_DOWN) avg_pool2x_forward(out, inp);
    else upsample_nearest2x_forward(out, inp);
}

static void resample_backward(UNetResnetResample r, Tensor dinp, Tensor dout) {
    if (r == UNET_RESNET_RESAMPLE_DOWN) avg_pool2x_backward(dinp, dout);
    else upsample_nearest2x_backward(dinp, dout);
}

/* The scale and shift halves of a scale_shift time projection, in scratch buffer i. */
static void scale_shift_halves(const LayerState *s, const UNetScratch *scratch, int i, Tensor *scale, Tensor *shift) {
    size_t n = s->n, c = (size_t)s->layer->out_channels;
    CHECK(2 * n * c <= scratch->n_floats[i], "scratch too small for the time projection");
    *scale = tensor_2d(scratch->buf[i], n, c);
    *shift = tensor_2d(scratch->buf[i] + n * c, n, c);
    split_halves(s->resnet.temb, *scale, *shift);
}

void resnet_forward(LayerState *s, Tensor in, Tensor skip, Tensor silu_emb, const UNetScratch *scratch,
                    const UNetDropoutKeys *keys, uint64_t layer_index) {
    const UNetLayer *l = s->layer;
    ResnetActs *a = &s->resnet;
    const Tensor *p = s->p;
    conv_input_norm_silu(&a->a1, a->mean1, a->rstd1, in, skip, tensor_none(), p[UNET_RESNET_NORM1_WEIGHT],
                         p[UNET_RESNET_NORM1_BIAS], l->norm_groups, (float)l->norm_eps);
    const bool resample = l->resample != UNET_RESNET_RESAMPLE_NONE;
    if (resample) {
        resample_forward(l->resample, a->a1r.f32, a->a1.f32);
        resample_forward(l->resample, a->xr, concat_input(s, in, skip, scratch));
    }
    conv_input_forward(a->c1, &a->a1r, p[UNET_RESNET_CONV1_WEIGHT], p[UNET_RESNET_CONV1_BIAS], conv2d_params(1, 1));
    linear_forward(a->temb, silu_emb, p[UNET_RESNET_TIME_EMB_PROJ_WEIGHT], p[UNET_RESNET_TIME_EMB_PROJ_BIAS]);
    if (l->time_scale_shift == UNET_TIME_SCALE_SHIFT_DEFAULT) {
        /* a2 = silu(norm2(c1 + temb)), the sum never formed: c1 keeps conv1's output */
        conv_input_norm_silu(&a->a2, a->mean2, a->rstd2, a->c1, tensor_none(), a->temb, p[UNET_RESNET_NORM2_WEIGHT],
                             p[UNET_RESNET_NORM2_BIAS], l->norm_groups, (float)l->norm_eps);
    } else {
        group_norm_forward(a->n2, a->mean2, a->rstd2, a->c1, p[UNET_RESNET_NORM2_WEIGHT], p[UNET_RESNET_NORM2_BIAS],
                           l->norm_groups, (float)l->norm_eps);
        Tensor scale, shift;
        scale_shift_halves(s, scratch, 0, &scale, &shift);
        scale_shift_forward(a->n2s, a->n2, scale, shift);
        silu_forward(a->a2.f32, a->n2s);
    }
    if (dropout_on(l, keys)) dropout_per_sample(a->a2.f32, a->a2.f32, l->dropout, keys, layer_index);
    conv_input_forward(s->out, &a->a2, p[UNET_RESNET_CONV2_WEIGHT], p[UNET_RESNET_CONV2_BIAS], conv2d_params(1, 1));
    /* out = (shortcut(x) + out) / output_scale, x = xr or concat(in, skip): in one pass where it serves */
    const Tensor weight = p[UNET_RESNET_SHORTCUT_WEIGHT], bias = p[UNET_RESNET_SHORTCUT_BIAS];
    const float inv_scale = (float)(1.0 / l->output_scale);
    const Tensor x_a = resample ? a->xr : in, x_b = resample ? tensor_none() : skip;
    if (shortcut_add_fused(x_a.shape[3], tensor_is_none(x_b) ? 0 : x_b.shape[3], (size_t)l->out_channels,
                           !tensor_is_none(weight))) {
        shortcut_add_forward(s->out, x_a, x_b, weight, bias, inv_scale);
        return;
    }
    Tensor shortcut = resample ? a->xr : concat_input(s, in, skip, scratch);
    if (!tensor_is_none(weight)) {
        Tensor x = shortcut;
        shortcut = tensor_4d(scratch->buf[0], s->n, s->out_h, s->out_w, (size_t)l->out_channels);
        conv2d_forward(shortcut, x, weight, bias, conv2d_params(1, 0));
    }
    add_scaled_forward(s->out, shortcut, s->out, inv_scale);
}

/* d_in's first writer: with a skip, the concatenation's backward (its only writer); else, without
 * resampling, the shortcut's; both can write rather than add. */
bool resnet_writes_d_in(const LayerState *s) {
    return s->layer->skip_channels > 0 || s->layer->resample == UNET_RESNET_RESAMPLE_NONE;
}

void resnet_backward(LayerState *s, Tensor d_in, Tensor d_skip, Tensor d_silu_emb, Tensor dout, Tensor in, Tensor skip,
                     Tensor silu_emb, const UNetScratch *scratch, const UNetDropoutKeys *keys, uint64_t layer_index) {
    const UNetLayer *l = s->layer;
    ResnetActs *a = &s->resnet;
    const Tensor *p = s->p, *g = s->g;
    const size_t n = s->n, c_in = (size_t)(l->in_channels + l->skip_channels), c_out = (size_t)l->out_channels;
    const size_t ih = s->in_h, iw = s->in_w, oh = s->out_h, ow = s->out_w;
    const float inv_scale = (float)(1.0 / l->output_scale);
    const bool resample = l->resample != UNET_RESNET_RESAMPLE_NONE;
    /* Scratch use: 0 dout / scale, then dropout and scale_shift staging; 1, 2, 3 rotating gradients;
     * 4 d(resampled x); 5 d(x_cat) and 6 x_cat when there is a skip, unless the shortcut and norm1 take
     * in and skip and their gradients where they lie (two_parts). */
    const Tensor shortcut_weight = p[UNET_RESNET_SHORTCUT_WEIGHT];
    const bool two_parts = l->skip_channels > 0 && !resample &&
                           shortcut_add_backward_fused(in.shape[3], skip.shape[3], c_out,
                                                       !tensor_is_none(shortcut_weight));
    Tensor x_cat = two_parts ? tensor_none() : concat_input(s, in, skip, scratch);
    Tensor xr = resample ? a->xr : x_cat;
    /* d(x_cat) gets the shortcut's gradient written, then norm1's added (with resampling, the shortcut
     * writes d(xr), which resample_backward adds in) */
    Tensor dx_cat = l->skip_channels == 0 ? d_in
                    : resample            ? SCRATCH4(scratch, 5, n, ih, iw, c_in)
                                          : SCRATCH4_TO_WRITE(scratch, 5, n, ih, iw, c_in);
    CHECK(!dx_cat.overwrite || !resample, "resnet_backward: d_in cannot be overwritten with resampling");
    Tensor dxr = resample ? SCRATCH4_TO_WRITE(scratch, 4, n, oh, ow, c_in) : dx_cat;

    /* out = (shortcut(xr) + conv2(a2)) * inv_scale */
    Tensor d_branch = dout;
    if (inv_scale != 1.0f) {
        d_branch = SCRATCH4(scratch, 0, n, oh, ow, c_out);
        add_scaled_backward(d_branch, tensor_none(), dout, inv_scale);
    }
    if (two_parts)
        shortcut_add_backward(d_in, d_skip, g[UNET_RESNET_SHORTCUT_WEIGHT], g[UNET_RESNET_SHORTCUT_BIAS], d_branch, in,
                              skip, shortcut_weight);
    else if (tensor_is_none(shortcut_weight))
        add_scaled_backward(dxr, tensor_none(), d_branch, 1.0f);
    else
        conv2d_backward(dxr, g[UNET_RESNET_SHORTCUT_WEIGHT], g[UNET_RESNET_SHORTCUT_BIAS], d_branch, xr,
                        shortcut_weight, conv2d_params(1, 0));
    dxr = tensor_accumulate(dxr), dx_cat = tensor_accumulate(dx_cat);
    Tensor d_a2 = SCRATCH4_TO_WRITE(scratch, 1, n, oh, ow, c_out);
    conv_input_backward(d_a2, g[UNET_RESNET_CONV2_WEIGHT], g[UNET_RESNET_CONV2_BIAS], d_branch, &a->a2,
                    p[UNET_RESNET_CONV2_WEIGHT], conv2d_params(1, 1));
    /* a2 = dropout(silu(norm2(c1))), or dropout(silu(n2s)) in scale_shift mode */
    if (dropout_on(l, keys)) dropout_per_sample(d_a2, d_a2, l->dropout, keys, layer_index);
    bool scale_shift = l->time_scale_shift == UNET_TIME_SCALE_SHIFT_SCALE_SHIFT;
    Tensor d_temb = SCRATCH2(scratch, 0, n, a->temb.shape[1]); /* scratch 0 is free again */
    Tensor d_c1 = SCRATCH4_TO_WRITE(scratch, 3, n, oh, ow, c_out); /* norm2's backward writes it */
    if (!scale_shift) {
        group_norm_silu_backward(d_c1, tensor_none(), g[UNET_RESNET_NORM2_WEIGHT], g[UNET_RESNET_NORM2_BIAS], d_a2,
                                 a->c1, tensor_none(), a->temb, a->mean2, a->rstd2, p[UNET_RESNET_NORM2_WEIGHT],
                                 p[UNET_RESNET_NORM2_BIAS], l->norm_groups);
        /* norm2's input is c1 + temb */
        add_channel_backward(tensor_none(), d_temb, d_c1);
    } else {
        Tensor d_pre_act = SCRATCH4(scratch, 2, n, oh, ow, c_out);
        silu_backward(d_pre_act, d_a2, a->n2s);
        /* n2s = n2 * (1 + scale) + shift: staged halves after d_temb in scratch 0 */
        Tensor scale = tensor_2d(scratch->buf[0] + 2 * n * c_out, n, c_out);
        Tensor shift = tensor_2d(scratch->buf[0] + 3 * n * c_out, n, c_out);
        Tensor dscale = tensor_2d(scratch->buf[0] + 4 * n * c_out, n, c_out);
        Tensor dshift = tensor_2d(scratch->buf[0] + 5 * n * c_out, n, c_out);
        CHECK(6 * n * c_out <= scratch->n_floats[0], "scratch too small for scale_shift");
        split_halves(a->temb, scale, shift);
        tensor_zero(dscale);
        tensor_zero(dshift);
        Tensor d_n2 = SCRATCH4(scratch, 1, n, oh, ow, c_out); /* d_a2 is spent */
        scale_shift_backward(d_n2, dscale, dshift, d_pre_act, a->n2, scale);
        merge_halves(d_temb, dscale, dshift);
        /* n2 = norm2(c1) */
        group_norm_backward(d_c1, g[UNET_RESNET_NORM2_WEIGHT], g[UNET_RESNET_NORM2_BIAS], d_n2, a->c1, a->mean2,
                            a->rstd2, p[UNET_RESNET_NORM2_WEIGHT], l->norm_groups);
    }
    /* temb = time_emb_proj(silu_emb) */
    linear_backward(d_silu_emb, g[UNET_RESNET_TIME_EMB_PROJ_WEIGHT], g[UNET_RESNET_TIME_EMB_PROJ_BIAS], d_temb, silu_emb,
                    p[UNET_RESNET_TIME_EMB_PROJ_WEIGHT]);
    /* c1 = conv1(a1r); conv1's bias gradient, d_c1 summed over samples and positions, from d_temb, which
     * already holds d_c1 summed over positions (default mode), rather than another pass over d_c1 */
    Tensor d_a1r = SCRATCH4_TO_WRITE(scratch, 1, n, oh, ow, c_in);
    conv_input_backward(d_a1r, g[UNET_RESNET_CONV1_WEIGHT], scale_shift ? g[UNET_RESNET_CONV1_BIAS] : tensor_none(),
                        d_c1, &a->a1r, p[UNET_RESNET_CONV1_WEIGHT], conv2d_params(1, 1));
    if (!scale_shift && !tensor_is_none(g[UNET_RESNET_CONV1_BIAS]))
        linear_bias_backward(g[UNET_RESNET_CONV1_BIAS], d_temb);
    /* a1r, xr = resample(a1), resample(x_cat) */
    Tensor d_a1 = d_a1r;
    if (resample) {
        d_a1 = SCRATCH4(scratch, 2, n, ih, iw, c_in);
        resample_backward(l->resample, d_a1, d_a1r);
        resample_backward(l->resample, dx_cat, dxr);
    }
    /* a1 = silu(norm1(x_cat)) */
    const Tensor norm1_weight = p[UNET_RESNET_NORM1_WEIGHT], norm1_bias = p[UNET_RESNET_NORM1_BIAS];
    if (two_parts) {
        group_norm_silu_backward(tensor_accumulate(d_in), tensor_accumulate(d_skip), g[UNET_RESNET_NORM1_WEIGHT],
                                 g[UNET_RESNET_NORM1_BIAS], d_a1, in, skip, tensor_none(), a->mean1, a->rstd1,
                                 norm1_weight, norm1_bias, l->norm_groups);
        return;
    }
    group_norm_silu_backward(dx_cat, tensor_none(), g[UNET_RESNET_NORM1_WEIGHT], g[UNET_RESNET_NORM1_BIAS], d_a1, x_cat,
                             tensor_none(), tensor_none(), a->mean1, a->rstd1, norm1_weight, norm1_bias,
                             l->norm_groups);
    /* x_cat = concat(in, skip) */
    if (l->skip_channels > 0) concat_channels_backward(d_in, d_skip, dx_cat);
}
