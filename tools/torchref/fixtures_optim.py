"""Fixtures for the optimizer layer: torch.optim.SGD / AdamW trajectories, diffusers' EMAModel decay and
averages, diffusers' learning-rate schedules, and torch.nn.utils.clip_grad_norm_."""
import torch
from diffusers.optimization import get_scheduler
from diffusers.training_utils import EMAModel

AREA = "optim"
N = 1000
STEPS = 5

SGD_CASES = {
    "sgd_plain": dict(lr=1e-2),
    "sgd_momentum_wd": dict(lr=1e-2, momentum=0.9, weight_decay=1e-2, dampening=0.1),
    "sgd_nesterov": dict(lr=1e-2, momentum=0.9, nesterov=True),
}
ADAMW_CASES = {
    "adamw_diffusers": dict(lr=1e-4, betas=(0.95, 0.999), weight_decay=1e-6, eps=1e-8),
    "adamw_strong_decay": dict(lr=1e-2, betas=(0.9, 0.99), weight_decay=0.1, eps=1e-6),
}
SCHEDULES = ["constant", "constant_with_warmup", "linear", "cosine"]


def trajectory(make_optimizer, p0, grads):
    p = torch.nn.Parameter(p0.clone())
    opt = make_optimizer([p])
    out = []
    for g in grads:
        p.grad = g.clone()
        opt.step()
        out.append(p.detach().clone())
    return torch.stack(out)


def generate():
    t = {}
    p0 = torch.randn(N)
    grads = torch.randn(STEPS, N)
    t["p0"], t["grads"] = p0, grads
    for name, kw in SGD_CASES.items():
        t[name] = trajectory(lambda ps: torch.optim.SGD(ps, **kw), p0, grads)
    for name, kw in ADAMW_CASES.items():
        t[name] = trajectory(lambda ps: torch.optim.AdamW(ps, **kw), p0, grads)

    # EMA: train_unconditional's settings, and the EMAModel defaults without warmup.
    for name, kw in {"ema_warmup": dict(decay=0.9999, use_ema_warmup=True, inv_gamma=1.0, power=0.75),
                     "ema_plain": dict(decay=0.999, update_after_step=2)}.items():
        model = torch.nn.Linear(N, 1, bias=False)
        with torch.no_grad():
            model.weight.copy_(p0.view(1, N))
        ema = EMAModel(model.parameters(), **kw)
        decays, averages = [], []
        for k in range(STEPS):
            with torch.no_grad():
                model.weight.copy_(grads[k].view(1, N))
            ema.step(model.parameters())
            decays.append(ema.cur_decay_value)
            averages.append(ema.shadow_params[0].detach().view(N).clone())
        t[name + "_decay"] = torch.tensor(decays, dtype=torch.float64)
        t[name + "_average"] = torch.stack(averages)
        t[name + "_decay_1000"] = torch.tensor([ema.get_decay(1000)], dtype=torch.float64)

    # LR schedules: 10 warmup steps of 50, factors for steps 0..59.
    for name in SCHEDULES:
        opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
        sched = get_scheduler(name, optimizer=opt, num_warmup_steps=10, num_training_steps=50)
        factors = []
        for _ in range(60):
            factors.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
        t["lr_" + name] = torch.tensor(factors, dtype=torch.float64)

    # Clipping over two parameters seen as one flat buffer, one case clipped and one not.
    for name, scale in {"clip_large": 10.0, "clip_small": 0.001}.items():
        a, b = torch.nn.Parameter(torch.zeros(600)), torch.nn.Parameter(torch.zeros(400))
        a.grad, b.grad = grads[0][:600] * scale, grads[0][600:] * scale
        norm = torch.nn.utils.clip_grad_norm_([a, b], max_norm=1.0)
        t[name + "_norm"] = norm.detach().reshape(1).double()
        t[name + "_grads"] = torch.cat([a.grad, b.grad])
    return t
