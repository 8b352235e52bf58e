"""Optimizers, learning rate schedules, early stopping and the training loss, all from params."""

from types import SimpleNamespace

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from torchtrack.config import TrainConfig
from torchtrack.losses import HuberLoss
from torchtrack.training import (
    EarlyStopping,
    EpochResult,
    final_epoch,
    fit,
    make_lr_schedule,
    make_optimizer,
)

CPU = torch.device("cpu")


def tiny_data(rows=64, seed=0):
    generator = torch.Generator().manual_seed(seed)
    X = torch.randn(rows, 2, generator=generator)
    y = X @ torch.tensor([[1.5], [-2.0]]) + 0.5 + 0.1 * torch.randn(rows, 1, generator=generator)
    return TensorDataset(X, y)


def train(config, model=None, train_set=None, val_set=None):
    torch.manual_seed(0)
    model = model or nn.Linear(2, 1)
    history = fit(
        model,
        train_set or tiny_data(),
        val_set or tiny_data(seed=1),
        config,
        generator=torch.Generator().manual_seed(0),
        device=CPU,
    )
    return model, history


def test_sgd_takes_momentum_and_weight_decay():
    optimizer = make_optimizer(
        nn.Linear(2, 1).parameters(), TrainConfig(optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=1e-3)
    )
    assert isinstance(optimizer, torch.optim.SGD)
    group = optimizer.param_groups[0]
    assert (group["lr"], group["momentum"], group["weight_decay"]) == (0.1, 0.9, 1e-3)


@pytest.mark.parametrize(("name", "cls"), [("adam", torch.optim.Adam), ("adamw", torch.optim.AdamW)])
def test_adam_and_adamw_take_lr_and_weight_decay(name, cls):
    optimizer = make_optimizer(
        nn.Linear(2, 1).parameters(), TrainConfig(optimizer=name, lr=0.003, weight_decay=0.05)
    )
    assert type(optimizer) is cls
    assert (optimizer.param_groups[0]["lr"], optimizer.param_groups[0]["weight_decay"]) == (0.003, 0.05)


def test_unknown_optimizer_names_the_allowed_values():
    with pytest.raises(ValueError, match="unknown optimizer 'rmsprop'; allowed: sgd, adam, adamw"):
        make_optimizer(nn.Linear(1, 1).parameters(), SimpleNamespace(optimizer="rmsprop"))


def test_unknown_schedule_names_the_allowed_values():
    optimizer = make_optimizer(nn.Linear(1, 1).parameters(), TrainConfig())
    with pytest.raises(ValueError, match="allowed: none, step, cosine"):
        make_lr_schedule(optimizer, SimpleNamespace(lr_schedule="linear"), 10)  # TrainConfig refuses it


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adamw"])
def test_every_optimizer_lowers_the_loss(optimizer):
    _, history = train(
        TrainConfig(
            optimizer=optimizer,
            lr=0.05,
            momentum=0.9 if optimizer == "sgd" else 0.0,
            epochs=15,
            batch_size=16,
        )
    )
    assert history[-1].val_loss < 0.2 * history[0].val_loss


def test_constant_lr_without_a_schedule():
    _, history = train(TrainConfig(lr=0.02, lr_schedule="none", epochs=3, batch_size=32))
    assert [r.lr for r in history] == [0.02] * 3


def test_step_schedule_multiplies_lr_every_n_epochs():
    _, history = train(
        TrainConfig(lr=0.1, lr_schedule="step", lr_step_epochs=2, lr_step_gamma=0.5, epochs=5, batch_size=32)
    )
    assert [r.lr for r in history] == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.025])


def test_cosine_schedule_anneals_from_lr_towards_zero():
    _, history = train(TrainConfig(lr=0.1, lr_schedule="cosine", epochs=4, batch_size=32))
    assert [r.lr for r in history] == pytest.approx([0.1, 0.0853553, 0.05, 0.0146447], rel=1e-5)


def test_training_uses_the_configured_loss():
    val_set = tiny_data(seed=1)
    model, history = train(
        TrainConfig(loss="huber", huber_delta=0.05, epochs=2, batch_size=32), val_set=val_set
    )
    with torch.no_grad():
        expected = HuberLoss(delta=0.05)(model(val_set.tensors[0]), val_set.tensors[1]).item()
    assert history[-1].val_loss == pytest.approx(expected, rel=1e-5)


def test_early_stopping_waits_patience_epochs_and_restores_the_best():
    model = nn.Linear(1, 1)
    stopper = EarlyStopping(patience=2)
    decisions = []
    for epoch, val_loss in enumerate([3.0, 2.0, 2.5, 1.0, 1.5, 1.2], start=1):
        with torch.no_grad():
            model.weight.fill_(epoch)
        decisions.append(stopper.step(model, val_loss))
    assert decisions == [False, False, False, False, False, True]
    assert (stopper.best_epoch, stopper.best_loss) == (4, 1.0)
    stopper.restore_best(model)
    assert model.weight.item() == 4.0


def test_early_stopping_needs_a_positive_patience():
    with pytest.raises(ValueError, match="patience"):
        EarlyStopping(patience=0)


def test_fit_stops_early_when_val_loss_stops_improving_and_keeps_the_best_epoch():
    # Validation targets the model cannot approach: val_loss rises once training starts to fit.
    train_set = tiny_data()
    val_X, _ = train_set.tensors
    val_set = TensorDataset(val_X, -train_set.tensors[1])
    config = TrainConfig(lr=0.05, epochs=50, batch_size=16, early_stopping_patience=3)
    model, history = train(config, train_set=train_set, val_set=val_set)
    assert len(history) < 50
    best = final_epoch(history, config)
    assert best.val_loss == min(r.val_loss for r in history) and len(history) == best.epoch + 3
    with torch.no_grad():
        kept = nn.functional.mse_loss(model(val_X), val_set.tensors[1]).item()
    assert kept == pytest.approx(best.val_loss, rel=1e-5)


def test_final_epoch_is_the_last_without_early_stopping():
    history = [EpochResult(1, 1.0, 0.5), EpochResult(2, 0.9, 0.7)]
    assert final_epoch(history, TrainConfig()).epoch == 2
    assert final_epoch(history, TrainConfig(early_stopping_patience=1)).epoch == 1
