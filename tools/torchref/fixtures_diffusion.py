"""Fixtures for the diffusion library (src/diffusion/), from diffusers' schedulers.

Area "diffusion": schedule tables, add_noise / get_velocity, the timestep sequences of set_timesteps, and
DDPMScheduler.step for every beta schedule x prediction type x variance type x clip setting, at single
timesteps and along short chains. Also writes diffusers' own scheduler_config.json files to
tests/fixtures/diffusion_config_*.json. The other diffusion areas (fixtures_diffusion_ddim.py, _dpm.py,
_vlb.py) import the helpers below.

Buffers are stored channels-last (N, H, W, C), flattened, as the C library keeps them; every scheduler
formula is elementwise, so the layout only matters for learned_range's 2C-channel model output.
"""
import pathlib
import tempfile

import numpy as np
import torch
from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler
import diffusers.schedulers.scheduling_ddpm as scheduling_ddpm

from torchref.layout import to_nhwc

AREA = "diffusion"

ROOT = pathlib.Path(__file__).resolve().parent.parent.parent
SHAPE = (2, 3, 4, 4)  # N, C, H, W of single steps
CHAIN_SHAPE = (2, 3, 2, 4)  # of chains: smaller, as they store every step
SCHEDULES = ["linear", "scaled_linear", "squaredcos_cap_v2"]
PREDICTIONS = ["epsilon", "sample", "v_prediction"]
VARIANCES = ["fixed_small", "fixed_small_log", "fixed_large", "learned_range"]
STEP_TIMESTEPS = [999, 998, 900, 750, 487, 250, 100, 10, 2, 1, 0]
# Numbers of inference steps whose timestep sequences are compared (80, 400: rounding ties, half to even;
# 61, 103: diffusers' trailing spacing breaks there; 1000: DPM-Solver's linspace and leading break).
SEQUENCE_STEPS = [1, 2, 3, 7, 10, 25, 50, 61, 80, 100, 103, 250, 333, 400, 500, 999, 1000]
CHAIN_STEPS = 50


def flat(x):
    """An NCHW tensor as the C library's flat channels-last buffer."""
    return to_nhwc(x).reshape(-1)


def flat_rows(rows):
    return torch.stack([flat(r) for r in rows])


def scheduler_inputs(generator, n_rows):
    """Per row: x0, the epsilon of x_t, a model output near it, learned_range's v channels and noise."""
    out = []
    for _ in range(n_rows):
        x0 = torch.rand(SHAPE, generator=generator) * 2 - 1
        eps = torch.randn(SHAPE, generator=generator)
        model = eps + 0.5 * torch.randn(SHAPE, generator=generator)
        var = torch.rand(SHAPE, generator=generator) * 2 - 1  # learned_range's v in [-1, 1]
        noise = torch.randn(SHAPE, generator=generator)
        out.append((x0, eps, model, var, noise))
    return out


class InjectedNoise:
    """Replaces DDPMScheduler's randn_tensor so a step uses the given noise."""

    def __init__(self):
        self.noise = None
        self.original = scheduling_ddpm.randn_tensor

    def __enter__(self):
        scheduling_ddpm.randn_tensor = lambda shape, **kw: self.noise.clone()
        return self

    def __exit__(self, *exc):
        scheduling_ddpm.randn_tensor = self.original


def broken_sequence(ts, n, T):
    ts = [int(t) for t in ts]
    return len(ts) != n or min(ts) < 0 or max(ts) >= T or any(a <= b for a, b in zip(ts, ts[1:]))


# ------------------------------------------------------------------------------------------------------


def schedule_tables(t):
    for name in SCHEDULES:
        s = DDPMScheduler(beta_schedule=name)
        t[f"schedule.{name}.betas"] = s.betas
        t[f"schedule.{name}.alphas_cumprod"] = s.alphas_cumprod
    s = DDPMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)
    t["schedule.sd.alphas_cumprod"] = s.alphas_cumprod
    s = DDPMScheduler(num_train_timesteps=4000, beta_schedule="squaredcos_cap_v2")
    t["schedule.cosine4000.alphas_cumprod"] = s.alphas_cumprod


