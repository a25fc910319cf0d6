"""Layout helpers shared by the fixture and benchmark modules: diffuse stores image activations
channels-last (N, H, W, C); PyTorch modules take (N, C, H, W)."""
import torch


def to_nhwc(x: torch.Tensor) -> torch.Tensor:
    return x.permute(0, 2, 3, 1).contiguous()


def to_nchw(x: torch.Tensor) -> torch.Tensor:
    return x.permute(0, 3, 1, 2).contiguous()
