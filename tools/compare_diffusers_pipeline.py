#!/usr/bin/env python3
"""Samples from a run folder written by diffuse with both diffuse and diffusers, given the same noise, and
compares the images.

1. `diffuse init MODEL RUN --pipeline` writes a run folder (unet/, scheduler/, model_index.json) with
   freshly initialised weights; diffusers' DDPMPipeline.from_pretrained(RUN) must load it unchanged.
2. x_T and every step's noise are drawn with torch and written as the noise file `diffuse sample --noise`
   reads (channels-last: x_T (N, H, W, C), noise (steps, N, H, W, C)).
3. `diffuse sample RUN --noise FILE --save-float ...` samples; diffusers samples with the same numbers:
   diffusers.utils.torch_utils.randn_tensor, as imported by the pipeline and the scheduler modules, is
   replaced by a function that returns x_T on the pipeline's call and noise[k] on the scheduler's k-th call
   (DDPMScheduler.step draws at every step but the last, DDIMScheduler.step with eta > 0 at every step).
4. The images are compared in [0, 1] (diffusers' output_type="np" against diffuse's --save-float) and as
   8-bit levels (numpy_to_pil's (x * 255).round() against diffuse's PNG files).
5. A baseline says how much float rounding alone can move the images: diffusers again, with x_T changed by
   about one float32 rounding (relative 1e-6). An untrained model's sampling ODE can amplify such a change a
   thousandfold (DDIM with eta 0 over 50 steps turns 1e-6 into differences of order 1, diffusers against
   itself), so a run passes when diffuse differs from diffusers by at most 1e-4 or by no more than ten
   times the baseline, or when no 8-bit level differs by more than one (a 1000-step DDPM chain turns
   rounding differences into ~1e-4: 0.03 of a level).

With --train-steps N the weights are first trained for N steps by PyTorch on Fashion-MNIST (L_simple, AdamW)
and the trained unet/ is rewritten by `diffuse convert`, so the run folder is still diffuse's own files: a
model that has learnt something samples along a far less chaotic path than a random one (see 5).

Usage: python3 tools/compare_diffusers_pipeline.py [--diffuse build/diffuse] [--model fashion-mnist]
           [--images 8] [--batch 3] [--runs ddpm:1000 ddim:50 ddim:50:1.0 dpm++:20] [--workdir DIR]
           [--train-steps 0] [--threads N] [--json FILE]
A run is SAMPLER:STEPS[:ETA]. --batch below --images makes diffuse sample in several batches while
diffusers samples all images at once, so the comparison also shows that batching does not change images.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

import diffusers
import diffusers.pipelines.ddim.pipeline_ddim as pipeline_ddim_module
import diffusers.pipelines.ddpm.pipeline_ddpm as pipeline_ddpm_module
import diffusers.schedulers.scheduling_ddim as scheduling_ddim_module
import diffusers.schedulers.scheduling_ddpm as scheduling_ddpm_module
import diffusers.schedulers.scheduling_dpmsolver_multistep as scheduling_dpm_module
from diffusers import DDIMPipeline, DDPMPipeline, DPMSolverMultistepScheduler


class InjectedNoise:
    """Stands in for randn_tensor: x_T for the pipeline, then one step's noise per scheduler call."""

    def __init__(self, x_T, steps):
        self.x_T, self.steps, self.calls = x_T, steps, 0

    def pipeline(self, shape, generator=None, device=None, dtype=None, layout=None):
        assert tuple(shape) == tuple(self.x_T.shape), (shape, self.x_T.shape)
        return self.x_T.clone().to(dtype=dtype or torch.float32)

    def scheduler(self, shape, generator=None, device=None, dtype=None, layout=None):
        assert self.calls < self.steps.shape[0], "the scheduler drew more noise than the file holds"
        noise = self.steps[self.calls]
        assert tuple(shape) == tuple(noise.shape), (shape, noise.shape)
        self.calls += 1
        return noise.clone().to(dtype=dtype or torch.float32)


def patch_randn(injected):
    for module in (pipeline_ddpm_module, pipeline_ddim_module):
        module.randn_tensor = injected.pipeline
    for module in (scheduling_ddpm_module, scheduling_ddim_module, scheduling_dpm_module):
        module.randn_tensor = injected.scheduler


