"""PyTorch side of bench/ops_attention.c: what diffusers' AttnProcessor2_0 does with q, k, v of shape
(N, L, C) from its Linear layers: view as (N, L, heads, D), transpose to (N, heads, L, D),
F.scaled_dot_product_attention, transpose back, reshape to (N, L, C); forward under no_grad, backward
alone (autograd.grad on a kept graph) and forward + backward."""
import torch
import torch.nn.functional as F


def _setup(args):
    n, length, c, heads = args["N"], args["L"], args["C"], args["heads"]
    d = c // heads
    q, k, v = (torch.randn(n, length, c, requires_grad=True) for _ in range(3))
    dout = torch.randn(n, length, c)

    def forward():
        def split(x):
            return x.view(n, -1, heads, d).transpose(1, 2)

        o = F.scaled_dot_product_attention(split(q), split(k), split(v), attn_mask=None, dropout_p=0.0,
                                           is_causal=False)
        return o.transpose(1, 2).reshape(n, -1, heads * d)

    return q, k, v, dout, forward


def _fwd(args):
    _, _, _, _, forward = _setup(args)

    def run():
        with torch.no_grad():
            forward()
    return run


def _bwd(args):
    q, k, v, dout, forward = _setup(args)
    out = forward()
    return lambda: torch.autograd.grad(out, (q, k, v), dout, retain_graph=True)


def _fwdbwd(args):
    q, k, v, dout, forward = _setup(args)
    return lambda: torch.autograd.grad(forward(), (q, k, v), dout)


OPS = {"attention_fwd": _fwd, "attention_bwd": _bwd, "attention_fwdbwd": _fwdbwd}
