#!/usr/bin/env python3
"""Prints scripts/bench-train's table: for each configuration and step kind, diffuse's seconds per step,
images/s, GFLOP/s and share of the measured fp32 FMA peak, peak RSS, PyTorch's figures and the speed ratio.
Rows whose args have no "precision" are fp32. bf16 rows get no share of peak: on CPUs with AMX the
convolutions run on its tiles, whose peak bench/peak does not measure (its bf16 figure is AVX-512's).
GFLOP/s are effective rates: the model's FLOPs counted as direct convolution does them, per second. The
fp32 3x3 convolutions run as Winograd, which does fewer multiplies, so the share of peak can pass what
the arithmetic actually done would reach. With several rounds (BENCH_ROUNDS) a row shows the median of
its rounds' steps, the largest peak RSS, the ratio of the medians and the range of the rounds' ratios.

    python3 tools/bench_table.py build/bench/train.jsonl build/bench/train_pytorch.jsonl build/bench/peak.jsonl
"""
import json
import sys
from statistics import median


def rows(path):
    try:
        return [json.loads(line) for line in open(path) if line.strip()]
    except FileNotFoundError:
        return []


def precision(r):
    return r.get("args", {}).get("precision", "fp32")


def key(r):
    """args with the precision filled in, so rows written before precision existed match as fp32."""
    return {**r.get("args", {}), "precision": precision(r)}


def rounds_of(rows_):
    """The rows of each (op, args), in order of first appearance: one per round."""
    groups = {}
    for r in rows_:
        if "args" in r:
            groups.setdefault(json.dumps({"op": r["op"], **key(r)}, sort_keys=True), []).append(r)
    return groups


def main(ours_path, theirs_path, peak_path):
    ours, theirs, peaks = rows(ours_path), rows(theirs_path), rows(peak_path)
    peak = max((r["gflops"] for r in peaks if r["op"] in ("peak_fp32_fma512", "peak_fp32_fma256")), default=None)
    if peak:
        print(f"measured fp32 FMA peak: {peak:.0f} GFLOP/s")
    head = (f"{'configuration':<34} {'step':<6} {'diffuse s':>10} {'img/s':>8} {'GFLOP/s':>8} {'%peak':>6} {'RSS MB':>8}"
            f" {'torch s':>9} {'RSS MB':>8} {'speedup':>8}")
    print(head)
    their_rounds = rounds_of(theirs)
    for k, ours_k in rounds_of(ours).items():
        r = ours_k[0]
        seconds = median(o["seconds"] for o in ours_k)
        gflops = median(o["gflops"] for o in ours_k)
        kind = r["op"].replace("_step", "")
        suffix = "" if precision(r) == "fp32" else f" {precision(r)}"
        failed = next((t for t in theirs if t.get("failed") and t["op"] == r["op"] and
                       t["shape"] == f"{r['args']['model']} batch {r['args']['batch']}{suffix}"), None)
        share = f"{100 * gflops / peak:5.0f}%" if peak and precision(r) == "fp32" else ""
        line = (f"{r['shape']:<34} {kind:<6} {seconds:10.3f} {r['args']['batch'] / seconds:8.1f} {gflops:8.1f}"
                f" {share:>6} {max(o['peak_rss_mb'] for o in ours_k):8.0f}")
        theirs_k = their_rounds.get(k)
        if theirs_k:
            their_seconds = median(t["seconds"] for t in theirs_k)
            line += (f" {their_seconds:9.3f} {max(t['peak_rss_mb'] for t in theirs_k):8.0f}"
                     f" {their_seconds / seconds:7.2f}x")
            ratios = [t["seconds"] / o["seconds"] for o, t in zip(ours_k, theirs_k)]
            if len(ratios) > 1:
                line += f" ({min(ratios):.2f}-{max(ratios):.2f}x in {len(ratios)} rounds)"
        elif failed:
            line += f" {'failed (out of memory?)':>27}"
        print(line)


if __name__ == "__main__":
    main(*sys.argv[1:4])
