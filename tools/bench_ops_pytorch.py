#!/usr/bin/env python3
"""Times in PyTorch the ops that diffuse's op benchmarks measured, on the same arguments and thread
counts, and prints one table: diffuse GFLOP/s, PyTorch GFLOP/s, ratio (diffuse / PyTorch speed).

Each module tools/torchref/bench_<family>.py defines OPS = {op name: fn(args: dict) -> callable}, where
the callable runs the op once on prepared tensors. Median of several runs after a warm-up.

    make bench                                   # runs the C benchmarks, then this
    python3 tools/bench_ops_pytorch.py build/bench/ops.jsonl
"""
import importlib
import json
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
from torchref.timing import median_seconds  # noqa: E402


def load_ops():
    ops = {}
    for path in sorted((ROOT / "tools" / "torchref").glob("bench_*.py")):
        ops.update(importlib.import_module("torchref." + path.stem).OPS)
    return ops



def main(argv):
    ours_only = "--ours-only" in argv
    paths = [a for a in argv if not a.startswith("--")]
    rows = [json.loads(line) for line in open(paths[0]) if line.strip()]
    ops = {} if ours_only else load_ops()
    if not ours_only:
        import torch
    print(f"{'op':<22} {'shape':<34} {'thr':>3} {'diffuse GF/s':>12} {'torch GF/s':>11} {'ratio':>6}")
    for row in rows:
        theirs = ""
        ratio = ""
        if row["op"] in ops:
            torch.set_num_threads(row["threads"])
            seconds = median_seconds(ops[row["op"]](row["args"]))
            flops = row["gflops"] * row["seconds"]
            theirs = f"{flops / seconds:11.1f}"
            ratio = f"{seconds / row['seconds']:6.2f}"
        print(f"{row['op']:<22} {row['shape']:<34} {row['threads']:>3} {row['gflops']:12.1f} {theirs:>11} {ratio:>6}")


if __name__ == "__main__":
    main(sys.argv[1:])
