"""Fixtures for tests/test_pipeline.c: DDPMPipeline's conversion of a sample to an 8-bit image,
(image / 2 + 0.5).clamp(0, 1) in torch float32 (diffusers/pipelines/ddpm/pipeline_ddpm.py), then
numpy_to_pil's (images * 255).round().astype("uint8") in numpy float32 (diffusers/pipelines/pipeline_utils.py).
The inputs cover the whole range, values past +-1 (clamped), and for every level k the float32 neighbours
of the points where v * 255 crosses k + 0.5, where the rounding decides between two levels."""
import numpy as np
import torch

AREA = "pipeline"


def generate():
    rng = torch.Generator().manual_seed(5)
    spread = torch.randn(4096, generator=rng) * 0.8
    edges = torch.tensor([-3.0, -1.0, -0.99999, 0.0, 0.99999, 1.0, 1.0000001, 3.0])
    # x whose v = x / 2 + 0.5 lies within a few float32 ulps of (k + 0.5) / 255, for every k.
    centres = (torch.arange(255, dtype=torch.float64) + 0.5) / 255.0 * 2.0 - 1.0
    near = []
    for shift in range(-3, 4):
        x = centres.to(torch.float32)
        x = torch.from_numpy(np.nextafter(x.numpy(), np.float32(np.inf if shift > 0 else -np.inf))) if shift else x
        for _ in range(abs(shift) - 1):
            x = torch.from_numpy(np.nextafter(x.numpy(), np.float32(np.inf if shift > 0 else -np.inf)))
        near.append(x)
    x = torch.cat([spread, edges, *near]).to(torch.float32)
    image = (x / 2 + 0.5).clamp(0, 1)
    levels = (image.numpy() * 255).round().astype("uint8")
    return {"uint8.x": x, "uint8.unit": image, "uint8.levels": torch.from_numpy(levels.astype(np.float32))}
