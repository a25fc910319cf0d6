"""PyTorch timings of what bench/ops_shortcut_add.c measures: the end of diffusers' ResnetBlock2D in an up
block, (hidden + conv_shortcut(torch.cat([a, b], dim=1))) / output_scale_factor with a 1x1 conv_shortcut,
forward, on channels_last tensors. Both diffuse rows (the fused pass and the separate ops) are compared
with it."""
import torch
import torch.nn.functional as F


def _forward(args):
    n, h, w, ca, cb, co = (args[key] for key in ("N", "H", "W", "Ca", "Cb", "Co"))
    gen = torch.Generator().manual_seed(0)
    cl = torch.channels_last
    a = torch.randn(n, ca, h, w, generator=gen).contiguous(memory_format=cl)
    b = torch.randn(n, cb, h, w, generator=gen).contiguous(memory_format=cl)
    hidden = torch.randn(n, co, h, w, generator=gen).contiguous(memory_format=cl)
    weight = (torch.rand(co, ca + cb, 1, 1, generator=gen) - 0.5).contiguous(memory_format=cl)
    bias = torch.rand(co, generator=gen) - 0.5

    def run():
        with torch.no_grad():
            (hidden + F.conv2d(torch.cat([a, b], dim=1), weight, bias)) / 2.0
    return run


OPS = {"shortcut_add_fused": _forward, "shortcut_add_separate": _forward}
