#!/usr/bin/env python3
"""Writes the model fixtures that tests/test_model_config.c and tests/test_model_io.c compare against,
from diffusers itself:

  tests/fixtures/model_configs.json   for several UNet2DModel configs that together use every config value
      diffuse supports: the config.json text diffusers writes, the parameter count, the state_dict names and
      shapes in order, and the forward cost of one image at sample_size, counted by hooks on every
      nn.Conv2d / nn.Linear (multiply-adds) plus the attention matmuls (QK^T and AV: 2 L^2 C per layer).
  tests/fixtures/model_tiny*/         a tiny model saved by save_pretrained: F32 (model_tiny), F16, BF16,
      sharded into several files (model_tiny_sharded), and with the legacy attention names
      query/key/value/proj_attn (model_tiny_legacy, written with safetensors directly since diffusers no
      longer writes them). model_tiny/expected.json holds the float64 sum and sum of squares of every tensor.

Big models are built on the meta device (no memory, no init). Deterministic: the same torch and diffusers
versions rewrite byte-identical files.

    python3 tools/make_model_fixtures.py
"""
import json
import pathlib
import shutil

import diffusers
import torch
import torch.nn as nn
from diffusers import UNet2DModel
from diffusers.models.attention_processor import Attention
from safetensors.torch import save_file

ROOT = pathlib.Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"

