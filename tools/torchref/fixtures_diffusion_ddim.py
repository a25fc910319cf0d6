"""Fixtures for DDIM sampling (src/diffusion/sampler_ddim.c): diffusers' DDIMScheduler chains at 10 and 50
steps for every beta schedule x prediction type x clip setting, and for the spacings, set_alpha_to_one,
steps_offset, eta > 0 and use_clipped_model_output. Each chain stores its timesteps, the model output of
each step and every x (see fixtures_diffusion.run_chain), and chain.noise the noise of each step
(eta > 0)."""
import torch
from diffusers import DDIMScheduler

from torchref.fixtures_diffusion import PREDICTIONS, SCHEDULES, chain_inputs, run_chain

AREA = "diffusion_ddim"

VARIANTS = [
    ("trailing", dict(timestep_spacing="trailing"), {}),
    ("linspace", dict(timestep_spacing="linspace"), {}),
    ("no_alpha_one_offset1", dict(set_alpha_to_one=False, steps_offset=1), {}),
    ("eta1", dict(), dict(eta=1.0)),
    ("eta0.5_clipped_output", dict(prediction_type="v_prediction"), dict(eta=0.5, use_clipped_model_output=True)),
    ("cosine_trailing_sample_noclip", dict(beta_schedule="squaredcos_cap_v2", timestep_spacing="trailing",
                                           prediction_type="sample", clip_sample=False), {}),
]


def generate():
    g = torch.Generator().manual_seed(4321)
    t = {}
    inputs = chain_inputs(t, torch.Generator().manual_seed(8765))
    for steps in [10, 50]:
        for sched in SCHEDULES:
            for pred in PREDICTIONS:
                for clip in [False, True]:
                    s = DDIMScheduler(beta_schedule=sched, prediction_type=pred, clip_sample=clip)
                    run_chain(t, f"ddim.{steps}.{sched}.{pred}.clip{int(clip)}", s, steps, inputs, g, pred)
        for name, kw, step_kw in VARIANTS:
            s = DDIMScheduler(**kw)
            run_chain(t, f"ddim.{steps}.{name}", s, steps, inputs, g, s.config.prediction_type,
                      step_kwargs=step_kw, noise_kw="variance_noise" if step_kw.get("eta", 0) > 0 else None)
    return t
