"""Fixtures for the variational bound (src/diffusion/likelihood.c): an independent float64 PyTorch
computation of the DDPM bound's terms, written from the DDPM paper (eq. 5, 7, 13) and improved-diffusion's
conventions: prior KL at T, KL between Gaussian posteriors, the discretised Gaussian decoder at t = 0
(8-bit bins on [-1, 1], outer bins open, probabilities floored at 1e-12), bits/dim = nats / (D ln 2).

Stored: elementary KL and bin log-probabilities; each term for fixed x0, x_t and model outputs at chosen
timesteps for every prediction type x variance type (fixed_small, fixed_large, learned_range) x clipping;
and a whole bound over a T = 20 schedule with a linear model eps_hat = sqrt(1 - abar_t) x_t and given noise.
Schedules are float64 (the C tests build them with SCHEDULE_PRECISION_DOUBLE)."""
import math

import torch

from torchref.fixtures_diffusion import SHAPE, flat

AREA = "diffusion_vlb"
TERM_TIMESTEPS = [0, 1, 2, 10, 100, 500, 998, 999]
LOOP_T = 20
D = SHAPE[1] * SHAPE[2] * SHAPE[3]


def schedule(T, beta_start, beta_end, kind="linear"):
    if kind == "linear":
        betas = torch.tensor([beta_start + (beta_end - beta_start) * i / (T - 1) for i in range(T)], dtype=torch.float64)
    else:
        f = lambda t: math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2
        betas = torch.tensor([min(1 - f((i + 1) / T) / f(i / T), 0.999) for i in range(T)], dtype=torch.float64)
    alphas = 1 - betas
    ab = torch.cumprod(alphas, 0)
    ab_prev = torch.cat([torch.ones(1, dtype=torch.float64), ab[:-1]])
    post_var = betas * (1 - ab_prev) / (1 - ab)
    return dict(T=T, betas=betas, alphas=alphas, ab=ab, ab_prev=ab_prev, post_var=post_var,
                post_logvar=torch.log(torch.cat([post_var[1:2], post_var[1:]])),
                c1=betas * ab_prev.sqrt() / (1 - ab), c2=(1 - ab_prev) * alphas.sqrt() / (1 - ab))


def normal_kl(m1, lv1, m2, lv2):
    return 0.5 * (-1.0 + lv2 - lv1 + torch.exp(lv1 - lv2) + (m1 - m2) ** 2 * torch.exp(-lv2))


def disc_log_prob(x, mean, log_scale):
    ndtr = torch.special.ndtr
    inv_std = torch.exp(-log_scale)
    up, lo = inv_std * (x - mean + 1 / 255), inv_std * (x - mean - 1 / 255)
    mid = torch.where(lo > 0, ndtr(-lo) - ndtr(-up), ndtr(up) - ndtr(lo))
    p = torch.where(x < -0.999, ndtr(up), torch.where(x > 0.999, ndtr(-lo), mid))
    return torch.log(p.clamp(min=1e-12))


def term_bpd(s, x0, x_t, out, t, pred, var, clip):
    """Per-sample bits/dim of the term at timesteps t (one per sample); NCHW float64 tensors."""
    ti = t.view(-1, 1, 1, 1)
    ab = s["ab"][ti]
    if var == "learned_range":
        out, v = out[:, :3], out[:, 3:]
    if pred == "epsilon":
        x0_hat = (1 / ab).sqrt() * x_t - (1 / ab - 1).sqrt() * out
    elif pred == "sample":
        x0_hat = out
    else:
        x0_hat = ab.sqrt() * x_t - (1 - ab).sqrt() * out
    if clip:
        x0_hat = x0_hat.clamp(-1, 1)
    c1, c2 = s["c1"][ti], s["c2"][ti]
    true_mean, true_lv = c1 * x0 + c2 * x_t, s["post_logvar"][ti].expand_as(x0)
    mean = c1 * x0_hat + c2 * x_t
    if var == "fixed_small":
        lv = true_lv
    elif var == "fixed_large":
        lv = torch.log(torch.cat([s["post_var"][1:2], s["betas"][1:]]))[ti].expand_as(x0)
    else:
        frac = (v + 1) / 2
        lv = frac * torch.log(s["betas"][ti]) + (1 - frac) * true_lv
    kl = normal_kl(true_mean, true_lv, mean, lv).mean(dim=(1, 2, 3)) / math.log(2)
    nll = -disc_log_prob(x0, mean, 0.5 * lv).mean(dim=(1, 2, 3)) / math.log(2)
    return torch.where(t == 0, nll, kl)


def prior_bpd(s, x0):
    ab = s["ab"][-1]
    return normal_kl(ab.sqrt() * x0, torch.log(1 - ab), torch.zeros(()), torch.zeros(())).mean(dim=(1, 2, 3)) / math.log(2)


def f32(x):
    return x.float().double()


def grid_x0(g):
    k = torch.randint(0, 256, SHAPE, generator=g)
    k.view(-1)[:4] = torch.tensor([0, 255, 0, 255])
    return (k.double() / 127.5 - 1)


