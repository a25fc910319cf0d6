#!/usr/bin/env python3
"""Checks that diffuse's model folders and diffusers' are interchangeable, both ways, tensor by tensor.

  diffuse -> diffusers: `diffuse init <config> <folder> --seed 1` for several configs (every supported
      config value); UNet2DModel.from_pretrained(folder) must report no missing, unexpected or mismatched
      tensors, hold exactly the values in the file, carry the same config, run a forward pass, and its
      initial values must be distributed as PyTorch initialises a new model (per tensor: ones and zeros
      exactly; otherwise the same bound and standard deviation within sampling error).
  diffusers -> diffuse: a model with random values in every tensor saved by save_pretrained as F32, F16,
      BF16, in shards and with legacy attention names; `diffuse convert` must reproduce every value
      exactly (16-bit values widened exactly).

    make build/diffuse && python3 tools/check_diffusers_roundtrip.py [--diffuse build/diffuse] [--big]
--big adds the default 274M-parameter config (writes about 2 GB of temporary files).
"""
import argparse
import json
import math
import pathlib
import subprocess
import sys
import tempfile

import diffusers
import torch
from diffusers import UNet2DModel
from safetensors import safe_open
from safetensors.torch import load_file, save_file

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
from make_model_fixtures import LEGACY_NAMES  # noqa: E402


def configs(big):
    """name -> config.json text, from the committed fixture (diffusers' own text for each config)."""
    doc = json.loads((ROOT / "tests" / "fixtures" / "model_configs.json").read_text())
    out = {}
    for entry in doc["configs"]:
        if entry["name"] in ("default", "ddpm-celebahq-256") and not big:
            continue
        out[entry["name"]] = entry["config_json"]
    return out


