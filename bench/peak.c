/* The machine's measured floating-point peak: every thread runs independent chains of fused multiply-adds
 * on registers only (no memory traffic), so the rate is the FMA units' throughput. fp32 with 512-bit and
 * 256-bit vectors (some cores split 512-bit FMAs in two: the faster of the two is the peak), and bf16 dot
 * products (vdpbf16ps: 2 multiply-adds per fp32 lane) where the CPU has them. The op benchmarks quote
 * their GFLOP/s as a share of this. Prints one JSON line per measurement, like the op benchmarks. */
#include <immintrin.h>
#include <omp.h>
#include <stdio.h>

#include "bench.h"

#define CHAINS 12
#define ITERATIONS 20000000L

#if defined(__AVX512F__)
static double fma512_flops(void) {
    double sink = 0;
#pragma omp parallel reduction(+ : sink)
    {
        __m512 acc[CHAINS];
        for (int c = 0; c < CHAINS; c++) acc[c] = _mm512_set1_ps((float)c * 1e-3f);
        const __m512 a = _mm512_set1_ps(0.999999f), b = _mm512_set1_ps(1e-7f);
        for (long i = 0; i < ITERATIONS; i++)
            {
#pragma GCC unroll 12
            for (int c = 0; c < CHAINS; c++) acc[c] = _mm512_fmadd_ps(acc[c], a, b);
        }
        for (int c = 0; c < CHAINS; c++) sink += _mm512_reduce_add_ps(acc[c]);
    }
    if (sink == 12345.0) printf("%g\n", sink); /* keeps the chains alive */
    return 2.0 * 16 * CHAINS * (double)ITERATIONS * omp_get_max_threads();
}
#endif

#if defined(__AVX2__) && defined(__FMA__)
static double fma256_flops(void) {
    double sink = 0;
#pragma omp parallel reduction(+ : sink)
    {
        __m256 acc[CHAINS];
        for (int c = 0; c < CHAINS; c++) acc[c] = _mm256_set1_ps((float)c * 1e-3f);
        const __m256 a = _mm256_set1_ps(0.999999f), b = _mm256_set1_ps(1e-7f);
        for (long i = 0; i < ITERATIONS; i++)
            {
#pragma GCC unroll 12
            for (int c = 0; c < CHAINS; c++) acc[c] = _mm256_fmadd_ps(acc[c], a, b);
        }
        float lanes[8];
        for (int c = 0; c < CHAINS; c++) {
            _mm256_storeu_ps(lanes, acc[c]);
            for (int l = 0; l < 8; l++) sink += lanes[l];
        }
    }
    if (sink == 12345.0) printf("%g\n", sink);
    return 2.0 * 8 * CHAINS * (double)ITERATIONS * omp_get_max_threads();
}
#endif

#if defined(__AVX512BF16__)
static double bf16_flops(void) {
    double sink = 0;
#pragma omp parallel reduction(+ : sink)
    {
        __m512 acc[CHAINS];
        for (int c = 0; c < CHAINS; c++) acc[c] = _mm512_setzero_ps();
        const __m512bh a = _mm512_cvtne2ps_pbh(_mm512_set1_ps(1e-3f), _mm512_set1_ps(1e-3f));
        for (long i = 0; i < ITERATIONS; i++)
            {
#pragma GCC unroll 12
            for (int c = 0; c < CHAINS; c++) acc[c] = _mm512_dpbf16_ps(acc[c], a, a);
        }
        for (int c = 0; c < CHAINS; c++) sink += _mm512_reduce_add_ps(acc[c]);
    }
    if (sink == 12345.0) printf("%g\n", sink);
    return 2.0 * 32 * CHAINS * (double)ITERATIONS * omp_get_max_threads();
}
#endif

typedef struct Kernel {
    const char *name;
    double (*run)(void);
} Kernel;

static double last_flops;
static void run_kernel(void *ctx) { last_flops = ((const Kernel *)ctx)->run(); }

int main(void) {
    Kernel kernels[3];
    int n = 0;
#if defined(__AVX512F__)
    kernels[n++] = (Kernel){"peak_fp32_fma512", fma512_flops};
#endif
#if defined(__AVX2__) && defined(__FMA__)
    kernels[n++] = (Kernel){"peak_fp32_fma256", fma256_flops};
#endif
#if defined(__AVX512BF16__)
    kernels[n++] = (Kernel){"peak_bf16_dot", bf16_flops};
#endif
    if (n == 0) {
        fprintf(stderr, "peak: this build has no AVX2/AVX-512 FMA kernels (built without -march=native?)\n");
        return 1;
    }
    int counts[2];
    int n_counts = bench_thread_counts(counts);
    for (int t = 0; t < n_counts; t++) {
        threads_set(counts[t]);
        for (int k = 0; k < n; k++) {
            /* A peak is what the machine can do: the fastest of many short runs (the median of 5 once
             * read 305 of 478 GFLOP/s on a busy moment). */
            double seconds = bench_best_seconds(run_kernel, &kernels[k], 1, 25);
            bench_report(kernels[k].name, "registers", "{}", seconds, last_flops);
        }
    }
    return 0;
}
