"""Fixtures for tests/test_loss.c: torch.nn.functional.mse_loss (reduction "mean") and its gradient with an
upstream gradient dloss != 1. The loss is elementwise, so the NCHW tensors are stored channels-last like
every activation. Dropout has no fixture: its mask comes from diffuse's own counter-based generator, which
PyTorch does not reproduce; the tests check it against core/rng.h instead."""
import torch
import torch.nn.functional as F

from torchref.layout import to_nhwc

AREA = "loss"


def generate():
    pred = torch.randn(4, 3, 8, 8, requires_grad=True)
    target = torch.randn(4, 3, 8, 8)
    dloss = 0.7
    loss = F.mse_loss(pred, target)
    loss.backward(torch.tensor(dloss))
    return {"mse.pred": to_nhwc(pred.detach()), "mse.target": to_nhwc(target), "mse.loss": loss.detach().reshape(1),
            "mse.dloss": torch.tensor([dloss]), "mse.dpred": to_nhwc(pred.grad)}
