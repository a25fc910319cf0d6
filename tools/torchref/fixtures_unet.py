"""Whole-model parity fixtures: diffusers' UNet2DModel forward and backward on small configs that together
use every config value diffuse supports. Computed in float64 (the "true" values our float32 pass is held
to), with random weights (norm affines too) so no parameter hides behind an identity.

Besides tests/fixtures/unet.safetensors this writes tests/fixtures/unet_<name>.json, the configs."""
import json
import pathlib

import torch
from diffusers import UNet2DModel

from torchref.layout import to_nchw, to_nhwc

AREA = "unet"
ROOT = pathlib.Path(__file__).resolve().parent.parent.parent

CONFIGS = {
    # google DDPM conventions: [sin, cos], freq_shift 1, eps 1e-6, asymmetric downsampling pad, one head.
    "ddpm": dict(sample_size=8, in_channels=3, out_channels=3, block_out_channels=(8, 16), layers_per_block=1,
                 down_block_types=("DownBlock2D", "AttnDownBlock2D"), up_block_types=("AttnUpBlock2D", "UpBlock2D"),
                 attention_head_dim=None, norm_num_groups=4, norm_eps=1e-6, flip_sin_to_cos=False, freq_shift=1,
                 downsample_padding=0),
    # diffusers-default conventions plus scale_shift, resnet resampling, classes, centring, mid scale, heads of 8,
    # a separate mid-attention group count, in != out channels.
    "conditioned": dict(sample_size=8, in_channels=2, out_channels=3, block_out_channels=(8, 8, 16), layers_per_block=2,
                        down_block_types=("DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"),
                        up_block_types=("AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D"), attention_head_dim=8,
                        norm_num_groups=4, attn_norm_num_groups=2, resnet_time_scale_shift="scale_shift",
                        downsample_type="resnet", upsample_type="resnet", num_class_embeds=5,
                        center_input_sample=True, mid_block_scale_factor=1.4142135623730951),
    # No mid block, a non-square sample, an explicit time embedding width.
    "no_mid": dict(sample_size=(8, 16), in_channels=1, out_channels=1, block_out_channels=(8, 16), layers_per_block=1,
                   down_block_types=("AttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "AttnUpBlock2D"),
                   attention_head_dim=4, norm_num_groups=4, mid_block_type=None, time_embedding_dim=24),
    # A mid block without attention.
    "mid_no_attention": dict(sample_size=8, in_channels=1, out_channels=2, block_out_channels=(8, 16), layers_per_block=1,
                             down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
                             norm_num_groups=4, add_attention=False),
}
BATCH = 2
TIMESTEPS = [3.0, 917.0]


def generate():
    tensors = {}
    for name, config in CONFIGS.items():
        model = UNet2DModel(**config).double()
        with torch.no_grad():
            for key, p in model.named_parameters():
                if "norm" in key and key.endswith(".weight"):
                    p.copy_(1 + 0.2 * torch.randn_like(p))
                elif "norm" in key and key.endswith(".bias"):
                    p.copy_(0.2 * torch.randn_like(p))
        model.train(False)
        h, w = (config["sample_size"], config["sample_size"]) if isinstance(config["sample_size"], int) else config["sample_size"]
        x = torch.randn(BATCH, config["in_channels"], h, w, dtype=torch.float64, requires_grad=True)
        t = torch.tensor(TIMESTEPS, dtype=torch.float64)
        labels = torch.tensor([1, 4]) if config.get("num_class_embeds") else None
        out = model(x, t, class_labels=labels).sample
        dout = torch.randn_like(out)
        (out * dout).sum().backward()
        prefix = name + "."
        tensors[prefix + "x"] = to_nhwc(x.detach())
        tensors[prefix + "timesteps"] = t
        if labels is not None:
            tensors[prefix + "labels"] = labels.double()
        tensors[prefix + "out"] = to_nhwc(out.detach())
        tensors[prefix + "dout"] = to_nhwc(dout)
        tensors[prefix + "dx"] = to_nhwc(x.grad)
        for key, p in model.named_parameters():
            tensors[prefix + "param." + key] = p.detach()
            tensors[prefix + "grad." + key] = p.grad
        saved = dict(model.config)
        saved = {k: v for k, v in saved.items() if not k.startswith("_")}
        saved["_class_name"] = "UNet2DModel"
        (ROOT / "tests" / "fixtures" / f"unet_{name}.json").write_text(json.dumps(saved, indent=2, sort_keys=True) + "\n")
    return tensors
