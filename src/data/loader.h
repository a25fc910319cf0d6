/* The training loader: which images each rank sees at each step, in what order, flipped or not, as
 * float batches in [-1, 1].
 *
 * Order follows PyTorch's DistributedSampler (torch/utils/data/distributed.py) so a multi-rank run sees
 * the same samples as a single-process run with the same global batch:
 *   - every epoch a permutation of the N images, from (seed, epoch) only (Fisher-Yates with the
 *     counter-based RNG, so it is the same for any world size and on resume);
 *   - the permutation is wrapped around to T = world * ceil(N / world) entries (drop_last off: the first
 *     T - N samples appear twice) or cut to T = world * floor(N / world) (drop_last on);
 *   - rank r takes positions r, r + world, r + 2 world, ... of it: T / world samples per epoch.
 * Batches are per rank and always full: when a rank's share of an epoch ends inside a batch, the batch
 * goes on with the next epoch's share. (diffusers' DataLoader instead ends each epoch with a short batch.)
 * Full batches keep the step's shape fixed (activation memory is planned for one batch size), weigh every
 * step the same, and keep data parallelism exact: at every step the ranks of a world-W run together take
 * exactly the global positions a single process with batch W x B takes, epoch crossings included.
 *
 * A sample's global position g = epoch * T + p (p its position in the wrapped permutation) is unique in
 * the run and the same for any world size (when N is divisible by it): the key for per-sample noise.
 * A random flip is decided by (seed, epoch, image index), so it does not depend on the batch split either.
 * The cursor (epoch, position) is what a checkpoint saves; position counts the global positions already
 * taken in the epoch, so resuming with the same or a dividing world size continues exactly. */
#ifndef DIFFUSE_DATA_LOADER_H
#define DIFFUSE_DATA_LOADER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "data/dataset.h"

typedef struct LoaderOptions {
    uint64_t seed;
    size_t rank, world_size; /* world_size 0 means 1 */
    size_t batch_size;       /* per rank */
    bool drop_last;          /* DistributedSampler's: cut to a multiple of world_size instead of wrapping */
    bool sequential;         /* no shuffling: the identity permutation every epoch */
    bool random_flip;        /* mirror each sample with probability 1/2 */
} LoaderOptions;

typedef struct LoaderCursor {
    uint64_t epoch;
    uint64_t position; /* global positions of the epoch already taken (a multiple of world_size) */
} LoaderCursor;

typedef struct Loader {
    const Dataset *ds;
    LoaderOptions options;
    size_t per_rank;    /* samples per rank per epoch: T / world */
    size_t total;       /* T */
    uint64_t epoch;     /* of the next sample */
    size_t next;        /* index of the next sample in this rank's share of the epoch */
    size_t *order;      /* the permutation of `order_epoch` */
    uint64_t order_epoch;
} Loader;

/* The loader reads from ds, which must outlive it. Errors: rank outside the world, batch size 0, or
 * fewer images than ranks with drop_last. */
int loader_init(Loader *loader, const Dataset *ds, const LoaderOptions *options, Error *err);
void loader_free(Loader *loader);

/* Fills the next batch: x (batch_size, H, W, C) in [-1, 1]; labels (batch_size) the class labels or -1
 * when the data set has none; positions (batch_size) the global positions (see above). labels and
 * positions may be NULL. */
void loader_next_batch(Loader *loader, float *x, int *labels, uint64_t *positions);

/* The image index at a global position (the inverse of what next_batch reports). */
size_t loader_index_at(Loader *loader, uint64_t position);

/* Samples per rank per epoch, and batches per epoch rounded up. */
size_t loader_samples_per_epoch(const Loader *loader);
size_t loader_batches_per_epoch(const Loader *loader);

LoaderCursor loader_cursor(const Loader *loader);
/* Continues from a saved cursor. An error when its position is not a multiple of this world size or
 * lies past the epoch (a checkpoint from another data set or world size). */
int loader_set_cursor(Loader *loader, LoaderCursor cursor, Error *err);

/* perm (n) = the permutation of epoch `epoch` for `seed` (identity when sequential). */
void loader_permutation(size_t *perm, size_t n, uint64_t seed, uint64_t epoch, bool sequential);

/* Whether image `index` is flipped in `epoch` (when random_flip is on). */
bool loader_flips(uint64_t seed, uint64_t epoch, size_t index);

#endif
