"""Timing shared by the PyTorch benchmarks: the median of several runs after a warm-up."""
import statistics
import time


def median_seconds(fn, warmup=2, repeats=7):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)
