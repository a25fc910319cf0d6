/* Counter-based random numbers (Philox 4x32-10, Salmon et al., SC'11). Every draw is addressed by
 * (seed, stream, index) rather than by a position in a sequence, so a value does not depend on how work
 * is split over threads or MPI ranks, and a resumed run draws exactly what an uninterrupted one would.
 * Streams name independent uses (a training step's noise, a sample's initial noise, dropout masks, data
 * order); rng_stream() derives one from a purpose and up to two numbers such as the step. */
#ifndef DIFFUSE_RNG_H
#define DIFFUSE_RNG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The raw generator: 4 x 32 random bits for a 128-bit counter under a 64-bit key. */
void philox4x32_10(const uint32_t counter[4], const uint32_t key[2], uint32_t out[4]);

/* What a stream is for: one list, so no two uses of the generator can collide. Each comment names the
 * (a, b) of rng_stream(purpose, a, b). */
enum {
    RNG_PURPOSE_INIT = 0x494E4954,               /* "INIT": initial weights (hash of the tensor name, 0) */
    RNG_PURPOSE_SHUFFLE = 0x44534846,            /* "DSHF": data order (epoch, 0) */
    RNG_PURPOSE_FLIP = 0x44464C50,               /* "DFLP": random flips (epoch, 0) */
    RNG_PURPOSE_DROPOUT = 0x44524F50,            /* "DROP": dropout masks (step, layer) */
    RNG_PURPOSE_DIFFUSION_TIMESTEP = 0x44460001, /* training t (step, 0) */
    RNG_PURPOSE_DIFFUSION_NOISE = 0x44460002,    /* training noise (step, sample) */
    RNG_PURPOSE_SAMPLER_NOISE = 0x44460003,      /* sampler step noise (step, image) */
    RNG_PURPOSE_SAMPLER_INIT = 0x44460004,       /* x_T (image, 0) */
    RNG_PURPOSE_LIKELIHOOD_TIMESTEP = 0x44460005, /* bits/dim timesteps (k, 0) */
    RNG_PURPOSE_LIKELIHOOD_NOISE = 0x44460006,   /* bits/dim noise (key, sample) */
};

/* A stream id for (purpose, a, b), e.g. rng_stream(RNG_PURPOSE_NOISE, step, 0). */
uint64_t rng_stream(uint32_t purpose, uint64_t a, uint64_t b);

/* Element `index` of a stream: 32 random bits, a float uniform in [0, 1), a standard normal (from
 * Box-Muller in double), an integer uniform in [0, n). */
uint32_t rng_bits(uint64_t seed, uint64_t stream, uint64_t index);
float rng_uniform(uint64_t seed, uint64_t stream, uint64_t index);
float rng_normal(uint64_t seed, uint64_t stream, uint64_t index);
uint64_t rng_below(uint64_t seed, uint64_t stream, uint64_t index, uint64_t n);

/* out[i] = the draw at first_index + i, for i < n; parallel, identical for any thread count. */
void rng_fill_uniform(float *out, size_t n, uint64_t seed, uint64_t stream, uint64_t first_index);
void rng_fill_normal(float *out, size_t n, uint64_t seed, uint64_t stream, uint64_t first_index);

/* Normal draws above which rng_fill_normal spreads them over the threads (each pair costs a log, a square
 * root and a sine and cosine: tens of ns). Callers filling many smaller samples, one stream each, spread the
 * samples over the threads instead: a batch of 64 Fashion-MNIST noise images took 1.2 ms on one thread. */
#define RNG_NORMAL_PARALLEL_DRAWS 4096

/* Whether n samples of sample_numel normal draws each are spread over the threads a sample at a time. */
static inline bool rng_spread_samples(size_t n, size_t sample_numel) {
    return sample_numel <= RNG_NORMAL_PARALLEL_DRAWS && n * sample_numel > RNG_NORMAL_PARALLEL_DRAWS;
}

#endif