def forward_process(t, g):
    x0 = torch.rand(SHAPE, generator=g) * 2 - 1
    noise = torch.randn(SHAPE, generator=g)
    timesteps = torch.tensor([999, 17])
    t["q.x0"], t["q.noise"], t["q.t"] = flat(x0), flat(noise), timesteps.float()
    for name in SCHEDULES:
        s = DDPMScheduler(beta_schedule=name)
        t[f"q.{name}.x_t"] = flat(s.add_noise(x0, noise, timesteps))
        t[f"q.{name}.v"] = flat(s.get_velocity(x0, noise, timesteps))


def timestep_sequences(t):
    for cls, tag, T in [(DDPMScheduler, "ddpm", 1000), (DDIMScheduler, "ddim", 1000),
                        (DPMSolverMultistepScheduler, "dpm", 1000), (DDIMScheduler, "ddim", 50)]:
        for spacing in ["leading", "linspace", "trailing"]:
            for offset in ([0, 1] if spacing == "leading" else [0]):
                for n in SEQUENCE_STEPS:
                    if n > T:
                        continue
                    s = cls(num_train_timesteps=T, timestep_spacing=spacing, steps_offset=offset)
                    s.set_timesteps(n)
                    ts = s.timesteps.numpy()
                    name = f"timesteps.{tag}.T{T}.{spacing}.off{offset}.n{n}"
                    if broken_sequence(ts, n, T):
                        t[name + ".broken"] = torch.ones(1)
                    else:
                        t[name] = torch.from_numpy(ts.astype(np.float32))


def ddpm_single_steps(t, g):
    rows = scheduler_inputs(g, len(STEP_TIMESTEPS))
    xs, models, models_learned, noises = [], [], [], []
    for (x0, eps, model, var, noise), ts in zip(rows, STEP_TIMESTEPS):
        ab = DDPMScheduler().alphas_cumprod[ts]  # the linear schedule; other schedules reuse the same x
        xs.append(ab.sqrt() * x0 + (1 - ab).sqrt() * eps)
        models.append(model)
        models_learned.append(torch.cat([model, var], dim=1))
        noises.append(noise)
    t["ddpm.t"] = torch.tensor(STEP_TIMESTEPS, dtype=torch.float32)
    t["ddpm.x"] = flat_rows(xs)
    t["ddpm.model_output"] = flat_rows(models)
    t["ddpm.model_output_learned"] = flat_rows(models_learned)
    t["ddpm.noise"] = flat_rows(noises)
    with InjectedNoise() as inject:
        for sched in SCHEDULES:
            for pred in PREDICTIONS:
                for var in VARIANCES:
                    for clip in [False, True]:
                        s = DDPMScheduler(beta_schedule=sched, prediction_type=pred, variance_type=var,
                                          clip_sample=clip)
                        prev, x0s = [], []
                        for i, ts in enumerate(STEP_TIMESTEPS):
                            inject.noise = noises[i]
                            model = models_learned[i] if var == "learned_range" else models[i]
                            out = s.step(model, ts, xs[i])
                            prev.append(out.prev_sample)
                            x0s.append(out.pred_original_sample)
                        name = f"ddpm.{sched}.{pred}.{var}.clip{int(clip)}"
                        t[name + ".prev"] = flat_rows(prev)
                        if var == "fixed_small":
                            t[name + ".pred_x0"] = flat_rows(x0s)
        # Clipping to a range other than 1.
        s = DDPMScheduler(prediction_type="sample", clip_sample=True, clip_sample_range=0.5)
        prev = []
        for i, ts in enumerate(STEP_TIMESTEPS):
            inject.noise = noises[i]
            prev.append(s.step(models[i], ts, xs[i]).prev_sample)
        t["ddpm.range0.5.prev"] = flat_rows(prev)


def chain_inputs(t, g):
    """Shared inputs of every chain test: x_T and the noise of each step."""
    x_T = torch.randn(CHAIN_SHAPE, generator=g)
    noises = [torch.randn(CHAIN_SHAPE, generator=g) for _ in range(CHAIN_STEPS)]
    t["chain.x_T"] = flat(x_T)
    t["chain.noise"] = flat_rows(noises)
    return x_T, noises


DATA_STD = 0.8  # the model below denoises data x0 ~ N(0, DATA_STD^2): realistic magnitudes along a chain


