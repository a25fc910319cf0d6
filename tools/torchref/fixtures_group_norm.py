"""Fixtures for tests/test_group_norm.c: torch.nn.functional.group_norm forward and backward on NCHW (or
(N, C, L)) inputs, stored channels-last. Per case <k>: x, dy, y, dx (channels-last), weight, bias, dweight,
dbias (C), mean, rstd (N, G) and the scalars groups, eps. The case without affine parameters stores none."""
import torch
import torch.nn.functional as F

from torchref.layout import to_nhwc

AREA = "group_norm"

# (name, NCHW or NCL shape, groups, eps, input offset, affine)
CASES = [
    ("small", (2, 8, 6, 5), 4, 1e-5, 0.0, True),
    ("offset", (3, 12, 4, 4), 3, 1e-6, 5.0, True),
    ("tokens", (2, 6, 20), 3, 1e-5, 0.0, True),
    ("unet", (2, 64, 8, 8), 32, 1e-5, 0.0, True),
    ("plain", (1, 4, 3, 7), 2, 1e-5, -1.0, False),
]


def _channels_last(t):
    return to_nhwc(t) if t.dim() == 4 else t.transpose(1, 2).contiguous()


def generate():
    out = {}
    for name, shape, groups, eps, offset, affine in CASES:
        c = shape[1]
        x = (torch.randn(shape) * 1.5 + offset).requires_grad_(True)
        weight = (torch.randn(c) * 0.5 + 1.0).requires_grad_(True) if affine else None
        bias = (torch.randn(c) * 0.5).requires_grad_(True) if affine else None
        y = F.group_norm(x, groups, weight, bias, eps)
        dy = torch.randn(shape)
        y.backward(dy)
        n = shape[0]
        hw = 1
        for d in shape[2:]:
            hw *= d
        _, mean, rstd = torch.ops.aten.native_group_norm(x.detach(), weight, bias, n, c, hw, groups, eps)
        out[f"{name}.x"] = _channels_last(x.detach())
        out[f"{name}.dy"] = _channels_last(dy)
        out[f"{name}.y"] = _channels_last(y.detach())
        out[f"{name}.dx"] = _channels_last(x.grad)
        out[f"{name}.mean"] = mean.reshape(n, groups)
        out[f"{name}.rstd"] = rstd.reshape(n, groups)
        out[f"{name}.groups"] = torch.tensor([float(groups)])
        out[f"{name}.eps"] = torch.tensor([eps], dtype=torch.float64)
        if affine:
            out[f"{name}.weight"] = weight.detach()
            out[f"{name}.bias"] = bias.detach()
            out[f"{name}.dweight"] = weight.grad
            out[f"{name}.dbias"] = bias.grad
    return out
