/* The loader: DistributedSampler's partition (every sample once per epoch over the ranks, padding or
 * dropping the tail), per-epoch shuffles from the seed, full batches across epoch boundaries, a world of
 * W ranks taking exactly the samples of one process with W times the batch, exact resume from a cursor,
 * and random flips that are fair, correct and independent of the batch split. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "data/dataset.h"
#include "data/loader.h"
#include "data/transform.h"
#include "harness.h"

/* n images of h x w x c whose first byte is the index (mod 256) and whose rows are left-right
 * asymmetric, labelled i % 7 when labelled. */
static void make_dataset(Dataset *ds, size_t n, size_t h, size_t w, size_t c, bool labelled) {
    CHECK(dataset_alloc(ds, "synthetic", n, h, w, c, labelled, NULL) == 0, "dataset_alloc");
    size_t bytes = h * w * c;
    for (size_t i = 0; i < n; i++)
        for (size_t k = 0; k < bytes; k++) ds->owned_pixels[i * bytes + k] = (uint8_t)(k == 0 ? i : (k * 13 + i) % 251);
    for (size_t i = 0; labelled && i < n; i++) ds->labels[i] = (int)(i % 7);
}

/* The image index of a converted sample, read back from its first (unflipped) or last-column byte. */
static size_t first_level(const float *x) { return (size_t)lroundf((x[0] + 1.0f) * 127.5f); }

static void test_permutation(void) {
    enum { N = 1000 };
    size_t *a = xmalloc(N * sizeof *a), *b = xmalloc(N * sizeof *b);
    char *seen = xcalloc(N, 1);
    loader_permutation(a, N, 42, 3, false);
    for (size_t i = 0; i < N; i++) seen[a[i]]++;
    size_t n_once = 0, n_fixed = 0;
    for (size_t i = 0; i < N; i++) n_once += seen[i] == 1, n_fixed += a[i] == i;
    EXPECT(n_once == N, "not a permutation: %zu of %d indices once", n_once, N);
    EXPECT(n_fixed < 10, "%zu fixed points: not shuffled", n_fixed);
    loader_permutation(b, N, 42, 3, false);
    EXPECT(memcmp(a, b, N * sizeof *a) == 0, "same (seed, epoch), different permutation");
    loader_permutation(b, N, 42, 4, false);
    EXPECT(memcmp(a, b, N * sizeof *a) != 0, "epoch ignored");
    loader_permutation(b, N, 43, 3, false);
    EXPECT(memcmp(a, b, N * sizeof *a) != 0, "seed ignored");
    loader_permutation(b, N, 43, 3, true);
    for (size_t i = 0; i < N; i++) EXPECT(b[i] == i, "sequential is not the identity at %zu", i);
    /* Position 0 of the epoch is uniform over the images: chi-square over 10 buckets and 2000 epochs. */
    enum { EPOCHS = 2000, BUCKETS = 10 };
    size_t counts[BUCKETS] = {0};
    for (uint64_t e = 0; e < EPOCHS; e++) {
        loader_permutation(a, 50, 7, e, false);
        counts[a[0] / 5]++;
    }
    double chi2 = 0;
    for (int k = 0; k < BUCKETS; k++) chi2 += pow((double)counts[k] - EPOCHS / BUCKETS, 2) / (EPOCHS / BUCKETS);
    EXPECT(chi2 < 27.9, "first element not uniform: chi2 %.1f (9 dof, p = 0.001 at 27.9)", chi2);
    free(a);
    free(b);
    free(seen);
}

/* One epoch over every rank: each image appears once, the padding repeats the head of the permutation,
 * or the tail is dropped. */
