#!/usr/bin/env python3
"""Regenerates the committed test fixtures in tests/fixtures/ from PyTorch (and diffusers).

Each module tools/torchref/fixtures_<area>.py defines AREA and generate() -> {name: tensor}; this writes
tests/fixtures/<AREA>.safetensors. Runs are deterministic (fixed seed per area, one thread), so the same
torch version regenerates byte-identical files.

    pip install torch diffusers safetensors
    python3 tools/gen_fixtures.py            # every area
    python3 tools/gen_fixtures.py conv2d     # only the areas named
"""
import importlib
import pathlib
import sys

import torch
from safetensors.torch import save_file

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))


def main(wanted):
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    modules = sorted((ROOT / "tools" / "torchref").glob("fixtures_*.py"))
    for path in modules:
        module = importlib.import_module("torchref." + path.stem)
        if wanted and module.AREA not in wanted:
            continue
        torch.manual_seed(0)
        tensors = module.generate()
        tensors = {k: v.detach().to(torch.float32).contiguous() for k, v in tensors.items()}
        out = ROOT / "tests" / "fixtures" / f"{module.AREA}.safetensors"
        # One metadata entry: safetensors writes several in a random order, which breaks byte-identical files.
        save_file(tensors, str(out), metadata={"generator": f"tools/gen_fixtures.py, torch {torch.__version__}"})
        print(f"{out.relative_to(ROOT)}: {len(tensors)} tensors, {out.stat().st_size} bytes")


if __name__ == "__main__":
    main(set(sys.argv[1:]))
