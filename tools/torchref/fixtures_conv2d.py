"""Fixtures for tests/test_conv2d.c: forward and backward of torch.nn.functional.conv2d on small shapes
covering kernel 1, 3, 5 and 1x3, stride 1 and 2, symmetric padding 0, 1, 2, diffusers' asymmetric
(top 0, bottom 1, left 0, right 1) before a stride-2 conv, odd channel counts and no bias.

Asymmetric padding is applied as diffusers' Downsample2D with padding=0 does it: F.pad(x, (0, 1, 0, 1))
then a conv with padding 0; autograd then carries the input gradient back through the pad. Everything is
computed in float64 from float32 inputs, so the stored results are exact to float32 rounding.

Per case c<j>: inp (N, H, W, Ci) and dout (N, Ho, Wo, Co) channels-last, weight (Co, Ci, kH, kW), bias (Co)
when used, out, dinp, dweight, dbias (when bias is used), and params = [stride, pad_top, pad_bottom,
pad_left, pad_right, kH, kW] so the C test can check that its case table matches."""
import torch
import torch.nn.functional as F

from torchref.layout import to_nhwc

AREA = "conv2d"

# (N, H, W, Ci, Co, (kH, kW), stride, (top, bottom, left, right), bias) -- same order as tests/test_conv2d.c
CASES = [
    (2, 7, 6, 5, 4, (3, 3), 1, (1, 1, 1, 1), True),
    (2, 5, 5, 6, 3, (1, 1), 1, (0, 0, 0, 0), True),
    (2, 8, 7, 4, 5, (3, 3), 2, (1, 1, 1, 1), True),
    (2, 8, 8, 5, 4, (3, 3), 2, (0, 1, 0, 1), True),
    (1, 6, 9, 17, 19, (3, 3), 1, (1, 1, 1, 1), False),
    (2, 7, 7, 3, 4, (3, 3), 2, (0, 0, 0, 0), True),
    (1, 5, 6, 4, 6, (1, 3), 1, (0, 0, 1, 1), True),
    (1, 6, 6, 3, 4, (5, 5), 1, (2, 2, 2, 2), True),
]


def generate():
    out = {}
    for j, (n, h, w, ci, co, (kh, kw), stride, (top, bottom, left, right), with_bias) in enumerate(CASES):
        x = torch.randn(n, ci, h, w).double().requires_grad_()
        weight = (torch.randn(co, ci, kh, kw) / (ci * kh * kw) ** 0.5).double().requires_grad_()
        bias = torch.randn(co).double().requires_grad_() if with_bias else None
        if top == bottom and left == right:
            y = F.conv2d(x, weight, bias, stride=stride, padding=(top, left))
        else:
            y = F.conv2d(F.pad(x, (left, right, top, bottom)), weight, bias, stride=stride)
        dout = torch.randn(y.shape).double()
        y.backward(dout)
        c = f"c{j}"
        out[f"{c}.params"] = torch.tensor([stride, top, bottom, left, right, kh, kw], dtype=torch.float64)
        out[f"{c}.inp"] = to_nhwc(x.detach())
        out[f"{c}.weight"] = weight.detach()
        out[f"{c}.dout"] = to_nhwc(dout)
        out[f"{c}.out"] = to_nhwc(y.detach())
        out[f"{c}.dinp"] = to_nhwc(x.grad)
        out[f"{c}.dweight"] = weight.grad
        if with_bias:
            out[f"{c}.bias"] = bias.detach()
            out[f"{c}.dbias"] = bias.grad
    return out
