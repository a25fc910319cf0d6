"""PyTorch timings for bench/ops_group_norm.c: group norm forward and backward on the same shapes.

PyTorch's CPU group norm has both an NCHW and a channels_last kernel; which is faster depends on the
shape and the thread count, so each op times both once and keeps the faster, giving PyTorch its best case.
The backward calls the native kernel (aten.native_group_norm_backward, all three gradients) so autograd's
bookkeeping is not counted against PyTorch."""
import statistics
import time

import torch
import torch.nn.functional as F


def _inputs(args, memory_format):
    n, c, h, w, g = args["N"], args["C"], args["H"], args["W"], args["G"]
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(n, c, h, w, generator=gen).contiguous(memory_format=memory_format)
    dy = torch.randn(n, c, h, w, generator=gen).contiguous(memory_format=memory_format)
    weight = torch.randn(c, generator=gen)
    bias = torch.randn(c, generator=gen)
    return x, dy, weight, bias, n, c, h * w, g


def _fastest(make):
    """make(memory_format) -> callable; returns the callable of the faster layout."""
    best, best_time = None, float("inf")
    for memory_format in (torch.contiguous_format, torch.channels_last):
        fn = make(memory_format)
        for _ in range(3):
            fn()
        times = []
        for _ in range(9):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        if statistics.median(times) < best_time:
            best, best_time = fn, statistics.median(times)
    return best


def forward(args):
    def make(memory_format):
        x, _, weight, bias, _, _, _, g = _inputs(args, memory_format)
        return lambda: F.group_norm(x, g, weight, bias, args["eps"])

    return _fastest(make)


def backward(args):
    def make(memory_format):
        x, dy, weight, bias, n, c, hw, g = _inputs(args, memory_format)
        _, mean, rstd = torch.ops.aten.native_group_norm(x, weight, bias, n, c, hw, g, args["eps"])
        return lambda: torch.ops.aten.native_group_norm_backward(dy, x, mean, rstd, weight, n, c, hw, g,
                                                                 [True, True, True])

    return _fastest(make)


OPS = {"group_norm_fwd": forward, "group_norm_bwd": backward}
