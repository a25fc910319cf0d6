#!/usr/bin/env python3
"""Prints scripts/bench-train's table: for each configuration and step kind, diffuse's seconds per step,
images/s, GFLOP/s and share of the measured fp32 FMA peak, peak RSS, PyTorch's figures and the speed ratio.
Rows whose args have no "precision" are fp32. bf16 rows get no share of peak: on CPUs with AMX the
convolutions run on its tiles, whose peak bench/peak does not measure (its bf16 figure is AVX-512's).
GFLOP/s are effective rates: the model's FLOPs counted as direct convolution does them, per second. The
fp32 3x3 convolutions run as Winograd, which does fewer multiplies, so the share of peak can pass what
the arithmetic actually done would reach.

    python3 tools/bench_table.py build/bench/train.jsonl build/bench/train_pytorch.jsonl build/bench/peak.jsonl
"""
import json
import sys


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


def main(ours_path, theirs_path, peak_path):
    ours, theirs, peaks = rows(ours_path), rows(theirs_path), rows(peak_path)
    peak = max((r["gflops"] for r in peaks if r["op"] in ("peak_fp32_fma512", "peak_fp32_fma256")), default=None)
    if peak:
        print(f"measured fp32 FMA peak: {peak:.0f} GFLOP/s")
    head = (f"{'configuration':<34} {'step':<6} {'diffuse s':>10} {'img/s':>8} {'GFLOP/s':>8} {'%peak':>6} {'RSS MB':>8}"
            f" {'torch s':>9} {'RSS MB':>8} {'speedup':>8}")
    print(head)
    for r in ours:
        kind = r["op"].replace("_step", "")
        match = next((t for t in theirs if t.get("op") == r["op"] and "args" in t and key(t) == key(r)), None)
        suffix = "" if precision(r) == "fp32" else f" {precision(r)}"
        failed = next((t for t in theirs if t.get("failed") and t["op"] == r["op"] and
                       t["shape"] == f"{r['args']['model']} batch {r['args']['batch']}{suffix}"), None)
        share = f"{100 * r['gflops'] / peak:5.0f}%" if peak and precision(r) == "fp32" else ""
        line = (f"{r['shape']:<34} {kind:<6} {r['seconds']:10.3f} {r['images_per_second']:8.1f} {r['gflops']:8.1f}"
                f" {share:>6} {r['peak_rss_mb']:8.0f}")
        if match:
            line += f" {match['seconds']:9.3f} {match['peak_rss_mb']:8.0f} {match['seconds'] / r['seconds']:7.2f}x"
        elif failed:
            line += f" {'failed (out of memory?)':>27}"
        print(line)


if __name__ == "__main__":
    main(*sys.argv[1:4])
