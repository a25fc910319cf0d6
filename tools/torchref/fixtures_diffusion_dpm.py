"""Fixtures for DPM-Solver++ (src/diffusion/sampler_dpm.c): diffusers' DPMSolverMultistepScheduler chains
at 10 and 50 steps for every beta schedule x prediction type, and for solver orders 1 and 3, heun,
lower_order_final off, final sigma sigma_min, euler_at_final, the leading and trailing spacings and a
learned_range model output. Each chain stores its timesteps, the model output of each step and every x
(see fixtures_diffusion.run_chain)."""
import torch
from diffusers import DPMSolverMultistepScheduler

from torchref.fixtures_diffusion import PREDICTIONS, SCHEDULES, chain_inputs, run_chain

AREA = "diffusion_dpm"

VARIANTS = [
    ("order1", dict(solver_order=1)),
    ("order3", dict(solver_order=3)),
    ("heun", dict(solver_type="heun")),
    ("no_lower_order_final", dict(lower_order_final=False)),
    ("sigma_min", dict(final_sigmas_type="sigma_min")),
    ("sigma_min_euler_at_final", dict(final_sigmas_type="sigma_min", euler_at_final=True)),
    ("leading", dict(timestep_spacing="leading")),
    ("trailing", dict(timestep_spacing="trailing")),
    ("learned_range", dict(variance_type="learned_range")),
]


def generate():
    g = torch.Generator().manual_seed(5678)
    t = {}
    inputs = chain_inputs(t, torch.Generator().manual_seed(8765))
    for steps in [10, 25, 50]:
        for sched in SCHEDULES:
            for pred in PREDICTIONS:
                if steps == 25 and (sched, pred) != ("linear", "epsilon"):
                    continue
                s = DPMSolverMultistepScheduler(beta_schedule=sched, prediction_type=pred)
                run_chain(t, f"dpm.{steps}.{sched}.{pred}", s, steps, inputs, g, pred)
        for name, kw in VARIANTS:
            s = DPMSolverMultistepScheduler(**kw)
            run_chain(t, f"dpm.{steps}.{name}", s, steps, inputs, g, s.config.prediction_type,
                      learned=kw.get("variance_type") == "learned_range")
    return t
