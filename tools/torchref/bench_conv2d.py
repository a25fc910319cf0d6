"""PyTorch timings of the conv2d ops that bench/ops_conv2d.c measures: forward, backward-data and
backward-weights (+ bias) of torch's conv2d on the same shapes, FLOP count and thread count.

PyTorch runs conv2d on NCHW and on channels_last tensors through different kernels; each op below times
both layouts briefly and returns the faster, so the comparison is against PyTorch at its best. The
backward ops call aten.convolution_backward with an output mask, which is what autograd runs for
F.conv2d. Asymmetric padding is done as diffusers' Downsample2D does it: F.pad, then a conv with
padding 0 (whose input gradient autograd narrows back to the unpadded size)."""
import time

import torch
import torch.nn.functional as F


def _tensors(args, memory_format):
    n, h, w, ci, co, k = (args[key] for key in ("N", "H", "W", "Ci", "Co", "k"))
    top, bottom, left, right = args["pads"]
    stride = args["stride"]
    symmetric = top == bottom == left == right
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(n, ci, h, w, generator=gen).contiguous(memory_format=memory_format)
    weight = (torch.rand(co, ci, k, k, generator=gen) - 0.5).contiguous(memory_format=memory_format)
    bias = torch.rand(co, generator=gen) - 0.5
    padding = [top, left] if symmetric else [0, 0]
    x_conv = x if symmetric else F.pad(x, (left, right, top, bottom)).contiguous(memory_format=memory_format)
    ho = (h + top + bottom - k) // stride + 1
    wo = (w + left + right - k) // stride + 1
    dout = torch.randn(n, co, ho, wo, generator=gen).contiguous(memory_format=memory_format)
    return dict(x=x, x_conv=x_conv, weight=weight, bias=bias, dout=dout, stride=[stride, stride], padding=padding,
                symmetric=symmetric, pads=(left, right, top, bottom), h=h, w=w, top=top, left=left)


def _forward(t):
    def run():
        x = t["x"] if t["symmetric"] else F.pad(t["x"], t["pads"])
        F.conv2d(x, t["weight"], t["bias"], t["stride"], t["padding"])
    return run


def _backward(t, mask):
    def run():
        grads = torch.ops.aten.convolution_backward(t["dout"], t["x_conv"], t["weight"], [t["bias"].shape[0]],
                                                    t["stride"], t["padding"], [1, 1], False, [0, 0], 1, mask)
        if mask[0] and not t["symmetric"]:
            grads[0][:, :, t["top"]:t["top"] + t["h"], t["left"]:t["left"] + t["w"]]  # F.pad's backward
    return run


def _fastest(args, make):
    """make(tensors) -> callable, on NCHW and on channels_last tensors; returns the faster by the best of a
    few runs (the minimum resists a busy machine better than a median of so few)."""
    best, best_seconds = None, float("inf")
    for memory_format in (torch.contiguous_format, torch.channels_last):
        fn = make(_tensors(args, memory_format))
        fn()
        seconds = float("inf")
        for _ in range(5):
            start = time.perf_counter()
            fn()
            seconds = min(seconds, time.perf_counter() - start)
        if seconds < best_seconds:
            best, best_seconds = fn, seconds
    return best


OPS = {
    "conv2d_fwd": lambda args: _fastest(args, _forward),
    "conv2d_bwd_data": lambda args: _fastest(args, lambda t: _backward(t, [True, False, False])),
    "conv2d_bwd_weights": lambda args: _fastest(args, lambda t: _backward(t, [False, True, True])),
}