def run_diffusers(run_dir, sampler, steps, eta, x_T, step_noise):
    pipe = DDPMPipeline.from_pretrained(run_dir)
    pipe.set_progress_bar_config(disable=True)
    injected = InjectedNoise(x_T, step_noise)
    patch_randn(injected)
    n = x_T.shape[0]
    with torch.no_grad():
        if sampler == "ddpm":
            out = pipe(batch_size=n, num_inference_steps=steps, output_type="np").images
        elif sampler == "ddim":
            ddim = DDIMPipeline(unet=pipe.unet, scheduler=pipe.scheduler)  # converts with from_config
            ddim.set_progress_bar_config(disable=True)
            out = ddim(batch_size=n, num_inference_steps=steps, eta=eta, output_type="np").images
        elif sampler == "dpm++":
            pipe.scheduler = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config)
            out = pipe(batch_size=n, num_inference_steps=steps, output_type="np").images
        else:
            raise ValueError(sampler)
    return out, injected.calls


def read_fashion_mnist(path="/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz"):
    """The training images as float32 (N, 1, 28, 28) in [-1, 1], as ToTensor + Normalize(0.5, 0.5)."""
    import gzip
    with gzip.open(path, "rb") as f:
        data = f.read()
    n, h, w = (int.from_bytes(data[4 * i:4 * i + 4], "big") for i in (1, 2, 3))
    pixels = np.frombuffer(data, dtype=np.uint8, offset=16).reshape(n, 1, h, w)
    return torch.from_numpy(pixels.astype(np.float32) / 255 * 2 - 1)


