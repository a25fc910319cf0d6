/* The ops: forward and backward of every layer diffuse's models are built from, in fp32.
 *
 * Dimension legend (shapes are listed in memory order, row-major):
 *   N batch   H, W height, width   C channels (Ci in, Co out)   kH, kW kernel   G norm groups
 *   L tokens (H * W for an image)  nH attention heads   D head size (C = nH * D)   F features   V vocabulary
 * Image activations are channels-last (N, H, W, C); parameters keep PyTorch's layout (core/tensor.h).
 *
 * Conventions every op follows:
 *   - Arguments: outputs, saved-for-backward outputs, inputs, then hyper-parameters. Backward: input
 *     gradients, parameter gradients, dout, then the forward's inputs and saved values.
 *   - Every backward ACCUMULATES (+=) into the gradients it receives; the caller zeroes them once per
 *     step. A gradient passed as tensor_none() is not computed (e.g. dinp of the first layer). A few
 *     take an input gradient marked tensor_overwrite(), whose contents may be anything, and write it
 *     instead, which spares the caller zeroing a buffer that only they write first (a pass over memory
 *     that cost 4 % of fashion-mnist's training step): add_scaled_backward (da), concat_channels_backward
 *     (da, db), conv2d_backward (dinp), linear_backward (dinp), attention_backward (dq, dk, dv),
 *     group_norm_backward and group_norm_silu_backward (dinp, dinp2), shortcut_add_backward (da, db).
 *   - Every op CHECKs the shapes it receives against each other and names the offending argument.
 *   - The heavy ops (conv2d, linear, attention) have a `_reference` twin in plain loops, obviously
 *     correct, against which the fast path is tested. Results do not depend on thread timing.
 *   - No op allocates per call once warmed up: fast paths cache their library primitives and scratch
 *     buffers per shape on first use. Ops are called from one thread at a time (they thread inside).
 */
#ifndef DIFFUSE_OPS_H
#define DIFFUSE_OPS_H

#include "ops/act.h"
#include "ops/attention.h"
#include "ops/conv2d.h"
#include "ops/dropout.h"
#include "ops/elementwise.h"
#include "ops/embed.h"
#include "ops/group_norm.h"
#include "ops/linear.h"
#include "ops/loss.h"
#include "ops/resample.h"

#endif
