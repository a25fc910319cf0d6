/* The training loader (see loader.h). */
#include "data/loader.h"

#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/rng.h"
#include "data/transform.h"

void loader_permutation(size_t *perm, size_t n, uint64_t seed, uint64_t epoch, bool sequential) {
    for (size_t i = 0; i < n; i++) perm[i] = i;
    if (sequential) return;
    uint64_t stream = rng_stream(RNG_PURPOSE_SHUFFLE, epoch, 0);
    for (size_t i = n; i-- > 1;) {
        size_t j = (size_t)rng_below(seed, stream, i, (uint64_t)i + 1);
        size_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
}

bool loader_flips(uint64_t seed, uint64_t epoch, size_t index) {
    return rng_bits(seed, rng_stream(RNG_PURPOSE_FLIP, epoch, 0), index) & 1u;
}

int loader_init(Loader *loader, const Dataset *ds, const LoaderOptions *options, Error *err) {
    *loader = (Loader){0};
    LoaderOptions opt = *options;
    if (opt.world_size == 0) opt.world_size = 1;
    CHECK(ds && ds->count > 0 && ds->pixels, "loader_init: empty data set");
    if (opt.rank >= opt.world_size)
        return error_set(err, "rank %zu is outside a world of %zu ranks", opt.rank, opt.world_size);
    if (opt.batch_size == 0) return error_set(err, "batch size 0: a batch needs at least one image");
    size_t n = ds->count, world = opt.world_size;
    size_t per_rank = opt.drop_last ? n / world : (n + world - 1) / world;
    if (per_rank == 0)
        return error_set(err, "%s: %zu images cannot be shared by %zu ranks with drop_last (each would get none)",
                         ds->source ? ds->source : "data set", n, world);
    *loader = (Loader){.ds = ds, .options = opt, .per_rank = per_rank, .total = per_rank * world};
    loader->order = xmalloc(n * sizeof *loader->order);
    loader_permutation(loader->order, n, opt.seed, 0, opt.sequential);
    return 0;
}

void loader_free(Loader *loader) {
    free(loader->order);
    *loader = (Loader){0};
}

static void order_for_epoch(Loader *loader, uint64_t epoch) {
    if (loader->order_epoch == epoch) return;
    loader_permutation(loader->order, loader->ds->count, loader->options.seed, epoch, loader->options.sequential);
    loader->order_epoch = epoch;
}

size_t loader_index_at(Loader *loader, uint64_t position) {
    uint64_t epoch = position / loader->total, p = position % loader->total;
    order_for_epoch(loader, epoch);
    return loader->order[p % loader->ds->count];
}

size_t loader_samples_per_epoch(const Loader *loader) { return loader->per_rank; }

size_t loader_batches_per_epoch(const Loader *loader) {
    return (loader->per_rank + loader->options.batch_size - 1) / loader->options.batch_size;
}

void loader_next_batch(Loader *loader, float *x, int *labels, uint64_t *positions) {
    const Dataset *ds = loader->ds;
    const LoaderOptions *opt = &loader->options;
    size_t batch = opt->batch_size;
    size_t *index = xmalloc(batch * sizeof *index);
    unsigned char *flip = xmalloc(batch);
    for (size_t j = 0; j < batch; j++) {
        if (loader->next == loader->per_rank) {
            loader->epoch++;
            loader->next = 0;
        }
        order_for_epoch(loader, loader->epoch);
        size_t p = opt->rank + loader->next * opt->world_size;
        index[j] = loader->order[p % ds->count];
        flip[j] = opt->random_flip && loader_flips(opt->seed, loader->epoch, index[j]);
        if (labels) labels[j] = ds->labels ? ds->labels[index[j]] : -1;
        if (positions) positions[j] = loader->epoch * loader->total + p;
        loader->next++;
    }
    /* One thread: a batch is a fraction of a millisecond of memory traffic, less than a parallel region's
     * wake-up costs on a busy machine, and nothing next to the training step it feeds. */
    size_t image_elems = dataset_image_bytes(ds);
    for (size_t j = 0; j < batch; j++)
        transform_image_to_float(x + j * image_elems, dataset_image(ds, index[j]), ds->height, ds->width,
                                 ds->channels, flip[j]);
    free(index);
    free(flip);
}

LoaderCursor loader_cursor(const Loader *loader) {
    if (loader->next == loader->per_rank) return (LoaderCursor){.epoch = loader->epoch + 1, .position = 0};
    return (LoaderCursor){.epoch = loader->epoch, .position = (uint64_t)loader->next * loader->options.world_size};
}

int loader_set_cursor(Loader *loader, LoaderCursor cursor, Error *err) {
    size_t world = loader->options.world_size;
    if (cursor.position % world || cursor.position > loader->total)
        return error_set(err, "data cursor (epoch %llu, position %llu) does not fit this loader: %zu ranks, %zu "
                         "positions per epoch (saved with another data set or world size?)",
                         (unsigned long long)cursor.epoch, (unsigned long long)cursor.position, world, loader->total);
    loader->epoch = cursor.epoch;
    loader->next = (size_t)(cursor.position / world);
    return 0;
}