def train(diffuse, run_dir, steps, seed, workdir):
    """A short PyTorch training of the run's unet (DDPM L_simple), written back through diffuse convert."""
    pipe = DDPMPipeline.from_pretrained(run_dir)
    unet, sched = pipe.unet, pipe.scheduler
    images = read_fashion_mnist()
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(unet.parameters(), lr=2e-3)
    unet.train()
    t0 = time.time()
    for step in range(steps):
        x0 = images[torch.randint(0, images.shape[0], (32,), generator=g)]
        t = torch.randint(0, sched.config.num_train_timesteps, (32,), generator=g)
        eps = torch.randn(x0.shape, generator=g)
        loss = torch.nn.functional.mse_loss(unet(sched.add_noise(x0, eps, t), t).sample, eps)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 100 == 0 or step == steps - 1:
            print(f"train step {step}: loss {loss.item():.4f} ({time.time() - t0:.0f} s)", flush=True)
    trained = os.path.join(workdir, "trained_unet")
    unet.save_pretrained(trained)
    subprocess.run([diffuse, "convert", trained, os.path.join(run_dir, "unet")], check=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--diffuse", default="build/diffuse")
    ap.add_argument("--model", default="fashion-mnist", help="preset or config.json for diffuse init")
    ap.add_argument("--run", help="an existing run folder (e.g. from diffuse train) instead of diffuse init's")
    ap.add_argument("--seed", type=int, default=0, help="weights and noise")
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--batch", type=int, default=3, help="diffuse's --batch")
    ap.add_argument("--runs", nargs="+", default=["ddpm:1000", "ddim:10", "ddim:50", "ddim:50:1.0", "dpm++:20"])
    ap.add_argument("--no-baseline", action="store_true", help="skip the perturbed diffusers run")
    ap.add_argument("--train-steps", type=int, default=0, help="train the weights first (Fashion-MNIST models)")
    ap.add_argument("--workdir", help="keep the files here (default: a temporary folder)")
    ap.add_argument("--threads", type=int, help="diffuse's --threads (default: every core)")
    ap.add_argument("--json", help="also write the results to this file")
    args = ap.parse_args()

    workdir = args.workdir or tempfile.mkdtemp(prefix="compare_diffusers_")
    os.makedirs(workdir, exist_ok=True)
    run_dir = args.run or os.path.join(workdir, "run")
    if not args.run:
        subprocess.run([args.diffuse, "init", args.model, run_dir, "--pipeline", "--seed", str(args.seed)], check=True)
    if args.train_steps and not args.run:
        train(args.diffuse, run_dir, args.train_steps, args.seed, workdir)
    pipe = DDPMPipeline.from_pretrained(run_dir)  # the run folder must load unchanged
    cfg = pipe.unet.config
    size = cfg.sample_size if isinstance(cfg.sample_size, (list, tuple)) else (cfg.sample_size, cfg.sample_size)
    shape = (args.images, cfg.in_channels, *size)
    print(f"run folder {run_dir}: DDPMPipeline loads it ({sum(p.numel() for p in pipe.unet.parameters())} "
          f"parameters, {pipe.scheduler.__class__.__name__}); images {shape}; diffusers {diffusers.__version__}, "
          f"torch {torch.__version__}")

    results = []
    for run in args.runs:
        parts = run.split(":")
        sampler, steps = parts[0], int(parts[1])
        eta = float(parts[2]) if len(parts) > 2 else 0.0
        g = torch.Generator().manual_seed(args.seed + 1)
        x_T = torch.randn(shape, generator=g)
        step_noise = torch.randn((steps, *shape), generator=g)
        tag = f"{sampler}_{steps}_{eta:g}".replace("+", "p")
        noise_path = os.path.join(workdir, f"noise_{tag}.safetensors")
        save_file({"x_T": x_T.permute(0, 2, 3, 1).contiguous(),
                   "noise": step_noise.permute(0, 1, 3, 4, 2).contiguous()}, noise_path)

        float_path = os.path.join(workdir, f"diffuse_{tag}.safetensors")
        png_dir = os.path.join(workdir, f"diffuse_{tag}")
        cmd = [args.diffuse, "sample", run_dir, "--noise", noise_path, "-n", str(args.images), "--batch",
               str(args.batch), "--sampler", sampler, "--steps", str(steps), "--save-float", float_path,
               "--out-dir", png_dir, "-o", os.path.join(workdir, f"grid_{tag}.png")]
        if eta:
            cmd += ["--eta", str(eta)]
        if args.threads is not None:
            cmd += ["--threads", str(args.threads)]
        t0 = time.time()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        t_diffuse = time.time() - t0
        ours = load_file(float_path)["images"].numpy()
        ours_u8 = np.stack([np.array(Image.open(os.path.join(png_dir, f"{i:05d}.png"))) for i in range(args.images)])
        ours_u8 = ours_u8.reshape(ours.shape)

        t0 = time.time()
        theirs, calls = run_diffusers(run_dir, sampler, steps, eta, x_T, step_noise)
        t_diffusers = time.time() - t0
        theirs_u8 = (theirs * 255).round().astype("uint8")  # numpy_to_pil

        diff = np.abs(ours.astype(np.float64) - theirs.astype(np.float64))
        diff_u8 = np.abs(ours_u8.astype(np.int32) - theirs_u8.astype(np.int32))
        baseline = None
        if not args.no_baseline:
            g_perturb = torch.Generator().manual_seed(args.seed + 2)
            x_T_perturbed = x_T * (1 + 1e-6 * torch.randn(shape, generator=g_perturb))
            perturbed, _ = run_diffusers(run_dir, sampler, steps, eta, x_T_perturbed, step_noise)
            baseline = float(np.abs(perturbed.astype(np.float64) - theirs.astype(np.float64)).max())
        r = {
            "sampler": sampler, "steps": steps, "eta": eta, "images": args.images, "diffuse_batch": args.batch,
            "noise_draws": calls, "max_abs_unit": float(diff.max()), "mean_abs_unit": float(diff.mean()),
            "max_abs_levels": int(diff_u8.max()), "levels_differing": int((diff_u8 > 0).sum()),
            "values": int(diff_u8.size), "seconds_diffuse": round(t_diffuse, 2),
            "seconds_diffusers": round(t_diffusers, 2), "baseline_max_abs_unit": baseline,
        }
        r["pass"] = r["max_abs_unit"] <= max(1e-4, 10 * (baseline or 0)) or r["max_abs_levels"] <= 1
        results.append(r)
        print(f"{sampler:6s} {steps:5d} steps eta {eta:g}: max |diff| {r['max_abs_unit']:.3g} in [0,1] "
              f"(mean {r['mean_abs_unit']:.2g}), uint8 max {r['max_abs_levels']} level(s), "
              f"{r['levels_differing']} of {r['values']} values differ; noise draws {calls}; "
              + (f"baseline (diffusers, x_T * (1 + 1e-6 N)) {baseline:.3g}; " if baseline is not None else "")
              + f"diffuse {t_diffuse:.1f} s, diffusers {t_diffusers:.1f} s: {'pass' if r['pass'] else 'FAIL'}",
              flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    sys.exit(0 if all(r["pass"] for r in results) else 1)


if __name__ == "__main__":
    main()
