"""Fixtures for tests/test_embed.c: diffusers' get_timestep_embedding for both flip settings, shifts 0
and 1, even and odd dims and fractional timesteps (plus the U-Net's and DDPM's configurations and one with
scale and max_period changed), next to a float64 evaluation of the same formula; and torch.nn.Embedding
forward and backward with repeated ids (ids stored as floats)."""
import math

import torch
import torch.nn.functional as F
from diffusers.models.embeddings import get_timestep_embedding

AREA = "embed"

TIMESTEPS = [0.0, 1.0, 17.5, 250.25, 999.0, 500.75]

# (name, dim, flip_sin_to_cos, downscale_freq_shift, scale, max_period)
CASES = [
    ("even_flip_shift0", 32, True, 0, 1, 10000),
    ("even_flip_shift1", 32, True, 1, 1, 10000),
    ("even_noflip_shift0", 32, False, 0, 1, 10000),
    ("even_noflip_shift1", 32, False, 1, 1, 10000),
    ("odd_flip_shift0", 33, True, 0, 1, 10000),
    ("odd_flip_shift1", 33, True, 1, 1, 10000),
    ("odd_noflip_shift0", 33, False, 0, 1, 10000),
    ("odd_noflip_shift1", 33, False, 1, 1, 10000),
    ("unet_default", 224, True, 0, 1, 10000),
    ("ddpm_cifar", 128, False, 1, 1, 10000),
    ("scaled", 16, True, 0, 2.5, 500),
]


def _float64_reference(t, dim, flip, shift, scale, max_period):
    """The same formula as diffusers, every step in float64."""
    half = dim // 2
    exponent = -math.log(max_period) * torch.arange(half, dtype=torch.float64) / (half - shift)
    arg = scale * (t.double()[:, None] * torch.exp(exponent)[None, :])
    emb = torch.cat([torch.sin(arg), torch.cos(arg)], dim=-1)
    if flip:
        emb = torch.cat([emb[:, half:], emb[:, :half]], dim=-1)
    if dim % 2:
        emb = F.pad(emb, (0, 1, 0, 0))
    return emb


def generate():
    out = {}
    t = torch.tensor(TIMESTEPS)
    out["timesteps"] = t
    for name, dim, flip, shift, scale, max_period in CASES:
        out[f"{name}.diffusers"] = get_timestep_embedding(t, dim, flip_sin_to_cos=flip, downscale_freq_shift=shift,
                                                          scale=scale, max_period=max_period)
        out[f"{name}.float64"] = _float64_reference(t, dim, flip, shift, scale, max_period)

    table = torch.randn(10, 7, requires_grad=True)
    ids = torch.tensor([3, 0, 9, 3, 5, 3])
    y = F.embedding(ids, table)
    dy = torch.randn_like(y)
    y.backward(dy)
    out.update({"embedding.table": table.detach(), "embedding.ids": ids.float(), "embedding.y": y.detach(),
                "embedding.dy": dy, "embedding.dtable": table.grad})
    return out
