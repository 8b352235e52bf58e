"""The training loop: seeding, optimizer, learning rate schedule, one epoch, validation loss,
early stopping, and `fit`, which reports to loggers of Lightning's `Logger` shape."""

from __future__ import annotations

import copy
import gc
import os
import random
import sys
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Protocol

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from torchtrack import distributed
from torchtrack.activations import learned_activation_values
from torchtrack.budget import Budget
from torchtrack.checkpoints import EpochCheckpoint
from torchtrack.choices import LrSchedule, Optimizer, unknown
from torchtrack.config import TrainConfig
from torchtrack.errors import ConfigError, TrainingError
from torchtrack.loader import BLOCK_ROWS, make_loader, resident
from torchtrack.losses import build_loss

PACK_STEPS = 1024  # steps whose losses train_one_epoch holds as separate tensors, at most
STEP_LOSS = "train_loss_step"  # a batch's loss, logged every `log_every` steps at the global step


class TrainingLogger(Protocol):
    """What `fit` reports to, in the shape of Lightning's `Logger`: `Tracker` (TensorBoard and
    MLflow), `TrainingProgress` (the terminal), or anything else with this method."""

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        """`metrics` at `step`: {STEP_LOSS: loss} at a global step, or `epoch_metrics` at an epoch."""


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch, turn on deterministic algorithms; return a generator."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    # cuBLAS is deterministic only with a fixed workspace; it reads this when CUDA starts.
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    if "torch._inductor.config" in sys.modules:
        torch.use_deterministic_algorithms(True, warn_only=True)
    else:
        # torch.use_deterministic_algorithms also sets Inductor's flag, which imports Inductor and
        # Dynamo (over a second of CPU per stage); nothing here compiles, so Inductor, if it is
        # ever imported, reads the same flag from its environment variable instead.
        os.environ["TORCHINDUCTOR_DETERMINISTIC"] = "1"
        torch._C._set_deterministic_algorithms(True, warn_only=True)
    return torch.Generator().manual_seed(seed)


def set_threads(num_threads: int) -> None:
    """Use `num_threads` CPU threads (0 keeps PyTorch's default of one per core).

    A model this small spends more time synchronising threads than computing: one thread
    was much faster than two on this busy 2-core machine.
    """
    if num_threads > 0:
        torch.set_num_threads(num_threads)