static void test_every_sample_once_per_epoch(void) {
    for (size_t n = 9; n <= 10; n++) {
        Dataset ds;
        make_dataset(&ds, n, 2, 2, 1, false);
        for (size_t world = 1; world <= 3; world++) {
            for (int drop_last = 0; drop_last < 2; drop_last++) {
                size_t per_rank = drop_last ? n / world : (n + world - 1) / world;
                size_t *count = xcalloc(n, sizeof *count);
                size_t *perm = xmalloc(n * sizeof *perm);
                loader_permutation(perm, n, 5, 0, false);
                for (size_t rank = 0; rank < world; rank++) {
                    Loader loader;
                    Error err;
                    LoaderOptions opt = {.seed = 5, .rank = rank, .world_size = world, .batch_size = per_rank,
                                         .drop_last = drop_last};
                    EXPECT(loader_init(&loader, &ds, &opt, &err) == 0, "%s", err.message);
                    EXPECT(loader_samples_per_epoch(&loader) == per_rank, "per rank %zu, want %zu",
                           loader_samples_per_epoch(&loader), per_rank);
                    float *x = xmalloc(per_rank * 4 * sizeof *x);
                    uint64_t *pos = xmalloc(per_rank * sizeof *pos);
                    loader_next_batch(&loader, x, NULL, pos);
                    for (size_t j = 0; j < per_rank; j++) {
                        size_t index = first_level(x + 4 * j);
                        EXPECT(pos[j] == rank + j * world, "rank %zu sample %zu at position %llu", rank, j,
                               (unsigned long long)pos[j]);
                        EXPECT(index == perm[pos[j] % n] && index == loader_index_at(&loader, pos[j]),
                               "position %llu holds %zu", (unsigned long long)pos[j], index);
                        if (index < n) count[index]++;
                    }
                    EXPECT(loader_cursor(&loader).epoch == 1 && loader_cursor(&loader).position == 0,
                           "after one epoch the cursor is (1, 0)");
                    free(x);
                    free(pos);
                    loader_free(&loader);
                }
                size_t total = per_rank * world, n_twice = 0, n_missing = 0;
                for (size_t i = 0; i < n; i++) {
                    n_twice += count[i] == 2;
                    n_missing += count[i] == 0;
                    EXPECT(count[i] <= 2, "image %zu seen %zu times", i, count[i]);
                }
                if (drop_last) {
                    EXPECT(n_twice == 0 && n_missing == n - total, "n %zu world %zu drop_last: %zu missing", n, world,
                           n_missing);
                    for (size_t p = total; p < n; p++) EXPECT(count[perm[p]] == 0, "dropped tail seen");
                } else {
                    EXPECT(n_missing == 0 && n_twice == total - n, "n %zu world %zu: %zu twice, %zu missing", n,
                           world, n_twice, n_missing);
                    for (size_t p = 0; p < total - n; p++) EXPECT(count[perm[p]] == 2, "padding is not the head");
                }
                free(count);
                free(perm);
            }
        }
        dataset_free(&ds);
    }
}

/* W ranks with batch B take, at every step, exactly the global positions (and images, flips, pixels) of
 * one process with batch W B, across epoch boundaries. */
static void test_world_equals_single_process(void) {
    enum { N = 12, B = 5, STEPS = 9, W = 3, IMG = 3 * 4 * 3 };
    Dataset ds;
    make_dataset(&ds, N, 3, 4, 3, true);
    Loader single, ranks[W];
    Error err;
    LoaderOptions opt = {.seed = 99, .world_size = 1, .batch_size = W * B, .random_flip = true};
    EXPECT(loader_init(&single, &ds, &opt, &err) == 0, "%s", err.message);
    for (size_t r = 0; r < W; r++) {
        LoaderOptions ropt = {.seed = 99, .rank = r, .world_size = W, .batch_size = B, .random_flip = true};
        EXPECT(loader_init(&ranks[r], &ds, &ropt, &err) == 0, "%s", err.message);
    }
    float *x1 = xmalloc(W * B * IMG * sizeof(float)), *xr = xmalloc(B * IMG * sizeof(float));
    uint64_t pos1[W * B], posr[B];
    int lab1[W * B], labr[B];
    for (int step = 0; step < STEPS; step++) {
        loader_next_batch(&single, x1, lab1, pos1);
        int found[W * B] = {0};
        for (size_t r = 0; r < W; r++) {
            loader_next_batch(&ranks[r], xr, labr, posr);
            for (size_t j = 0; j < B; j++) {
                size_t k = 0;
                while (k < W * B && pos1[k] != posr[j]) k++;
                EXPECT(k < W * B, "step %d: rank %zu position %llu not in the single-process batch", step, r,
                       (unsigned long long)posr[j]);
                if (k == W * B) continue;
                found[k]++;
                EXPECT(lab1[k] == labr[j], "label differs");
                EXPECT(memcmp(x1 + k * IMG, xr + j * IMG, IMG * sizeof(float)) == 0, "pixels (or flip) differ");
            }
        }
        for (size_t k = 0; k < W * B; k++) EXPECT(found[k] == 1, "step %d: position %llu taken %d times", step,
                                                  (unsigned long long)pos1[k], found[k]);
    }
    /* Nine steps of 15 from 12 images: epochs 0-11 crossed, positions continue 0, 1, 2, ... */
    EXPECT(pos1[W * B - 1] == (uint64_t)STEPS * W * B - 1, "last position %llu", (unsigned long long)pos1[W * B - 1]);
    EXPECT(loader_cursor(&single).epoch == (uint64_t)STEPS * W * B / N, "epoch %llu",
           (unsigned long long)loader_cursor(&single).epoch);
    for (size_t r = 0; r < W; r++) loader_free(&ranks[r]);
    loader_free(&single);
    free(x1);
    free(xr);
    dataset_free(&ds);
}