# The presets of src/nn/unet_config.c, as diffusers keyword arguments.
PRESETS = {
    "default": dict(sample_size=64),
    "ddpm-cifar10": dict(
        sample_size=32, block_out_channels=(128, 256, 256, 256),
        down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=None, norm_eps=1e-6, flip_sin_to_cos=False, freq_shift=1, downsample_padding=0),
    "ddpm-celebahq-256": dict(
        sample_size=256, block_out_channels=(128, 128, 256, 256, 512, 512),
        down_block_types=("DownBlock2D",) * 4 + ("AttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "AttnUpBlock2D") + ("UpBlock2D",) * 4,
        attention_head_dim=None, norm_eps=1e-6, flip_sin_to_cos=False, freq_shift=1, downsample_padding=0),
    "fashion-mnist": dict(
        sample_size=28, in_channels=1, out_channels=1, block_out_channels=(16, 32, 64), layers_per_block=1,
        down_block_types=("DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D"), norm_num_groups=8, attention_head_dim=32),
}

# Small configs that, with the presets, use every supported value of every field.
VARIANTS = {
    # scale_shift conditioning, resnet down/up sampling, mid attention without group norm (scale_shift and
    # attn_norm_num_groups null), class labels, non-default time embedding size, swish spelling of SiLU.
    "scale_shift_resnet_sampling": dict(
        sample_size=16, in_channels=2, out_channels=5, block_out_channels=(16, 32, 32), layers_per_block=1,
        down_block_types=("AttnDownBlock2D", "AttnDownBlock2D", "DownBlock2D"),
        up_block_types=("AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D"), norm_num_groups=8,
        attention_head_dim=16, resnet_time_scale_shift="scale_shift", downsample_type="resnet",
        upsample_type="resnet", num_class_embeds=10, time_embedding_dim=48, act_fn="swish"),
    # scale_shift with attn_norm_num_groups set: the mid attention gets a group norm again.
    "scale_shift_attn_groups": dict(
        sample_size=8, block_out_channels=(16, 32), layers_per_block=2,
        down_block_types=("DownBlock2D", "AttnDownBlock2D"), up_block_types=("AttnUpBlock2D", "UpBlock2D"),
        norm_num_groups=4, attn_norm_num_groups=2, resnet_time_scale_shift="scale_shift"),
    # DDPM-paper embedding, padding 0, single head, centring, mid scale, dropout, eps, non-square sample.
    "ddpm_style_single_head": dict(
        sample_size=[16, 8], block_out_channels=(8, 16), layers_per_block=3,
        down_block_types=("AttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "AttnUpBlock2D"),
        norm_num_groups=4, attention_head_dim=None, flip_sin_to_cos=False, freq_shift=1, downsample_padding=0,
        center_input_sample=True, mid_block_scale_factor=2, dropout=0.1, norm_eps=1e-6),
    # No mid block; resnet sampling requested but the plain blocks keep the conv samplers.
    "no_mid_block": dict(
        sample_size=8, block_out_channels=(8, 16), layers_per_block=1,
        down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
        norm_num_groups=8, mid_block_type=None, downsample_type="resnet", upsample_type="resnet"),
    # Mid block without attention; a single level (no samplers at all).
    "no_mid_attention_one_level": dict(
        sample_size=4, block_out_channels=(16,), layers_per_block=1, down_block_types=("AttnDownBlock2D",),
        up_block_types=("AttnUpBlock2D",), norm_num_groups=8, add_attention=False, num_train_timesteps=1000),
}

# The model whose weights are committed in several encodings.
TINY = dict(
    sample_size=8, block_out_channels=(8, 16), layers_per_block=1, down_block_types=("DownBlock2D", "AttnDownBlock2D"),
    up_block_types=("AttnUpBlock2D", "UpBlock2D"), norm_num_groups=4, attention_head_dim=8, num_class_embeds=3)

LEGACY_NAMES = {"to_q": "query", "to_k": "key", "to_v": "value", "to_out.0": "proj_attn"}


def forward_macs(model, kwargs):
    """Multiply-adds of one forward pass of one image, by kind."""
    size = kwargs.get("sample_size", 64)
    height, width = (size, size) if isinstance(size, int) else size
    macs = {"conv": 0, "linear": 0, "attention": 0}

    def conv_hook(mod, inp, out):
        macs["conv"] += out.numel() // out.shape[0] * (mod.in_channels // mod.groups) * mod.kernel_size[0] * mod.kernel_size[1]

    def linear_hook(mod, inp, out):
        macs["linear"] += out.numel() // out.shape[0] * mod.in_features

    def attention_hook(mod, inp, out):
        hidden = inp[0]
        tokens = hidden.shape[2] * hidden.shape[3]
        macs["attention"] += 2 * tokens * tokens * mod.inner_dim

    hooks = []
    for mod in model.modules():
        if isinstance(mod, nn.Conv2d):
            hooks.append(mod.register_forward_hook(conv_hook))
        elif isinstance(mod, nn.Linear):
            hooks.append(mod.register_forward_hook(linear_hook))
        elif isinstance(mod, Attention):
            hooks.append(mod.register_forward_hook(attention_hook))
    device = next(model.parameters()).device
    labels = torch.zeros(1, dtype=torch.long, device=device) if kwargs.get("num_class_embeds") else None
    with torch.no_grad():
        out = model(torch.zeros(1, kwargs.get("in_channels", 3), height, width, device=device),
                    torch.tensor([10], device=device), class_labels=labels).sample
    assert out.shape == (1, kwargs.get("out_channels", 3), height, width), out.shape
    for h in hooks:
        h.remove()
    return macs


def describe(name, kwargs):
    with torch.device("meta"):
        model = UNet2DModel(**kwargs)
    return {
        "name": name,
        "config_json": model.to_json_string(),
        "n_params": sum(p.numel() for p in model.parameters()),
        "state_dict": [[k, list(v.shape)] for k, v in model.state_dict().items()],
        "forward_macs": forward_macs(model, kwargs),
    }


def write_configs():
    entries = [describe(n, kw) for n, kw in PRESETS.items()] + [describe(n, kw) for n, kw in VARIANTS.items()]
    for e in entries:
        e["preset"] = e["name"] in PRESETS
    doc = {"generator": "tools/make_model_fixtures.py", "diffusers": diffusers.__version__, "configs": entries}
    # One state_dict entry per line: readable diffs, a fraction of indent=1's size.
    text = json.dumps(doc, indent=1)
    for e in entries:
        rows = ",\n   ".join(json.dumps(row) for row in e["state_dict"])
        text = text.replace(json.dumps(e["state_dict"], indent=1).replace("\n", "\n   "), "[\n   " + rows + "\n  ]", 1)
    assert json.loads(text) == doc
    path = FIXTURES / "model_configs.json"
    path.write_text(text + "\n")
    print(f"{path.relative_to(ROOT)}: {len(entries)} configs, {path.stat().st_size} bytes")


def check_fashion_mnist_runs():
    """The 28x28 preset must run in diffusers for real (28 = 7 * 2^2), forward and backward."""
    torch.manual_seed(0)
    model = UNet2DModel(**PRESETS["fashion-mnist"])
    x = torch.randn(2, 1, 28, 28)
    out = model(x, torch.tensor([3, 500])).sample
    assert out.shape == x.shape
    out.square().mean().backward()


def fresh_folder(name):
    folder = FIXTURES / name
    if folder.exists():
        shutil.rmtree(folder)
    return folder


def write_tiny():
    torch.manual_seed(0)
    model = UNet2DModel(**TINY)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    model.save_pretrained(fresh_folder("model_tiny"))
    expected = {k: {"shape": list(v.shape), "sum": v.double().sum().item(), "sum_squares": v.double().square().sum().item()}
                for k, v in state.items()}
    (FIXTURES / "model_tiny" / "expected.json").write_text(json.dumps(expected, indent=1, sort_keys=True) + "\n")
    # Each encoding from the F32 weights (no double rounding through another 16-bit format).
    for dtype, name in [(torch.float16, "model_tiny_f16"), (torch.bfloat16, "model_tiny_bf16")]:
        model.to(torch.float32).load_state_dict(state)
        model.to(dtype).save_pretrained(fresh_folder(name))
    model.to(torch.float32).load_state_dict(state)
    model.save_pretrained(fresh_folder("model_tiny_sharded"), max_shard_size="60KB")

    legacy = fresh_folder("model_tiny_legacy")
    legacy.mkdir()
    shutil.copy(FIXTURES / "model_tiny" / "config.json", legacy / "config.json")
    renamed = {}
    for k, v in state.items():
        for new, old in LEGACY_NAMES.items():
            if ".attentions." in k and f".{new}." in k:
                k = k.replace(f".{new}.", f".{old}.")
        renamed[k] = v.contiguous()
    save_file(renamed, str(legacy / "diffusion_pytorch_model.safetensors"), metadata={"format": "pt"})

    # Every encoding must load back in diffusers to the same values (F16/BF16 rounded).
    for name, tol in [("model_tiny", 0), ("model_tiny_sharded", 0), ("model_tiny_legacy", 0),
                      ("model_tiny_f16", 2 ** -11), ("model_tiny_bf16", 2 ** -8)]:
        loaded = UNet2DModel.from_pretrained(FIXTURES / name).state_dict()
        for k, v in state.items():
            assert torch.allclose(loaded[k].float(), v, rtol=tol, atol=tol * 1e-2), (name, k)
    for name in ["model_tiny", "model_tiny_f16", "model_tiny_bf16", "model_tiny_sharded", "model_tiny_legacy"]:
        size = sum(p.stat().st_size for p in (FIXTURES / name).iterdir())
        print(f"tests/fixtures/{name}/: {size} bytes")


def main():
    torch.set_num_threads(1)
    FIXTURES.mkdir(parents=True, exist_ok=True)
    check_fashion_mnist_runs()
    write_configs()
    write_tiny()


if __name__ == "__main__":
    main()