def resolve_device(name: str) -> torch.device:
    """`auto` means CUDA when one is present, else CPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device is cuda but no CUDA device is available; use auto or cpu")
    return torch.device(name)


def make_optimizer(params: Iterable[torch.Tensor], config: TrainConfig) -> torch.optim.Optimizer:
    """The optimizer that `config.optimizer` names, at `config.lr` with `config.weight_decay`.

    SGD also takes `config.momentum`; AdamW's weight decay is decoupled from the gradient.
    Adam and AdamW run fused, one kernel per step for all parameters instead of a chain of
    small ones; fused SGD was slower, so SGD keeps PyTorch's default. `make bench` measures
    this choice on CPU and CUDA (README, Performance).
    """
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
        )
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay, fused=True)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay, fused=True)
    raise unknown("optimizer", config.optimizer, Optimizer)


def make_lr_schedule(
    optimizer: torch.optim.Optimizer, config: TrainConfig, epochs: int
) -> torch.optim.lr_scheduler.LRScheduler | None:
    """The per-epoch learning rate schedule that `config.lr_schedule` names; None for `none`.

    step: lr times `lr_step_gamma` every `lr_step_epochs` epochs; cosine: from lr down to 0
    over the run's `epochs` epochs (`Budget.epochs`), so the last epochs settle the weights.
    """
    if config.lr_schedule == "none":
        return None
    if config.lr_schedule == "step":
        return torch.optim.lr_scheduler.StepLR(
            optimizer, step_size=config.lr_step_epochs, gamma=config.lr_step_gamma
        )
    if config.lr_schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
    raise unknown("lr_schedule", config.lr_schedule, LrSchedule)


@torch.no_grad()
def start_at_the_target_mean(model: nn.Module, rows: Dataset, rounds: int = 60) -> bool:
    """Shift the bias of `model`'s last linear layer so that its mean prediction (in eval mode)
    on `rows` is their target's mean; return whether it did (False when no shift reaches it,
    as with a bounded activation). A split larger than a block (`BLOCK_ROWS`) is read at
    evenly spaced rows, a block of them (its `evenly_spaced`, where it has one): a mean needs
    no more, and a million rows would cost each round a full forward pass.

    The output layer then starts where the target is ("init well": a target of mean 150
    would otherwise cost thousands of small Adam steps just to move the bias there), and
    the steps go to fitting its shape. Bisection, since the mean prediction rises with that
    bias for every activation here that can reach the target.
    """
    if hasattr(rows, "evenly_spaced"):
        X, y = rows.evenly_spaced()  # (N, F), (N, 1)
    else:
        X, y = rows[:: max(len(rows) // BLOCK_ROWS, 1)]
    if 1 not in X.stride():
        # rows[::k] (k > 1) of a column-major X: no unit stride, so a matmul cannot read it in
        # place and each forward pass below would copy it to a contiguous one (most of their
        # time at a million rows); the same copy, once, gives the same bits.
        X = X.contiguous()
    model.eval()  # no dropout, and no draw from the random stream
    last = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
    start, target, spread = last.bias.clone(), y.mean().item(), y.std(correction=0).item()
    reach = abs(target) + 10 * spread + 1.0  # far enough past any target of this spread
    low, high = start - reach, start + reach
    for _ in range(rounds):  # each round halves the interval: 60 reach float32 resolution
        middle = (low + high) / 2
        last.bias.copy_(middle)
        if model(X).mean().item() < target:
            low = middle
        else:
            high = middle
    if abs(model(X).mean().item() - target) > 1e-3 * (spread + 1e-12):
        last.bias.copy_(start)  # out of reach: a saturated output would not learn
        return False
    return True


class EarlyStopping:
    """Stops training after `patience` epochs without a lower validation loss; keeps the best weights.

    `step(model, val_loss)` after each epoch returns True when training should stop;
    `restore_best(model)` then loads the weights of the best epoch back into the model.
    """

    def __init__(self, patience: int = 5):
        if patience < 1:
            raise ValueError(f"patience must be a positive number of epochs, got {patience!r}")
        self.patience = patience
        self.epoch = 0
        self.best_epoch = 0
        self.best_loss = float("inf")
        self._best_state: dict[str, torch.Tensor] | None = None

    def step(self, model: nn.Module, val_loss: float) -> bool:
        """Record one epoch's validation loss; True when `patience` epochs passed without improvement."""
        self.epoch += 1
        if val_loss < self.best_loss:
            self.best_epoch, self.best_loss = self.epoch, val_loss
            self._best_state = copy.deepcopy(model.state_dict())
        return self.stopped

    @property
    def stopped(self) -> bool:
        """True once `patience` epochs have passed without a better validation loss."""
        return self.epoch - self.best_epoch >= self.patience

    def restore_best(self, model: nn.Module) -> None:
        """Load the best epoch's weights into `model` (no-op before any epoch)."""
        if self._best_state is not None:
            model.load_state_dict(self._best_state)

    def state_dict(self) -> dict:
        """What a checkpoint needs to continue counting after a resume."""
        return {
            "epoch": self.epoch,
            "best_epoch": self.best_epoch,
            "best_loss": self.best_loss,
            "best_state": self._best_state or {},
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore what `state_dict` returned."""
        self.epoch, self.best_epoch, self.best_loss = state["epoch"], state["best_epoch"], state["best_loss"]
        self._best_state = state["best_state"] or None


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
    loader: Iterable[tuple[torch.Tensor, torch.Tensor]],
    loss_fn: nn.Module,
    optimizer: torch.optim.Optimizer,
    device: torch.device,
    *,
    first_step: int = 0,
    log_every: int = 0,
    loggers: Sequence[TrainingLogger] = (),
) -> float:
    """One pass over `loader`; returns the mean training loss over rows. Every `log_every`
    steps (0: never) each of `loggers` gets the batch loss as STEP_LOSS at the global step.

    Raises NonFiniteLossError at the first logging interval (or the epoch's end) after a
    non-finite loss, naming the step where it first appeared.
    """
    model.train()
    on_device = device.type != "cpu"  # batches of in-memory CPU tensors need no copy
    # Each step's loss, detached, and its rows: the epoch's mean and the divergence check
    # read them together, so a step adds no tensor operation beyond the bare loop's. The
    # losses are stacked into one tensor at each check (and every PACK_STEPS steps), so that
    # few small tensors stay alive: an epoch's worth of them, held between the blocks the
    # loader gathers, kept the heap from shrinking (500 MB more by the end of 70M rows).
    pending: list[torch.Tensor] = []  # since the last stack
    packed: list[torch.Tensor] = []  # (n,) stacks, in order
    rows: list[int] = []
    checked = 0  # packed[:checked] are known to be finite
    step = first_step
    for X, y in loader:
        if on_device:
            X, y = X.to(device, non_blocking=True), y.to(device, non_blocking=True)
        loss = loss_fn(model(X), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        pending.append(loss.detach())
        rows.append(len(X))
        step += 1
        due = bool(log_every) and step % log_every == 0
        if due or len(pending) == PACK_STEPS:
            packed.append(torch.stack(pending))
            pending = []
        if due:
            # Divergence is read here and at the epoch's end, not every step: reading the
            # device every step costs a host sync per step on a GPU.
            checked = _stop_if_diverged(packed, checked, first_step, optimizer)
            _log(loggers, {STEP_LOSS: loss.item()}, step)
    if pending:
        packed.append(torch.stack(pending))
    if not packed:
        return 0.0
    _stop_if_diverged(packed, checked, first_step, optimizer)
    weights = torch.tensor(rows, dtype=torch.float64, device=device)
    return (torch.cat(packed).double() @ weights).item() / sum(rows)


def _stop_if_diverged(
    packed: list[torch.Tensor], checked: int, first_step: int, optimizer: torch.optim.Optimizer
) -> int:
    """Raise NonFiniteLossError naming the first step whose loss was NaN or infinite, reading
    the stacks of losses after `checked`; else return how many stacks are known to be finite.
    One host sync while all is well."""
    if checked == len(packed):
        return checked
    finite = torch.isfinite(torch.cat(packed[checked:]))
    if finite.all().item():
        return len(packed)
    first = sum(len(losses) for losses in packed[:checked]) + int((~finite).nonzero()[0].item())
    raise NonFiniteLossError(first_step + first + 1, optimizer.param_groups[0]["lr"])


@torch.no_grad()
def evaluate_loss(
    model: nn.Module,
    loader: Iterable[tuple[torch.Tensor, torch.Tensor]],
    loss_fn: nn.Module,
    device: torch.device,
) -> float:
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
    """Losses at the end of one epoch, and the learning rate it trained with."""

    epoch: int
    train_loss: float
    val_loss: float
    lr: float | None = None


def epoch_metrics(result: EpochResult) -> dict[str, float]:
    """What an epoch logs: its mean train and val losses and its learning rate."""
    return {"train_loss": result.train_loss, "val_loss": result.val_loss, "lr": result.lr}


def _log(loggers: Sequence[TrainingLogger], metrics: dict[str, float], step: int) -> None:
    for logger in loggers:
        logger.log_metrics(metrics, step)


def fit(
    model: nn.Module,
    train_set: Dataset,
    val_set: Dataset,
    config: TrainConfig,
    *,
    generator: torch.Generator,
    device: torch.device,
    loggers: Sequence[TrainingLogger] = (),
    log_every: int = 0,
    checkpoint: EpochCheckpoint | None = None,
) -> list[EpochResult]:
    """Train `model` with `config`'s loss, optimizer and schedule; return every epoch's result.

    Each of `loggers` gets, in order, the batch loss every `log_every` steps (STEP_LOSS at
    the global step) and, after each epoch, `epoch_metrics` plus the values of the model's
    learnable activations (`activation.a`, ...) at the epoch number.

    The model first starts at the train target's mean (`start_at_the_target_mean`). The run
    lasts `Budget.plan`'s epochs: `config.max_steps` optimizer steps in whole epochs
    (at most `config.epochs`), in batches of at most a tenth of the train rows. With
    `config.early_stopping_patience` > 0 training may stop before that, and the model ends
    with the weights of its best validation epoch (see `final_epoch`).
    With a `checkpoint`, training resumes after its last saved epoch (if it has one for
    these params and data) and saves the state after every epoch, before logging it; the
    restored epochs are not logged again. In a process group (torchrun), each process trains
    `model` in DistributedDataParallel on its share of every batch, and the losses are the
    mean over every process's rows.

    While it trains, `fit` defers the interpreter's full garbage collections (see
    `_no_full_collections`) and restores the collector's thresholds when it returns or raises.
    """
    model.to(device)
    trained = distributed.wrap(model, device)  # DistributedDataParallel under torchrun, else `model`
    train_set, val_set = resident(train_set, device), resident(val_set, device)
    loss_fn = build_loss(config.loss, config.huber_delta)
    share = {"rank": distributed.rank(), "world_size": distributed.world_size()}  # this process's rows
    budget = Budget.plan(config, len(train_set), share["world_size"])
    start_at_the_target_mean(model, train_set)  # before a checkpoint's weights, if any
    optimizer = make_optimizer(model.parameters(), config)
    schedule = make_lr_schedule(optimizer, config, budget.epochs)
    stopper = EarlyStopping(config.early_stopping_patience) if config.early_stopping_patience else None
    train_loader = make_loader(train_set, budget.batch_size, config.shuffle, generator, **share)
    val_loader = make_loader(
        val_set, max(budget.batch_size, 16384), False, **share
    )  # forward only: big batches
    history = []
    # Everything the next epoch depends on; a checkpoint saves and restores all of it.
    stateful = {"model": model, "optimizer": optimizer, "schedule": schedule, "stopper": stopper}
    stateful = {name: obj for name, obj in stateful.items() if obj is not None}
    if checkpoint is not None:
        history = [EpochResult(**epoch) for epoch in checkpoint.restore(generator, **stateful)]
        distributed.check_same_on_every_rank(len(history), "the epochs to resume after", device)
        if stopper is not None and stopper.stopped:  # interrupted after early stopping decided
            return _finish(history, stopper, model)
    steps_per_epoch = len(train_loader)
    with _no_full_collections():
        for epoch in range(len(history) + 1, budget.epochs + 1):
            lr = optimizer.param_groups[0]["lr"]
            train_loss = train_one_epoch(
                trained,
                train_loader,
                loss_fn,
                optimizer,
                device,
                first_step=(epoch - 1) * steps_per_epoch,
                log_every=log_every,
                loggers=loggers,
            )
            # Over every process's rows: each rank logs, and early stopping decides, alike.
            train_loss = distributed.mean_over_ranks(train_loss, train_loader.n_rows, device)
            val_loss = evaluate_loss(model, val_loader, loss_fn, device)
            val_loss = distributed.mean_over_ranks(val_loss, val_loader.n_rows, device)
            result = EpochResult(epoch, train_loss, val_loss, lr)
            history.append(result)
            if schedule is not None:
                schedule.step()
            if stopper is not None:
                stopper.step(model, result.val_loss)
            if checkpoint is not None and distributed.is_node_leader():
                checkpoint.save([asdict(r) for r in history], generator, **stateful)
            _log(loggers, epoch_metrics(result) | learned_activation_values(model), epoch)
            if stopper is not None and stopper.stopped:
                break
    return _finish(history, stopper, model)


@contextmanager
def _no_full_collections() -> Iterator[None]:
    """Defer the interpreter's full (oldest-generation) garbage collections until the block
    ends, then put the collection thresholds back as they were.

    Creating a tracking client leaves many new long-lived objects, which soon trigger a full
    collection over all of them (hundreds of thousands with torch, pandas and MLflow loaded):
    a fraction of a second that lands in the first epochs, as gc.callbacks showed in the
    tracked benchmark loop. The young generations, where the loop's own garbage dies, are
    still collected. `gc.set_threshold` means the same on Python 3.11 to 3.13, and nothing is
    frozen, so a caller's `gc.freeze` is left as it was.
    """
    thresholds = gc.get_threshold()
    gc.set_threshold(thresholds[0], thresholds[1], 2**31 - 1)  # never reached
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)


def _finish(history: list[EpochResult], stopper: EarlyStopping | None, model: nn.Module) -> list[EpochResult]:
    if stopper is not None:
        stopper.restore_best(model)
    return history


def final_epoch(history: list[EpochResult], config: TrainConfig) -> EpochResult:
    """The epoch whose weights `fit` leaves in the model: the best one with early stopping, else the last."""
    if config.early_stopping_patience:
        return min(history, key=lambda r: r.val_loss)
    return history[-1]