def model_output(x, alpha_cumprod, prediction_type, g, learned=False):
    """A plausible, imperfect model for data x0 ~ N(0, DATA_STD^2): the optimal x0 estimate
    E[x0 | x_t] = a s^2 x / (a^2 s^2 + b^2) plus 0.2 N(0, 1) error, expressed in the prediction type (and with
    learned_range's v channels). The error lives in x0 space, so every prediction type keeps x0 = O(1) at
    every t, as a trained model does, and chains keep realistic magnitudes."""
    a, b = alpha_cumprod.sqrt(), (1 - alpha_cumprod).sqrt()
    s2 = DATA_STD ** 2
    x0 = a * s2 * x / (a * a * s2 + b * b) + 0.2 * torch.randn(CHAIN_SHAPE, generator=g)
    eps = (x - a * x0) / b
    out = {"epsilon": eps, "sample": x0, "v_prediction": a * eps - b * x0}[prediction_type]
    if learned:
        out = torch.cat([out, torch.rand(CHAIN_SHAPE, generator=g) * 2 - 1], 1)
    return out


def run_chain(t, name, scheduler, steps, inputs, g, prediction_type, learned=False, step_kwargs=None,
              noise_kw=None):
    """Runs a diffusers chain from x_T with model_output(); stores its timesteps, per-step model outputs and
    every x (x[0] = x_T, x[i+1] = the output of step i)."""
    x_T, noises = inputs
    scheduler.set_timesteps(steps)
    x, xs, outs = x_T.clone(), [x_T], []
    for i, ts in enumerate(scheduler.timesteps):
        out = model_output(x, scheduler.alphas_cumprod[int(ts)], prediction_type, g, learned)
        kw = dict(step_kwargs or {})
        if noise_kw == "inject":
            INJECT.noise = noises[i]
        elif noise_kw:
            kw[noise_kw] = noises[i]
        x = scheduler.step(out, ts, x, **kw).prev_sample
        xs.append(x)
        outs.append(out)
    t[f"{name}.timesteps"] = scheduler.timesteps.float()
    t[f"{name}.model_output"] = flat_rows(outs)
    t[f"{name}.x"] = flat_rows(xs)


INJECT = InjectedNoise()


def ddpm_chains(t, inputs, g):
    configs = [
        ("leading10", dict(), 10),
        ("trailing10", dict(timestep_spacing="trailing"), 10),
        ("linspace10", dict(timestep_spacing="linspace"), 10),
        ("leading50_offset1", dict(steps_offset=1, variance_type="fixed_large"), 50),
        ("cosine_v_learned25", dict(beta_schedule="squaredcos_cap_v2", prediction_type="v_prediction",
                                    variance_type="learned_range", clip_sample=False), 25),
    ]
    with INJECT:
        for name, kw, steps in configs:
            s = DDPMScheduler(**kw)
            run_chain(t, f"ddpm_chain.{name}", s, steps, inputs, g, s.config.prediction_type,
                      learned=kw.get("variance_type") == "learned_range", noise_kw="inject")


def config_files():
    out = ROOT / "tests" / "fixtures"
    for fname, sched in [
        ("diffusion_config_ddpm.json", DDPMScheduler()),
        ("diffusion_config_ddpm_cifar10.json", DDPMScheduler(variance_type="fixed_large")),
        ("diffusion_config_ddpm_custom.json",
         DDPMScheduler(num_train_timesteps=4, trained_betas=[0.1, 0.2, 0.000125, 0.5], prediction_type="v_prediction",
                       variance_type="fixed_small_log", clip_sample=False, clip_sample_range=2.5,
                       timestep_spacing="trailing", steps_offset=1, beta_start=0.00085, beta_end=0.012)),
        ("diffusion_config_ddim.json", DDIMScheduler()),
        ("diffusion_config_ddim_sd.json",
         DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, set_alpha_to_one=False,
                       steps_offset=1, clip_sample=False)),
        ("diffusion_config_dpm.json", DPMSolverMultistepScheduler()),
    ]:
        with tempfile.TemporaryDirectory() as tmp:
            sched.save_config(tmp)
            (out / fname).write_bytes((pathlib.Path(tmp) / "scheduler_config.json").read_bytes())


def generate():
    g = torch.Generator().manual_seed(1234)
    t = {}
    schedule_tables(t)
    forward_process(t, g)
    timestep_sequences(t)
    ddpm_single_steps(t, g)
    ddpm_chains(t, chain_inputs(t, g), g)
    config_files()
    return t
