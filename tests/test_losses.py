"""Losses: the hand-written HuberLoss matches torch for every delta and reduction, with
gradients; MSE, L1 and Huber are selectable by name."""

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from torchtrack.choices import Loss, names
from torchtrack.losses import HuberLoss, build_loss

REDUCTIONS = ("mean", "sum", "none")


def errors_around(delta: float) -> torch.Tensor:
    """Errors inside, exactly at and beyond +-delta, plus zero."""
    scale = torch.tensor([0.0, 0.1, 0.5, 0.999, 1.0, 1.001, 2.0, 10.0], dtype=torch.float64)
    return torch.cat([scale, -scale]) * delta


@pytest.mark.parametrize("delta", [1e-3, 0.1, 0.5, 1.0, 1.35, 3.0, 100.0])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_huber_matches_torch_values_and_gradients(delta, reduction):
    target = torch.linspace(-2, 2, 16, dtype=torch.float64)
    pred_mine = (target + errors_around(delta)).requires_grad_()
    pred_torch = pred_mine.detach().clone().requires_grad_()
    mine = HuberLoss(delta=delta, reduction=reduction)(pred_mine, target)
    expected = F.huber_loss(pred_torch, target, delta=delta, reduction=reduction)
    torch.testing.assert_close(mine, expected)
    mine.sum().backward()
    expected.sum().backward()
    torch.testing.assert_close(pred_mine.grad, pred_torch.grad)


@settings(max_examples=60, deadline=None)
@given(
    delta=st.floats(1e-3, 1e3),
    reduction=st.sampled_from(REDUCTIONS),
    seed=st.integers(0, 2**16),
    spread=st.floats(1e-2, 1e3),
)
def test_huber_matches_torch_on_random_float32_batches(delta, reduction, seed, spread):
    generator = torch.Generator().manual_seed(seed)
    pred = (torch.randn(33, 1, generator=generator) * spread).requires_grad_()
    target = torch.randn(33, 1, generator=generator) * spread
    mine = HuberLoss(delta, reduction)(pred, target)
    expected = F.huber_loss(pred, target, delta=delta, reduction=reduction)
    assert mine.dtype == torch.float32
    torch.testing.assert_close(mine, expected)
    (mine_grad,) = torch.autograd.grad(mine.sum(), pred)
    (torch_grad,) = torch.autograd.grad(expected.sum(), pred)
    torch.testing.assert_close(mine_grad, torch_grad)


def test_huber_is_half_squared_error_inside_delta_and_linear_outside():
    loss = HuberLoss(delta=2.0, reduction="none")
    values = loss(torch.tensor([1.0, -1.0, 3.0, -5.0]), torch.zeros(4))
    torch.testing.assert_close(values, torch.tensor([0.5, 0.5, 2.0 * (3 - 1), 2.0 * (5 - 1)]))


def test_huber_defaults_to_delta_one_and_mean():
    loss = HuberLoss()
    assert (loss.delta, loss.reduction) == (1.0, "mean")


@pytest.mark.parametrize("delta", [0.0, -1.0, float("nan")])
def test_huber_requires_a_positive_delta(delta):
    with pytest.raises(ValueError, match="delta must be positive"):
        HuberLoss(delta=delta)


def test_huber_rejects_an_unknown_reduction():
    with pytest.raises(ValueError, match="allowed: mean, sum, none"):
        HuberLoss(reduction="median")


def test_build_loss_selects_each_loss_by_name():
    assert isinstance(build_loss("mse"), nn.MSELoss)
    assert isinstance(build_loss("l1"), nn.L1Loss)
    huber = build_loss("huber", huber_delta=0.25)
    assert isinstance(huber, HuberLoss) and huber.delta == 0.25
    assert names(Loss) == ("mse", "l1", "huber")


def test_unknown_loss_names_the_allowed_values():
    with pytest.raises(ValueError, match="unknown loss 'hinge'; allowed: mse, l1, huber"):
        build_loss("hinge")
