/* Philox 4x32-10 and the draws built on it (see rng.h).
 * Layout of a draw: the counter is (block lo, block hi, stream lo, stream hi), the key is the seed.
 * Uniform index i uses lane i % 4 of block i / 4. Normal index i uses block i / 2: its four lanes make
 * two 64-bit uniforms u1, u2, and sqrt(-2 ln u1) times cos (even i) or sin (odd i) of 2 pi u2. */
#include "core/rng.h"

#include <math.h>

#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u

void philox4x32_10(const uint32_t counter[4], const uint32_t key[2], uint32_t out[4]) {
    uint32_t c0 = counter[0], c1 = counter[1], c2 = counter[2], c3 = counter[3];
    uint32_t k0 = key[0], k1 = key[1];
    for (int round = 0; round < 10; round++) {
        uint64_t p0 = (uint64_t)PHILOX_M0 * c0;
        uint64_t p1 = (uint64_t)PHILOX_M1 * c2;
        uint32_t n0 = (uint32_t)(p1 >> 32) ^ c1 ^ k0;
        uint32_t n1 = (uint32_t)p1;
        uint32_t n2 = (uint32_t)(p0 >> 32) ^ c3 ^ k1;
        uint32_t n3 = (uint32_t)p0;
        c0 = n0, c1 = n1, c2 = n2, c3 = n3;
        k0 += PHILOX_W0;
        k1 += PHILOX_W1;
    }
    out[0] = c0, out[1] = c1, out[2] = c2, out[3] = c3;
}

static void philox_block(uint64_t seed, uint64_t stream, uint64_t block, uint32_t out[4]) {
    const uint32_t counter[4] = {(uint32_t)block, (uint32_t)(block >> 32), (uint32_t)stream,
                                 (uint32_t)(stream >> 32)};
    const uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
    philox4x32_10(counter, key, out);
}

uint64_t rng_stream(uint32_t purpose, uint64_t a, uint64_t b) {
    /* Mix through Philox itself so that nearby (a, b) give unrelated streams. */
    uint32_t out[4];
    const uint32_t counter[4] = {(uint32_t)a, (uint32_t)(a >> 32), (uint32_t)b, (uint32_t)(b >> 32)};
    const uint32_t key[2] = {purpose, 0x5EED5EEDu};
    philox4x32_10(counter, key, out);
    return ((uint64_t)out[1] << 32) | out[0];
}

uint32_t rng_bits(uint64_t seed, uint64_t stream, uint64_t index) {
    uint32_t out[4];
    philox_block(seed, stream, index / 4, out);
    return out[index % 4];
}

static float uniform_from_bits(uint32_t bits) { return (float)(bits >> 8) * (1.0f / 16777216.0f); }

float rng_uniform(uint64_t seed, uint64_t stream, uint64_t index) {
    return uniform_from_bits(rng_bits(seed, stream, index));
}

static double unit_open_closed(uint32_t hi, uint32_t lo) {
    /* 53 random bits mapped to (0, 1]: never 0, so log() is finite. */
    uint64_t bits = (((uint64_t)hi << 32) | lo) >> 11;
    return ((double)bits + 1.0) * (1.0 / 9007199254740992.0);
}

static void normal_pair(uint64_t seed, uint64_t stream, uint64_t pair, double *z0, double *z1) {
    uint32_t out[4];
    philox_block(seed, stream, pair, out);
    double radius = sqrt(-2.0 * log(unit_open_closed(out[0], out[1])));
    double angle = 6.283185307179586 * unit_open_closed(out[2], out[3]);
    *z0 = radius * cos(angle);
    *z1 = radius * sin(angle);
}

float rng_normal(uint64_t seed, uint64_t stream, uint64_t index) {
    double z0, z1;
    normal_pair(seed, stream, index / 2, &z0, &z1);
    return (float)(index % 2 ? z1 : z0);
}

uint64_t rng_below(uint64_t seed, uint64_t stream, uint64_t index, uint64_t n) {
    uint32_t out[4];
    philox_block(seed, stream, index, out);
    uint64_t bits = ((uint64_t)out[1] << 32) | out[0];
    /* Multiply-shift: bias below 2^-40 for any n a data set or schedule can have. */
    return (uint64_t)(((unsigned __int128)bits * n) >> 64);
}

void rng_fill_uniform(float *out, size_t n, uint64_t seed, uint64_t stream, uint64_t first_index) {
    if (n == 0) return;
    /* One Philox block per four draws (all its lanes), trimming the ends: a model's initial weights, 274 M
     * for the default preset, in a quarter of the time that a block per draw took. */
    uint64_t first_block = first_index / 4, last_block = (first_index + n - 1) / 4;
#pragma omp parallel for schedule(static) if (n > 65536)
    for (uint64_t block = first_block; block <= last_block; block++) {
        uint32_t bits[4];
        philox_block(seed, stream, block, bits);
        for (int lane = 0; lane < 4; lane++) {
            uint64_t index = block * 4 + (uint64_t)lane;
            if (index >= first_index && index < first_index + n) out[index - first_index] = uniform_from_bits(bits[lane]);
        }
    }
}

void rng_fill_normal(float *out, size_t n, uint64_t seed, uint64_t stream, uint64_t first_index) {
    if (n == 0) return;
    /* Pairs are aligned to even indices; fill whole pairs, trimming the ends. */
    uint64_t first_pair = first_index / 2, last_pair = (first_index + n - 1) / 2;
#pragma omp parallel for schedule(static) if (n > RNG_NORMAL_PARALLEL_DRAWS)
    for (uint64_t pair = first_pair; pair <= last_pair; pair++) {
        double z[2];
        normal_pair(seed, stream, pair, &z[0], &z[1]);
        for (int lane = 0; lane < 2; lane++) {
            uint64_t index = pair * 2 + (uint64_t)lane;
            if (index >= first_index && index < first_index + n) out[index - first_index] = (float)z[lane];
        }
    }
}