def elementary(t, g):
    m1, m2 = torch.randn(64, generator=g, dtype=torch.float64), torch.randn(64, generator=g, dtype=torch.float64)
    lv1, lv2 = torch.randn(64, generator=g, dtype=torch.float64) * 3, torch.randn(64, generator=g, dtype=torch.float64) * 3
    m1, m2, lv1, lv2 = f32(m1), f32(m2), f32(lv1), f32(lv2)
    t["kl.in"] = torch.stack([m1, lv1, m2, lv2])
    t["kl.out"] = normal_kl(m1, lv1, m2, lv2)
    x = f32(torch.randint(0, 256, (256,), generator=g).double() / 127.5 - 1)
    x[:4] = torch.tensor([-1.0, 1.0, -1.0, 1.0], dtype=torch.float64)
    mean = f32(x + torch.randn(256, generator=g, dtype=torch.float64) * 0.05)
    mean[-8:] = f32(x[-8:] + 0.5)  # far tails: the 1e-12 floor
    log_scale = f32(torch.rand(256, generator=g, dtype=torch.float64) * 6 - 7)
    t["disc.in"] = torch.stack([x, mean, log_scale])
    t["disc.out"] = disc_log_prob(x, mean, log_scale)


def terms(t, g):
    s = schedule(1000, 1e-4, 0.02)
    x0 = grid_x0(g)
    eps = torch.randn(SHAPE, generator=g, dtype=torch.float64)
    err = torch.randn(SHAPE, generator=g, dtype=torch.float64) * 0.3
    var_ch = torch.rand(SHAPE, generator=g, dtype=torch.float64) * 2 - 1
    t["term.x0"] = flat(x0)
    t["term.prior"] = prior_bpd(s, f32(x0))
    for k, tt in enumerate(TERM_TIMESTEPS):
        ts = torch.tensor([tt, TERM_TIMESTEPS[(k + 3) % len(TERM_TIMESTEPS)]])
        ab = s["ab"][ts].view(-1, 1, 1, 1)
        x_t = f32(ab.sqrt() * x0 + (1 - ab).sqrt() * eps)
        outs = {"epsilon": eps + err, "sample": x0 + err, "v_prediction": ab.sqrt() * eps - (1 - ab).sqrt() * x0 + err}
        t[f"term.{k}.t"] = ts.float()
        t[f"term.{k}.x_t"] = flat(x_t)
        for pred, out in outs.items():
            out = f32(out)
            t[f"term.{k}.{pred}.model_output"] = flat(out)
            t[f"term.{k}.{pred}.model_output_learned"] = flat(torch.cat([out, f32(var_ch)], 1))
            for var in ["fixed_small", "fixed_large", "learned_range"]:
                o = torch.cat([out, f32(var_ch)], 1) if var == "learned_range" else out
                for clip in [False, True]:
                    t[f"term.{k}.{pred}.{var}.clip{int(clip)}"] = term_bpd(s, f32(x0), x_t, o, ts, pred, var, clip)
    # The cosine schedule, one configuration.
    s = schedule(1000, 0, 0, "squaredcos_cap_v2")
    for k, tt in enumerate(TERM_TIMESTEPS):
        ts = torch.tensor([tt, tt])
        ab = s["ab"][ts].view(-1, 1, 1, 1)
        x_t = f32(ab.sqrt() * x0 + (1 - ab).sqrt() * eps)
        t[f"cosine.{k}.x_t"] = flat(x_t)
        t[f"cosine.{k}.bpd"] = term_bpd(s, f32(x0), x_t, f32(eps + err), ts, "epsilon", "fixed_small", True)


def whole_bound(t, g):
    s = schedule(LOOP_T, 1e-3, 0.2)
    x0 = f32(grid_x0(g))
    noise = [f32(torch.randn(SHAPE, generator=g, dtype=torch.float64)) for _ in range(LOOP_T)]
    decoder = terms_sum = torch.zeros(2, dtype=torch.float64)
    for tt in range(LOOP_T):
        ts = torch.tensor([tt, tt])
        ab = s["ab"][tt]
        x_t = f32(ab.sqrt() * x0 + (1 - ab).sqrt() * noise[tt])
        out = f32((1 - ab).sqrt() * x_t)
        b = term_bpd(s, x0, x_t, out, ts, "epsilon", "fixed_small", False)
        if tt == 0:
            decoder = b
        else:
            terms_sum = terms_sum + b
    prior = prior_bpd(s, x0)
    t["loop.x0"] = flat(x0)
    t["loop.noise"] = torch.stack([flat(n) for n in noise])
    t["loop.prior"], t["loop.decoder"], t["loop.terms"] = prior, decoder, terms_sum
    t["loop.total"] = prior + decoder + terms_sum


def generate():
    g = torch.Generator().manual_seed(2468)
    t = {}
    elementary(t, g)
    terms(t, g)
    whole_bound(t, g)
    return t
