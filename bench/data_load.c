/* Data-layer throughput: opening a data set (decode, convert, resize) at 1 thread and all threads, and
 * filling loader batches. One JSON line per measurement.
 *   build/bench/data_load SOURCE [RESOLUTION [CHANNELS [BATCH [PACKED_OUT]]]]
 * With PACKED_OUT it also times writing the data set as a packed file and opening that.
 *   e.g. build/bench/data_load fashion-mnist;  build/bench/data_load /path/to/tiny-imagenet-200/train 64 3 */
#include <stdio.h>
#include <stdlib.h>

#include "core/alloc.h"
#include "core/threads.h"
#include "core/timer.h"
#include "data/dataset.h"
#include "data/loader.h"
#include "data/packed.h"

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s SOURCE [RESOLUTION [CHANNELS [BATCH [PACKED_OUT]]]]\n", argv[0]);
        return 2;
    }
    DatasetOptions opt = {.resolution = argc > 2 ? (size_t)atol(argv[2]) : 0,
                          .channels = argc > 3 ? (size_t)atol(argv[3]) : 0};
    size_t batch = argc > 4 ? (size_t)atol(argv[4]) : 16;
    int all = threads_available();
    int counts[2] = {1, all};
    Dataset ds = {0};
    for (int t = 0; t < (all > 1 ? 2 : 1); t++) {
        threads_set(counts[t]);
        Error err;
        double start = time_now();
        if (dataset_open(&ds, argv[1], &opt, &err)) {
            fprintf(stderr, "%s\n", err.message);
            return 1;
        }
        double seconds = time_now() - start;
        double out_mb = (double)ds.count * (double)dataset_image_bytes(&ds) / 1e6;
        printf("{\"op\": \"dataset_open\", \"source\": \"%s\", \"shape\": [%zu, %zu, %zu, %zu], \"skipped\": %zu, "
               "\"threads\": %d, \"seconds\": %.4f, \"images_per_s\": %.0f, \"out_mb_per_s\": %.1f}\n",
               argv[1], ds.count, ds.height, ds.width, ds.channels, ds.n_skipped, counts[t], seconds,
               (double)ds.count / seconds, out_mb / seconds);
        fflush(stdout);
        if (t + 1 < (all > 1 ? 2 : 1)) dataset_free(&ds);
    }
    Error err;
    if (argc > 5) {
        double start = time_now();
        if (packed_write(argv[5], &ds, &err)) {
            fprintf(stderr, "%s\n", err.message);
            return 1;
        }
        double write_s = time_now() - start;
        Dataset packed;
        start = time_now();
        if (dataset_open(&packed, argv[5], &opt, &err)) {
            fprintf(stderr, "%s\n", err.message);
            return 1;
        }
        double open_s = time_now() - start;
        double mb = (double)packed.count * (double)dataset_image_bytes(&packed) / 1e6;
        printf("{\"op\": \"packed\", \"mb\": %.1f, \"write_seconds\": %.4f, \"open_seconds\": %.5f}\n", mb,
               write_s, open_s);
        dataset_free(&packed);
    }
    Loader loader;
    if (loader_init(&loader, &ds, &(LoaderOptions){.seed = 1, .batch_size = batch, .random_flip = true}, &err)) {
        fprintf(stderr, "%s\n", err.message);
        return 1;
    }
    float *x = alloc_floats(batch * dataset_image_bytes(&ds));
    size_t n_batches = 2000;
    double start = time_now();
    for (size_t i = 0; i < n_batches; i++) loader_next_batch(&loader, x, NULL, NULL);
    double seconds = time_now() - start;
    printf("{\"op\": \"loader_next_batch\", \"batch\": %zu, \"threads\": %d, \"seconds_per_batch\": %.2e, "
           "\"images_per_s\": %.0f}\n", batch, all, seconds / (double)n_batches,
           (double)(batch * n_batches) / seconds);
    alloc_free(x);
    loader_free(&loader);
    dataset_free(&ds);
    return 0;
}