def run_diffuse(diffuse, *args):
    result = subprocess.run([diffuse, *args], capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"diffuse {' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout


def forward_inputs(config):
    size = config.get("sample_size") or 8
    h, w = (size, size) if isinstance(size, int) else size
    x = torch.randn(2, config.get("in_channels", 3), h, w)
    labels = torch.tensor([0, 1]) if config.get("num_class_embeds") else None
    return x, torch.tensor([10, 900]), labels


def check_init_distribution(name, ours, config):
    """Per tensor: our initial values against a model PyTorch initialised, in distribution."""
    torch.manual_seed(0)
    ref = {k: v for k, v in UNet2DModel(**config).state_dict().items()}
    for key, theirs in ref.items():
        mine = ours[key]
        if torch.all(theirs == 1) or torch.all(theirs == 0):
            assert torch.equal(mine, theirs), f"{name}: {key} should be all {theirs.flatten()[0].item()}"
            continue
        n = theirs.numel()
        if key.endswith("class_embedding.weight"):  # N(0, 1)
            assert abs(mine.mean().item()) < 5 / math.sqrt(n) and abs(mine.var().item() - 1) < 5 * math.sqrt(2 / n), key
            continue
        # U(-b, b), b = 1/sqrt(fan_in): the same bound (max |x| within one part in n of it) and the same
        # standard deviation (b / sqrt(3)) within 5 standard errors.
        b_theirs, b_mine = theirs.abs().max().item(), mine.abs().max().item()
        assert b_mine <= b_theirs * (1 + 8 / n) + 1e-7 and b_theirs <= b_mine * (1 + 8 / n) + 1e-7 or n < 64, \
            f"{name}: {key} max |x| {b_mine} vs PyTorch {b_theirs}"
        if n >= 64:
            std = b_theirs / math.sqrt(3)
            assert abs(mine.std().item() - std) < 5 * std * math.sqrt(0.2 / n) + 1e-3 * std, \
                f"{name}: {key} std {mine.std().item()} vs {std}"


def diffuse_to_diffusers(diffuse, name, config_text, tmp):
    folder = tmp / f"init-{name}"
    config_path = tmp / f"{name}.json"
    config_path.write_text(config_text)
    run_diffuse(diffuse, "init", str(config_path), str(folder), "--seed", "1")
    model, info = UNet2DModel.from_pretrained(folder, output_loading_info=True)
    problems = {k: v for k, v in info.items() if v}
    assert not problems, f"{name}: diffusers reports {problems}"
    weights = folder / "diffusion_pytorch_model.safetensors"
    with safe_open(weights, "pt") as f:
        assert f.metadata() == {"format": "pt"}, f.metadata()
    stored = load_file(weights)
    state = model.state_dict()
    assert list(stored) and set(stored) == set(state), f"{name}: tensor names differ"
    for key, value in state.items():
        assert stored[key].dtype == torch.float32 and torch.equal(value, stored[key]), f"{name}: {key} differs"
    written = json.loads((folder / "config.json").read_text())
    for key, value in written.items():
        if key.startswith("_"):
            continue
        got = model.config[key]
        got = list(got) if isinstance(got, tuple) else got
        assert got == value, f"{name}: config {key} = {got}, file has {value}"
    config = {k: v for k, v in json.loads(config_text).items() if not k.startswith("_")}
    check_init_distribution(name, state, config)
    x, t, labels = forward_inputs(config)
    with torch.no_grad():
        out = model(x, t, class_labels=labels).sample
    assert out.shape[0] == 2 and torch.isfinite(out).all(), f"{name}: forward"
    return len(state)


def diffusers_to_diffuse(diffuse, name, config_text, tmp):
    config = {k: v for k, v in json.loads(config_text).items() if not k.startswith("_")}
    torch.manual_seed(1)
    model = UNet2DModel(**config)
    with torch.no_grad():
        for p in model.parameters():  # no tensor left at its trivial init (norms at 1 and 0)
            p.normal_()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    n = 0
    for variant in ["f32", "f16", "bf16", "sharded", "legacy"]:
        source, out = tmp / f"{name}-{variant}", tmp / f"{name}-{variant}-converted"
        dtype = {"f16": torch.float16, "bf16": torch.bfloat16}.get(variant, torch.float32)
        model.to(torch.float32).load_state_dict(state)
        if variant == "legacy":
            source.mkdir()
            model.save_pretrained(source)
            renamed = {}
            for k, v in state.items():
                for new, old in LEGACY_NAMES.items():
                    if ".attentions." in k and f".{new}." in k:
                        k = k.replace(f".{new}.", f".{old}.")
                renamed[k] = v.contiguous()
            save_file(renamed, str(source / "diffusion_pytorch_model.safetensors"), metadata={"format": "pt"})
        else:
            model.to(dtype).save_pretrained(source, max_shard_size="200KB" if variant == "sharded" else "10GB")
        run_diffuse(diffuse, "convert", str(source), str(out))
        converted = load_file(out / "diffusion_pytorch_model.safetensors")
        assert set(converted) == set(state), f"{name} {variant}: names differ"
        for key, value in state.items():
            want = value.to(dtype).to(torch.float32)
            assert converted[key].dtype == torch.float32 and torch.equal(converted[key], want), \
                f"{name} {variant}: {key} differs"
            n += 1
    return n


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--diffuse", default=str(ROOT / "build" / "diffuse"))
    parser.add_argument("--big", action="store_true", help="also the 274M and 114M configs")
    args = parser.parse_args()
    torch.set_num_threads(2)
    diffusers.utils.logging.set_verbosity_error()
    n_init = n_convert = 0
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        for name, text in configs(args.big).items():
            n_init += diffuse_to_diffusers(args.diffuse, name, text, tmp)
            n_convert += diffusers_to_diffuse(args.diffuse, name, text, tmp)
            print(f"ok {name}")
    print(f"diffuse -> diffusers: {n_init} tensors equal; diffusers -> diffuse: {n_convert} tensors equal "
          f"(F32, F16, BF16, sharded, legacy names)")


if __name__ == "__main__":
    main()
