/* Weights kept transformed while weights are held (conv2d_hold_weights): sampling runs the same weights
 * step after step, so a Winograd kernel transforms each weight tensor once, by its address and shape. */
#ifndef DIFFUSE_OPS_HELD_TRANSFORMS_H
#define DIFFUSE_OPS_HELD_TRANSFORMS_H

#include <stddef.h>

typedef struct HeldTransform {
    const float *weight;
    size_t ci, co;
    void *data;
} HeldTransform;

typedef struct HeldTransforms {
    HeldTransform *items;
    size_t n, capacity, bytes; /* bytes: all items' data together */
} HeldTransforms;

/* The data held for weight (ci -> co), or NULL. */
void *held_transform_find(const HeldTransforms *h, const float *weight, size_t ci, size_t co);
/* A new item of `bytes` (64-byte aligned, to be filled by the caller) for weight (ci -> co). */
void *held_transform_add(HeldTransforms *h, const float *weight, size_t ci, size_t co, size_t bytes);
/* Frees every item. */
void held_transforms_free(HeldTransforms *h);

#endif
