"""Fixtures for the attention ops: what diffusers' AttnProcessor2_0 does to q, k, v of shape (N, L, C)
(view as (N, L, heads, D), transpose to (N, heads, L, D), F.scaled_dot_product_attention, transpose back,
reshape to (N, L, C)), forward and autograd backward, plus lse (N, heads, Lq), the log-sum-exp of each
row of scaled scores, computed separately (SDPA does not return it).

Cases cover the lanes kernels (heads of 2, 4, 8), the tile kernels (a single head of 24 channels, heads
of 32 over more than one 64-wide tile), Lq != Lk and a scale other than 1/sqrt(D). Each case c stores
c.q, c.k, c.v, c.out, c.lse, c.dout, c.dq, c.dk, c.dv and c.scale; the head count is in CASES and in the
test."""
import torch
import torch.nn.functional as F

AREA = "attention"

# name: (N, Lq, Lk, C, heads, scale or None for diffusers' 1/sqrt(D))
CASES = {
    "d8": (2, 20, 20, 32, 4, None),
    "d4": (2, 17, 17, 16, 4, None),
    "d2_cross": (1, 9, 13, 6, 3, 0.3),
    "single24": (2, 16, 16, 24, 1, None),
    "d32_tiles": (1, 70, 90, 64, 2, None),
}


def diffusers_attention(q, k, v, heads, scale):
    n, lq, c = q.shape
    d = c // heads

    def split(x):
        return x.view(n, -1, heads, d).transpose(1, 2)

    o = F.scaled_dot_product_attention(split(q), split(k), split(v), attn_mask=None, dropout_p=0.0,
                                       is_causal=False, scale=scale)
    return o.transpose(1, 2).reshape(n, -1, heads * d)


def log_sum_exp(q, k, heads, scale):
    n, lq, c = q.shape
    d = c // heads
    qh = q.double().view(n, lq, heads, d).transpose(1, 2)
    kh = k.double().view(n, -1, heads, d).transpose(1, 2)
    return torch.logsumexp(qh @ kh.transpose(-1, -2) * scale, dim=-1)


def generate():
    out = {}
    for name, (n, lq, lk, c, heads, scale) in CASES.items():
        scale = scale if scale is not None else (c // heads) ** -0.5
        q = torch.randn(n, lq, c, requires_grad=True)
        k = torch.randn(n, lk, c, requires_grad=True)
        v = torch.randn(n, lk, c, requires_grad=True)
        o = diffusers_attention(q, k, v, heads, scale)
        dout = torch.randn_like(o)
        o.backward(dout)
        out.update({f"{name}.q": q, f"{name}.k": k, f"{name}.v": v, f"{name}.out": o,
                    f"{name}.lse": log_sum_exp(q.detach(), k.detach(), heads, scale), f"{name}.dout": dout,
                    f"{name}.dq": q.grad, f"{name}.dk": k.grad, f"{name}.dv": v.grad,
                    f"{name}.scale": torch.tensor([scale])})
    return out
