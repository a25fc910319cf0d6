"""PyTorch side of bench/ops_linear.c: torch.nn.functional.linear with bias on (M, Fi) rows, forward
under no_grad and backward alone (input, weight and bias gradients, autograd.grad on a kept graph)."""
import torch
import torch.nn.functional as F


def _setup(args):
    m, fi, fo = args["M"], args["Fi"], args["Fo"]
    x = torch.randn(m, fi, requires_grad=True)
    w = torch.randn(fo, fi, requires_grad=True)
    b = torch.randn(fo, requires_grad=True)
    return x, w, b, torch.randn(m, fo)


def _fwd(args):
    x, w, b, _ = _setup(args)

    def run():
        with torch.no_grad():
            F.linear(x, w, b)
    return run


def _bwd(args):
    x, w, b, dout = _setup(args)
    y = F.linear(x, w, b)
    return lambda: torch.autograd.grad(y, (x, w, b), dout, retain_graph=True)


OPS = {"linear_fwd": _fwd, "linear_bwd": _bwd}
