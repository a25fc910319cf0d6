"""Fixtures for tests/test_elementwise.c: SiLU, nearest 2x upsampling, 2x2 average pooling, channel
concatenation, the scaled residual add, the per-channel add and the scale-shift of diffusers' ResnetBlock2D,
each forward and backward in PyTorch. Image tensors are made NCHW, run through the torch ops, and stored
channels-last (N, H, W, C); per-sample vectors are (N, C)."""
import torch
import torch.nn.functional as F

from torchref.layout import to_nhwc

AREA = "elementwise"


def _grads(fn, *inputs):
    """Runs fn on leaf copies of inputs and backpropagates a random dout; returns (out, dout, grads)."""
    leaves = [t.clone().requires_grad_(True) for t in inputs]
    out = fn(*leaves)
    dout = torch.randn_like(out)
    out.backward(dout)
    return out.detach(), dout, [t.grad for t in leaves]


def generate():
    out = {}

    # SiLU on values well into both tails, plus exact zero.
    x = torch.cat([torch.randn(200) * 4, torch.linspace(-30, 30, 61), torch.tensor([0.0, -88.0, 90.0])])
    y, dy, (dx,) = _grads(F.silu, x)
    out.update({"silu.x": x, "silu.y": y, "silu.dy": dy, "silu.dx": dx})

    # Nearest 2x upsampling and 2x2 average pooling.
    x = torch.randn(2, 3, 4, 5)
    y, dy, (dx,) = _grads(lambda t: F.interpolate(t, scale_factor=2.0, mode="nearest"), x)
    out.update({"upsample.x": to_nhwc(x), "upsample.y": to_nhwc(y), "upsample.dy": to_nhwc(dy),
                "upsample.dx": to_nhwc(dx)})
    x = torch.randn(2, 3, 6, 8)
    y, dy, (dx,) = _grads(lambda t: F.avg_pool2d(t, kernel_size=2, stride=2), x)
    out.update({"avgpool.x": to_nhwc(x), "avgpool.y": to_nhwc(y), "avgpool.dy": to_nhwc(dy),
                "avgpool.dx": to_nhwc(dx)})

    # Skip concatenation on channels.
    a, b = torch.randn(2, 3, 4, 5), torch.randn(2, 2, 4, 5)
    y, dy, (da, db) = _grads(lambda p, q: torch.cat([p, q], dim=1), a, b)
    out.update({"concat.a": to_nhwc(a), "concat.b": to_nhwc(b), "concat.y": to_nhwc(y), "concat.dy": to_nhwc(dy),
                "concat.da": to_nhwc(da), "concat.db": to_nhwc(db)})

    # (input + hidden) / output_scale_factor.
    osf = 0.7
    a, b = torch.randn(2, 4, 3, 5), torch.randn(2, 4, 3, 5)
    y, dy, (da, db) = _grads(lambda p, q: (p + q) / osf, a, b)
    out.update({"add_scaled.a": to_nhwc(a), "add_scaled.b": to_nhwc(b), "add_scaled.y": to_nhwc(y),
                "add_scaled.dy": to_nhwc(dy), "add_scaled.da": to_nhwc(da), "add_scaled.db": to_nhwc(db),
                "add_scaled.output_scale_factor": torch.tensor([osf])})

    # hidden + temb[:, :, None, None].
    x, v = torch.randn(2, 6, 3, 4), torch.randn(2, 6)
    y, dy, (dx, dv) = _grads(lambda p, q: p + q[:, :, None, None], x, v)
    out.update({"add_channel.x": to_nhwc(x), "add_channel.v": v, "add_channel.y": to_nhwc(y),
                "add_channel.dy": to_nhwc(dy), "add_channel.dx": to_nhwc(dx), "add_channel.dv": dv})

    # hidden * (1 + scale) + shift, scale and shift per (sample, channel).
    x, scale, shift = torch.randn(2, 6, 3, 4), torch.randn(2, 6) * 0.5, torch.randn(2, 6)
    y, dy, (dx, dscale, dshift) = _grads(lambda p, s, t: p * (1 + s[:, :, None, None]) + t[:, :, None, None],
                                         x, scale, shift)
    out.update({"scale_shift.x": to_nhwc(x), "scale_shift.scale": scale, "scale_shift.shift": shift,
                "scale_shift.y": to_nhwc(y), "scale_shift.dy": to_nhwc(dy), "scale_shift.dx": to_nhwc(dx),
                "scale_shift.dscale": dscale, "scale_shift.dshift": dshift})
    return out
