"""Losses: MSE, L1, and a hand-written Huber loss (the journal's next lesson), built by name.

build_loss("huber", huber_delta=0.5)  # an nn.Module taking (prediction, target)
"""

from __future__ import annotations

import torch
from torch import nn

from torchtrack.choices import Loss, unknown

REDUCTIONS = ("mean", "sum", "none")


class HuberLoss(nn.Module):
    """0.5 * e^2 where |e| <= delta, else delta * (|e| - 0.5 * delta), with e = input - target.

    Quadratic near zero like MSE, linear in the tails like L1, so a few large errors
    (outliers) pull the fit less than under MSE. Matches `torch.nn.functional.huber_loss`.
    """

    def __init__(self, delta: float = 1.0, reduction: str = "mean"):
        super().__init__()
        if not delta > 0:
            raise ValueError(f"HuberLoss delta must be positive, got {delta!r}")
        if reduction not in REDUCTIONS:
            raise ValueError(f"unknown reduction {reduction!r}; allowed: {', '.join(REDUCTIONS)}")
        self.delta = float(delta)
        self.reduction = reduction

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        error = input - target
        size = error.abs()
        loss = torch.where(size <= self.delta, 0.5 * error * error, self.delta * (size - 0.5 * self.delta))
        if self.reduction == "mean":
            return loss.mean()
        if self.reduction == "sum":
            return loss.sum()
        return loss

    def extra_repr(self) -> str:
        return f"delta={self.delta:g}, reduction={self.reduction!r}"


def build_loss(name: Loss = "mse", huber_delta: float = 1.0) -> nn.Module:
    """The loss module for `name`, one of choices.Loss; `huber_delta` is used by huber only."""
    if name == "mse":
        return nn.MSELoss()
    if name == "l1":
        return nn.L1Loss()
    if name == "huber":
        return HuberLoss(delta=huber_delta)
    raise unknown("loss", name, Loss)
