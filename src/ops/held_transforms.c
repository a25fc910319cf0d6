#include "ops/held_transforms.h"

#include <stdlib.h>

#include "core/alloc.h"

void *held_transform_find(const HeldTransforms *h, const float *weight, size_t ci, size_t co) {
    for (size_t i = 0; i < h->n; i++)
        if (h->items[i].weight == weight && h->items[i].ci == ci && h->items[i].co == co) return h->items[i].data;
    return NULL;
}

void *held_transform_add(HeldTransforms *h, const float *weight, size_t ci, size_t co, size_t bytes) {
    if (h->n == h->capacity) {
        h->capacity = h->capacity ? 2 * h->capacity : 64;
        h->items = xrealloc(h->items, h->capacity * sizeof *h->items);
    }
    void *data = alloc_aligned(bytes);
    h->items[h->n++] = (HeldTransform){.weight = weight, .ci = ci, .co = co, .data = data};
    h->bytes += bytes;
    return data;
}

void held_transforms_free(HeldTransforms *h) {
    for (size_t i = 0; i < h->n; i++) alloc_free(h->items[i].data);
    free(h->items);
    *h = (HeldTransforms){0};
}
