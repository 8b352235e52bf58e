"""The training loop: seeding, optimizer, one epoch, validation loss, and `fit`."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from torchtrack.checkpoints import EpochCheckpoint
from torchtrack.config import TrainConfig
from torchtrack.errors import ConfigError, TrainingError

StepCallback = Callable[[int, float], None]  # (global step, batch loss)


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch, turn on deterministic algorithms; return a generator."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    return torch.Generator().manual_seed(seed)


def resolve_device(name: str) -> torch.device:
    """`auto` means CUDA when one is present, else CPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device is cuda but no CUDA device is available; use auto or cpu")
    return torch.device(name)


def make_optimizer(params, config: TrainConfig) -> torch.optim.Optimizer:
    """The optimizer that `config.optimizer` names, at `config.lr`."""
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr)
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr)
    raise ValueError(f"unknown optimizer {config.optimizer!r}; allowed: sgd, adam")


def make_loader(
    dataset: Dataset, batch_size: int, shuffle: bool, generator: torch.Generator | None = None
) -> DataLoader:
    """A DataLoader over `dataset`; shuffling draws from `generator` for reproducibility."""
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, generator=generator)


class NonFiniteLossError(TrainingError):
    """The loss became NaN or infinite: training diverged, most often from too large a rate."""

    def __init__(self, step: int, lr: float):
        super().__init__(
            f"the training loss became NaN or infinite at step {step} with learning rate {lr:g}: "
            f"training diverged; lower train.lr (e.g. to {lr / 10:g}) and run again"
        )
        self.step = step
        self.lr = lr


def train_one_epoch(
    model: nn.Module,
    loader: DataLoader,
    loss_fn: nn.Module,
    optimizer: torch.optim.Optimizer,
    device: torch.device,
    *,
    first_step: int = 0,
    log_every: int = 0,
    on_step: StepCallback | None = None,
) -> float:
    """One pass over `loader`; returns the mean training loss over rows.

    Raises NonFiniteLossError at the first logging interval (or the epoch's end) after a
    non-finite loss, naming the step where it first appeared.
    """
    model.train()
    total = torch.zeros((), device=device)
    # Divergence is tracked on the device and read at the logging interval and the epoch's
    # end: reading it every step would cost a host sync per step on a GPU.
    finite = torch.ones((), dtype=torch.bool, device=device)  # every loss so far was finite
    finite_steps = torch.zeros((), dtype=torch.long, device=device)  # steps before the first that was not
    rows = 0
    step = first_step
    for X, y in loader:
        X, y = X.to(device, non_blocking=True), y.to(device, non_blocking=True)
        loss = loss_fn(model(X), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total += loss.detach() * len(X)
        finite &= torch.isfinite(loss.detach())
        finite_steps += finite
        rows += len(X)
        step += 1
        if log_every and step % log_every == 0:
            _stop_if_diverged(finite, first_step + finite_steps, optimizer)  # one host sync per interval
            if on_step is not None:
                on_step(step, loss.item())
    _stop_if_diverged(finite, first_step + finite_steps, optimizer)
    return total.item() / max(rows, 1)


def _stop_if_diverged(finite: torch.Tensor, steps_before: torch.Tensor, optimizer: torch.optim.Optimizer):
    if not finite.item():
        raise NonFiniteLossError(int(steps_before.item()) + 1, optimizer.param_groups[0]["lr"])


@torch.no_grad()
def evaluate_loss(model: nn.Module, loader: DataLoader, loss_fn: nn.Module, device: torch.device) -> float:
    """Mean loss over rows, in eval mode, without gradients."""
    model.eval()
    total = torch.zeros((), device=device)
    rows = 0
    for X, y in loader:
        X, y = X.to(device), y.to(device)
        total += loss_fn(model(X), y) * len(X)
        rows += len(X)
    return total.item() / max(rows, 1)


@dataclass
class EpochResult:
    """Losses at the end of one epoch."""

    epoch: int
    train_loss: float
    val_loss: float


def fit(
    model: nn.Module,
    train_set: Dataset,
    val_set: Dataset,
    config: TrainConfig,
    *,
    generator: torch.Generator,
    device: torch.device,
    log_every: int = 0,
    on_step: StepCallback | None = None,
    on_epoch: Callable[[EpochResult], None] | None = None,
    checkpoint: EpochCheckpoint | None = None,
) -> list[EpochResult]:
    """Train `model` for `config.epochs` epochs with MSE; report each epoch to `on_epoch`.

    With a `checkpoint`, training resumes after its last saved epoch (if it has one for
    these params and data) and saves the state after every epoch, before `on_epoch`.
    """
    model.to(device)
    loss_fn = nn.MSELoss()
    optimizer = make_optimizer(model.parameters(), config)
    train_loader = make_loader(train_set, config.batch_size, config.shuffle, generator)
    val_loader = make_loader(val_set, max(config.batch_size, 1024), False)
    history = []
    if checkpoint is not None:
        restored = checkpoint.restore(generator, model=model, optimizer=optimizer)
        history = [EpochResult(**epoch) for epoch in restored]
    steps_per_epoch = len(train_loader)
    for epoch in range(len(history) + 1, config.epochs + 1):
        train_loss = train_one_epoch(
            model,
            train_loader,
            loss_fn,
            optimizer,
            device,
            first_step=(epoch - 1) * steps_per_epoch,
            log_every=log_every,
            on_step=on_step,
        )
        result = EpochResult(epoch, train_loss, evaluate_loss(model, val_loader, loss_fn, device))
        history.append(result)
        if checkpoint is not None:
            checkpoint.save([asdict(r) for r in history], generator, model=model, optimizer=optimizer)
        if on_epoch is not None:
            on_epoch(result)
    return history
