"""Fixtures for the linear ops: torch.nn.functional.linear forward and its autograd gradients.

Cases (inp shape -> Fo, bias): leading dimensions of rank 2 and 1, with and without bias, and a
time-embedding-like (batch, 32) -> 64. Each case c stores c.inp, c.weight, [c.bias], c.out, c.dout,
c.dinp, c.dweight, [c.dbias]."""
import torch
import torch.nn.functional as F

AREA = "linear"

CASES = {
    "rows3d": ((3, 5, 7), 6, True),
    "rows2d": ((4, 9), 5, False),
    "temb": ((2, 32), 64, True),
}


def generate():
    out = {}
    for name, (inp_shape, fo, with_bias) in CASES.items():
        fi = inp_shape[-1]
        inp = torch.randn(inp_shape, requires_grad=True)
        weight = (torch.randn(fo, fi) / fi**0.5).requires_grad_()
        bias = torch.randn(fo, requires_grad=True) if with_bias else None
        y = F.linear(inp, weight, bias)
        dout = torch.randn_like(y)
        y.backward(dout)
        out.update({f"{name}.inp": inp, f"{name}.weight": weight, f"{name}.out": y, f"{name}.dout": dout,
                    f"{name}.dinp": inp.grad, f"{name}.dweight": weight.grad})
        if with_bias:
            out.update({f"{name}.bias": bias, f"{name}.dbias": bias.grad})
    return out
