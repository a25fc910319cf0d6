#!/usr/bin/env python3
"""The PyTorch side of the op benchmarks: times in PyTorch the ops diffuse's bench/ops_* programs measured,
on the same arguments and thread counts, and prints the table: diffuse GFLOP/s, PyTorch GFLOP/s, ratio
(diffuse speed / PyTorch speed).

Each module tools/torchref/bench_<family>.py defines OPS = {op name: fn(args: dict) -> callable}, where
the callable runs the op once on prepared tensors (median of several runs after a warm-up).

This machine's speed drifts by tens of percent from minute to minute, so scripts/bench-ops runs several
rounds, each timing diffuse and then PyTorch close together; a round's ratio pairs the two, and the table
shows each row's median over the rounds.

    python3 tools/bench_ops_pytorch.py measure ROUND.jsonl > TORCH.jsonl    # one round's PyTorch times
    python3 tools/bench_ops_pytorch.py report OURS1.jsonl TORCH1.jsonl [OURS2.jsonl TORCH2.jsonl ...]
    python3 tools/bench_ops_pytorch.py report OURS.jsonl                     # diffuse only
"""
import importlib
import json
import pathlib
import statistics
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
from torchref.timing import median_seconds  # noqa: E402


def load_ops():
    ops = {}
    for path in sorted((ROOT / "tools" / "torchref").glob("bench_*.py")):
        ops.update(importlib.import_module("torchref." + path.stem).OPS)
    return ops


def rows_of(path):
    return [json.loads(line) for line in open(path) if line.strip()]


def key(row):
    return (row["op"], row["shape"], row["threads"])


def measure(path):
    import torch
    ops = load_ops()
    for row in rows_of(path):
        if row["op"] not in ops:
            continue
        torch.set_num_threads(row["threads"])
        seconds = median_seconds(ops[row["op"]](row["args"]))
        print(json.dumps({"op": row["op"], "shape": row["shape"], "threads": row["threads"], "seconds": seconds}),
              flush=True)


def report(paths):
    rounds = [(rows_of(paths[i]), rows_of(paths[i + 1]) if i + 1 < len(paths) else []) for i in range(0, len(paths), 2)]
    order = [key(r) for r in rounds[0][0]]
    ours, theirs, ratios, flops = {}, {}, {}, {}
    for our_rows, their_rows in rounds:
        their = {key(r): r["seconds"] for r in their_rows}
        for r in our_rows:
            k = key(r)
            flops[k] = r["gflops"] * r["seconds"]
            ours.setdefault(k, []).append(r["seconds"])
            if k in their:
                theirs.setdefault(k, []).append(their[k])
                ratios.setdefault(k, []).append(their[k] / r["seconds"])
    print(f"{len(rounds)} round(s); GFLOP/s from each side's median time, ratio = median over rounds of "
          f"(PyTorch time / diffuse time)")
    print(f"{'op':<22} {'shape':<34} {'thr':>3} {'diffuse GF/s':>12} {'torch GF/s':>11} {'ratio':>6}")
    for k in order:
        mine = flops[k] / statistics.median(ours[k])
        other = f"{flops[k] / statistics.median(theirs[k]):11.1f}" if k in theirs else ""
        ratio = f"{statistics.median(ratios[k]):6.2f}" if k in ratios else ""
        print(f"{k[0]:<22} {k[1]:<34} {k[2]:>3} {mine:12.1f} {other:>11} {ratio:>6}")


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "measure":
        measure(sys.argv[2])
    elif len(sys.argv) >= 3 and sys.argv[1] == "report":
        report(sys.argv[2:])
    else:
        sys.exit(__doc__)
