/* Gradient-norm clipping, as torch.nn.utils.clip_grad_norm_ over every parameter (diffusers' example
 * clips at 1.0): norm = ||g||_2 over the whole buffer; when norm > max_norm the gradients are scaled by
 * max_norm / (norm + 1e-6). The norm is a fixed-order double reduction (optim/reduce.h). */
#ifndef DIFFUSE_GRAD_CLIP_H
#define DIFFUSE_GRAD_CLIP_H

#include <stddef.h>

/* Returns the norm before clipping (what training logs as grad_norm). */
double grad_clip_norm(float *grads, size_t n, double max_norm);

#endif