static void test_determinism_and_resume(void) {
    enum { N = 23, B = 4, IMG = 2 * 2 * 1 };
    Dataset ds;
    make_dataset(&ds, N, 2, 2, 1, false);
    LoaderOptions opt = {.seed = 1234, .rank = 1, .world_size = 2, .batch_size = B, .random_flip = true};
    Loader a, b;
    Error err;
    EXPECT(loader_init(&a, &ds, &opt, &err) == 0 && loader_init(&b, &ds, &opt, &err) == 0, "%s", err.message);
    float xa[B * IMG], xb[B * IMG];
    uint64_t pa[B], pb[B];
    int la[B], lb[B];
    for (int step = 0; step < 7; step++) {
        loader_next_batch(&a, xa, la, pa);
        loader_next_batch(&b, xb, lb, pb);
        EXPECT(memcmp(xa, xb, sizeof xa) == 0 && memcmp(pa, pb, sizeof pa) == 0, "same options, different batch");
        for (int j = 0; j < B; j++) EXPECT(la[j] == -1, "unlabelled data set gives label %d", la[j]);
    }
    /* Save the cursor of a, continue both a and a fresh loader set to it: identical. */
    LoaderCursor cursor = loader_cursor(&a);
    EXPECT(cursor.position % 2 == 0, "cursor position %llu not a multiple of the world",
           (unsigned long long)cursor.position);
    Loader c;
    EXPECT(loader_init(&c, &ds, &opt, &err) == 0 && loader_set_cursor(&c, cursor, &err) == 0, "%s", err.message);
    for (int step = 0; step < 9; step++) {
        loader_next_batch(&a, xa, NULL, pa);
        loader_next_batch(&c, xb, NULL, pb);
        EXPECT(memcmp(xa, xb, sizeof xa) == 0 && memcmp(pa, pb, sizeof pa) == 0, "resumed run differs at step %d",
               step);
    }
    /* A different seed gives a different order. */
    LoaderOptions other = opt;
    other.seed = 1235;
    Loader d;
    EXPECT(loader_init(&d, &ds, &other, &err) == 0, "%s", err.message);
    loader_next_batch(&d, xb, NULL, pb);
    loader_next_batch(&b, xa, NULL, pa);
    (void)pa;
    Loader e;
    EXPECT(loader_init(&e, &ds, &opt, &err) == 0, "%s", err.message);
    loader_next_batch(&e, xa, NULL, pa);
    EXPECT(memcmp(xa, xb, sizeof xa) != 0, "seed ignored");
    /* Bad cursors and options. */
    EXPECT(loader_set_cursor(&c, (LoaderCursor){.epoch = 2, .position = 3}, &err) == -1 &&
           strstr(err.message, "position 3"), "odd position accepted: %s", err.message);
    EXPECT(loader_set_cursor(&c, (LoaderCursor){.epoch = 2, .position = 26}, &err) == -1, "position past the epoch");
    EXPECT(loader_set_cursor(&c, (LoaderCursor){.epoch = 2, .position = 24}, &err) == 0, "end of epoch refused");
    loader_next_batch(&c, xa, NULL, pa);
    EXPECT(pa[0] == 3 * 24 + 1, "after (2, 24) comes epoch 3 position 1 for rank 1: %llu", (unsigned long long)pa[0]);
    Loader bad;
    EXPECT(loader_init(&bad, &ds, &(LoaderOptions){.rank = 2, .world_size = 2, .batch_size = 1}, &err) == -1 &&
           strstr(err.message, "rank 2"), "rank outside the world: %s", err.message);
    EXPECT(loader_init(&bad, &ds, &(LoaderOptions){.batch_size = 0}, &err) == -1, "batch 0 accepted");
    EXPECT(loader_init(&bad, &ds, &(LoaderOptions){.world_size = 24, .batch_size = 1, .drop_last = true}, &err) == -1 &&
           strstr(err.message, "23 images"), "too few images: %s", err.message);
    loader_free(&a);
    loader_free(&b);
    loader_free(&c);
    loader_free(&d);
    loader_free(&e);
    dataset_free(&ds);
}

