"""PyTorch timings of what bench/ops_upsample_conv.c measures: diffusers' Upsample2D with a conv,
F.interpolate(scale_factor=2, mode="nearest") then a 3x3 conv2d with padding 1, forward, and backward of
every gradient (input, weight, bias) through autograd; on channels_last tensors, PyTorch's faster layout
for these convolutions on CPU. The diffuse rows that force one way (_phases, _upsampled) are compared with
the same PyTorch op."""
import torch
import torch.nn.functional as F


def _tensors(args):
    n, h, w, c = (args[key] for key in ("N", "H", "W", "C"))
    gen = torch.Generator().manual_seed(0)
    cl = torch.channels_last
    x = torch.randn(n, c, h, w, generator=gen).contiguous(memory_format=cl)
    weight = (torch.rand(c, c, 3, 3, generator=gen) - 0.5).contiguous(memory_format=cl)
    bias = torch.rand(c, generator=gen) - 0.5
    dout = torch.randn(n, c, 2 * h, 2 * w, generator=gen).contiguous(memory_format=cl)
    return x, weight, bias, dout


def _forward(args):
    x, weight, bias, _ = _tensors(args)

    def run():
        with torch.no_grad():
            F.conv2d(F.interpolate(x, scale_factor=2.0, mode="nearest"), weight, bias, padding=1)
    return run


def _backward(args):
    x, weight, bias, dout = _tensors(args)
    x.requires_grad_(True), weight.requires_grad_(True), bias.requires_grad_(True)

    def run():
        out = F.conv2d(F.interpolate(x, scale_factor=2.0, mode="nearest"), weight, bias, padding=1)
        torch.autograd.grad(out, (x, weight, bias), dout)
    return run


OPS = {}
for suffix in ("", "_phases", "_upsampled"):
    OPS["upsample_conv_fwd" + suffix] = _forward
    OPS["upsample_conv_bwd" + suffix] = _backward
