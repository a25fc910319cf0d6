#!/usr/bin/env python3
"""The PyTorch side of `make bench`: diffusers' UNet2DModel on the same configuration, batch, threads and
step as bench/train.c (q_sample -> forward -> MSE -> backward -> AdamW step; a sampling step is a forward
pass plus DDPMScheduler.step), median seconds after a warm-up, and the process's peak RSS. Prints the
same JSON lines as bench/train.c.

    python3 tools/bench_pytorch.py --config CONFIG.json --batch 16 [--steps 5] [--threads N] [--sample-only]
        [--precision fp32|bf16] [--name MODEL] [--min-seconds S]
--steps is the least number of steps measured, --min-seconds the least time they take, as in bench/train.c.
(scripts/bench-train writes CONFIG.json with `diffuse init PRESET FOLDER`.)

--precision bf16 runs the forward passes under torch.autocast("cpu", dtype=torch.bfloat16), as a PyTorch
user trains in bf16: the MSE loss on the prediction cast back to fp32, backward and AdamW outside autocast
(fp32 master weights and optimizer state), the scheduler step in fp32. The JSON lines then carry
"precision": "bf16" in args and " bf16" at the end of the shape.
"""
import argparse
import json
import pathlib
import resource
import sys
import time

import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler, UNet2DModel

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from torchref.timing import median_seconds  # noqa: E402


def median_seconds_over(fn, steps, min_seconds):
    """The median over at least `steps` calls and at least `min_seconds` of them (from a warm-up call's time)."""
    start = time.perf_counter()
    fn()
    last = time.perf_counter() - start
    if last > 0 and min_seconds / last > steps:
        steps = int(min_seconds / last) + 1
    return median_seconds(fn, 0, steps)


def forward_flops(model, x, t):
    """Multiply-adds of convs, linears and the attention matmuls, counted with hooks (as diffuse counts them)."""
    macs = 0

    def conv_hook(m, inp, out):
        nonlocal macs
        macs += out.numel() * m.in_channels * m.kernel_size[0] * m.kernel_size[1] // m.groups

    def linear_hook(m, inp, out):
        nonlocal macs
        macs += out.numel() * m.in_features

    hooks = [m.register_forward_hook(conv_hook) for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    hooks += [m.register_forward_hook(linear_hook) for m in model.modules() if isinstance(m, torch.nn.Linear)]
    original = F.scaled_dot_product_attention

    def sdpa(q, k, v, *args, **kwargs):
        nonlocal macs
        macs += 2 * q.shape[0] * q.shape[1] * q.shape[2] * k.shape[2] * q.shape[3]
        return original(q, k, v, *args, **kwargs)

    F.scaled_dot_product_attention = sdpa
    with torch.no_grad():
        model(x, t)
    F.scaled_dot_product_attention = original
    for h in hooks:
        h.remove()
    return 2 * macs


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--config", required=True)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--min-seconds", type=float, default=0.0)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--sample-only", action="store_true")
    p.add_argument("--name", default="")
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    config = json.load(open(a.config))
    model = UNet2DModel.from_config(config)
    size = config["sample_size"] if isinstance(config["sample_size"], int) else config["sample_size"][0]
    x0 = torch.rand(a.batch, config["in_channels"], size, size) * 2 - 1
    labels = torch.zeros(a.batch, dtype=torch.long) if config.get("num_class_embeds") else None
    scheduler = DDPMScheduler()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.95, 0.999), weight_decay=1e-6, eps=1e-8)
    flops = forward_flops(model, x0, torch.full((a.batch,), 500))
    shape = f"{a.name} {size}x{size} batch {a.batch}" + (" bf16" if a.precision == "bf16" else "")
    args = {"model": a.name, "size": size, "batch": a.batch, "precision": a.precision}
    bf16 = a.precision == "bf16"

    def autocast():
        return torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16)

    def report(op, seconds, total_flops):
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps({"op": op, "shape": shape, "args": args, "threads": torch.get_num_threads(),
                          "seconds": seconds, "gflops": total_flops / seconds * 1e-9,
                          "images_per_second": a.batch / seconds, "peak_rss_mb": rss}), flush=True)

    def train_step():
        noise = torch.randn_like(x0)
        t = torch.randint(0, 1000, (a.batch,))
        x_t = scheduler.add_noise(x0, noise, t)
        with autocast():
            pred = model(x_t, t, class_labels=labels).sample
            loss = F.mse_loss(pred.float(), noise)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    x = torch.randn_like(x0)

    def sample_step():
        nonlocal x
        with torch.no_grad():
            with autocast():
                eps = model(x, torch.full((a.batch,), 500), class_labels=labels).sample
            x = scheduler.step(eps.float(), 500, x).prev_sample

    if not a.sample_only:
        model.train()
        report("train_step", median_seconds_over(train_step, a.steps, a.min_seconds), 3 * flops)
    model.eval()
    report("sample_step", median_seconds_over(sample_step, a.steps, a.min_seconds), flops)


if __name__ == "__main__":
    main()