/* A cursor saved by one world size continues in another that divides its position. */
static void test_resume_with_other_world(void) {
    enum { N = 16, IMG = 2 * 2 * 1 };
    Dataset ds;
    make_dataset(&ds, N, 2, 2, 1, false);
    Loader one, two[2];
    Error err;
    EXPECT(loader_init(&one, &ds, &(LoaderOptions){.seed = 3, .batch_size = 6}, &err) == 0, "%s", err.message);
    float x[6 * IMG];
    uint64_t pos[6];
    loader_next_batch(&one, x, NULL, pos);
    loader_next_batch(&one, x, NULL, pos);
    loader_next_batch(&one, x, NULL, pos); /* 18 samples: epoch 1, position 2 */
    LoaderCursor cursor = loader_cursor(&one);
    EXPECT(cursor.epoch == 1 && cursor.position == 2, "cursor (%llu, %llu)", (unsigned long long)cursor.epoch,
           (unsigned long long)cursor.position);
    loader_next_batch(&one, x, NULL, pos);
    for (size_t r = 0; r < 2; r++) {
        EXPECT(loader_init(&two[r], &ds, &(LoaderOptions){.seed = 3, .rank = r, .world_size = 2, .batch_size = 3},
                           &err) == 0 && loader_set_cursor(&two[r], cursor, &err) == 0, "%s", err.message);
        uint64_t pr[3];
        float xr[3 * IMG];
        loader_next_batch(&two[r], xr, NULL, pr);
        for (size_t j = 0; j < 3; j++) EXPECT(pr[j] == pos[2 * j + r], "rank %zu sample %zu: %llu, want %llu", r, j,
                                              (unsigned long long)pr[j], (unsigned long long)pos[2 * j + r]);
        loader_free(&two[r]);
    }
    loader_free(&one);
    dataset_free(&ds);
}

static void test_flips(void) {
    enum { N = 2000, H = 2, W = 3, C = 3, IMG = H * W * C };
    Dataset ds;
    make_dataset(&ds, N, H, W, C, false);
    Loader loader;
    Error err;
    EXPECT(loader_init(&loader, &ds, &(LoaderOptions){.seed = 8, .batch_size = N, .random_flip = true}, &err) == 0,
           "%s", err.message);
    float *x = xmalloc((size_t)N * IMG * sizeof *x), want[IMG];
    uint64_t *pos = xmalloc(N * sizeof *pos);
    loader_next_batch(&loader, x, NULL, pos);
    size_t n_flipped = 0;
    for (size_t j = 0; j < N; j++) {
        size_t index = loader_index_at(&loader, pos[j]);
        bool flip = loader_flips(8, 0, index);
        n_flipped += flip;
        transform_image_to_float(want, dataset_image(&ds, index), H, W, C, flip);
        EXPECT(memcmp(want, x + j * IMG, sizeof want) == 0, "sample %zu (image %zu, flip %d) wrong", j, index, flip);
        if (memcmp(want, x + j * IMG, sizeof want) != 0) break;
    }
    /* Binomial(2000, 1/2): sd 22.4; 5 sd either way. */
    EXPECT(n_flipped > 1000 - 112 && n_flipped < 1000 + 112, "%zu of %d flipped", n_flipped, N);
    /* Flips change with the epoch, and the same image differs between epochs about half the time. */
    size_t n_changed = 0;
    for (size_t i = 0; i < N; i++) n_changed += loader_flips(8, 0, i) != loader_flips(8, 1, i);
    EXPECT(n_changed > 1000 - 112 && n_changed < 1000 + 112, "%zu of %d changed between epochs", n_changed, N);
    /* Without random_flip nothing is mirrored. */
    Loader plain;
    EXPECT(loader_init(&plain, &ds, &(LoaderOptions){.seed = 8, .batch_size = 50}, &err) == 0, "%s", err.message);
    loader_next_batch(&plain, x, NULL, pos);
    for (size_t j = 0; j < 50; j++) {
        transform_image_to_float(want, dataset_image(&ds, loader_index_at(&plain, pos[j])), H, W, C, 0);
        EXPECT(memcmp(want, x + j * IMG, sizeof want) == 0, "unflipped sample %zu differs", j);
    }
    loader_free(&plain);
    loader_free(&loader);
    free(x);
    free(pos);
    dataset_free(&ds);
}

int main(void) {
    RUN(test_permutation);
    RUN(test_every_sample_once_per_epoch);
    RUN(test_world_equals_single_process);
    RUN(test_determinism_and_resume);
    RUN(test_resume_with_other_world);
    RUN(test_flips);
    return harness_finish();
}
