"""The training loop: seeding, optimizer, learning rate schedule, one epoch, validation loss,
early stopping, and `fit`."""

from __future__ import annotations

import copy
import gc
import os
import random
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from torchtrack.checkpoints import EpochCheckpoint
from torchtrack.config import TrainConfig
from torchtrack.data import BatchIndexSampler, BlockBatches
from torchtrack.errors import ConfigError, TrainingError
from torchtrack.losses import build_loss

StepCallback = Callable[[int, float], None]  # (global step, batch loss)


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch, turn on deterministic algorithms; return a generator."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    # cuBLAS is deterministic only with a fixed workspace; it reads this when CUDA starts.
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=True)
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


OPTIMIZERS = ("sgd", "adam", "adamw")
LR_SCHEDULES = ("none", "step", "cosine")


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
    raise ValueError(f"unknown optimizer {config.optimizer!r}; allowed: {', '.join(OPTIMIZERS)}")


def make_lr_schedule(
    optimizer: torch.optim.Optimizer, config: TrainConfig
) -> torch.optim.lr_scheduler.LRScheduler | None:
    """The per-epoch learning rate schedule that `config.lr_schedule` names; None for `none`.

    step: lr times `lr_step_gamma` every `lr_step_epochs` epochs; cosine: from lr down to 0
    over `config.epochs` epochs.
    """
    if config.lr_schedule == "none":
        return None
    if config.lr_schedule == "step":
        return torch.optim.lr_scheduler.StepLR(
            optimizer, step_size=config.lr_step_epochs, gamma=config.lr_step_gamma
        )
    if config.lr_schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs)
    raise ValueError(f"unknown lr_schedule {config.lr_schedule!r}; allowed: {', '.join(LR_SCHEDULES)}")


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


BLOCK_ROWS = 65_536  # rows gathered per indexing operation: a few MB, however large the split


def make_loader(
    dataset: Dataset, batch_size: int, shuffle: bool, generator: torch.Generator | None = None
) -> BlockBatches:
    """Batches of `batch_size` rows from `dataset`; shuffling draws from `generator` for
    reproducibility.

    A DataLoader fetches blocks of whole batches (about `BLOCK_ROWS` rows): the sampler
    yields index tensors, on the dataset's `device` if it has one, `dataset[index_tensor]`
    must return the whole block in one indexing operation (TabularDataset does), and
    `batch_size=None` hands it over uncollated. The batches are then views of the block, in
    the order a bare `randperm` loop takes them. In-memory tensors need no worker processes,
    so none are started.
    """
    block_rows = max(1, BLOCK_ROWS // batch_size) * batch_size
    device = getattr(dataset, "device", "cpu")
    sampler = BatchIndexSampler(len(dataset), block_rows, shuffle, generator, device)
    loader = DataLoader(dataset, sampler=sampler, batch_size=None, collate_fn=_as_is)
    return BlockBatches(loader, batch_size, len(dataset))


def _as_is(batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    return batch  # already a batch of tensors: nothing to collate or convert


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
    on_step: StepCallback | None = None,
) -> float:
    """One pass over `loader`; returns the mean training loss over rows.

    Raises NonFiniteLossError at the first logging interval (or the epoch's end) after a
    non-finite loss, naming the step where it first appeared.
    """
    model.train()
    on_device = device.type != "cpu"  # batches of in-memory CPU tensors need no copy
    # Each step's loss, detached, and its rows: the epoch's mean and the divergence check
    # read them together, so a step adds no tensor operation beyond the bare loop's.
    losses: list[torch.Tensor] = []
    rows: list[int] = []
    checked = 0  # losses[:checked] are known to be finite
    step = first_step
    for X, y in loader:
        if on_device:
            X, y = X.to(device, non_blocking=True), y.to(device, non_blocking=True)
        loss = loss_fn(model(X), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.detach())
        rows.append(len(X))
        step += 1
        if log_every and step % log_every == 0:
            # Divergence is read here and at the epoch's end, not every step: reading the
            # device every step costs a host sync per step on a GPU.
            checked = _stop_if_diverged(losses, checked, first_step, optimizer)
            if on_step is not None:
                on_step(step, loss.item())
    if not losses:
        return 0.0
    _stop_if_diverged(losses, checked, first_step, optimizer)
    weights = torch.tensor(rows, dtype=torch.float64, device=device)
    return (torch.stack(losses).double() @ weights).item() / sum(rows)


def _stop_if_diverged(
    losses: list[torch.Tensor], checked: int, first_step: int, optimizer: torch.optim.Optimizer
) -> int:
    """Raise NonFiniteLossError naming the first step whose loss was NaN or infinite; else
    return how many losses are known to be finite. One host sync while all is well."""
    if checked == len(losses):
        return checked
    finite = torch.isfinite(torch.stack(losses[checked:]))
    if finite.all().item():
        return len(losses)
    first = checked + int((~finite).nonzero()[0].item())
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
    """Train `model` with `config`'s loss, optimizer and schedule; report each epoch to `on_epoch`.

    With `config.early_stopping_patience` > 0 training may stop before `config.epochs`, and
    the model ends with the weights of its best validation epoch (see `final_epoch`).
    With a `checkpoint`, training resumes after its last saved epoch (if it has one for
    these params and data) and saves the state after every epoch, before `on_epoch`.
    """
    model.to(device)
    train_set, val_set = _resident(train_set, device), _resident(val_set, device)
    loss_fn = build_loss(config.loss, config.huber_delta)
    optimizer = make_optimizer(model.parameters(), config)
    schedule = make_lr_schedule(optimizer, config)
    stopper = EarlyStopping(config.early_stopping_patience) if config.early_stopping_patience else None
    train_loader = make_loader(train_set, config.batch_size, config.shuffle, generator)
    val_loader = make_loader(val_set, max(config.batch_size, 16384), False)  # forward only: big batches
    history = []
    # Everything the next epoch depends on; a checkpoint saves and restores all of it.
    stateful = {"model": model, "optimizer": optimizer, "schedule": schedule, "stopper": stopper}
    stateful = {name: obj for name, obj in stateful.items() if obj is not None}
    if checkpoint is not None:
        history = [EpochResult(**epoch) for epoch in checkpoint.restore(generator, **stateful)]
        if stopper is not None and stopper.stopped:  # interrupted after early stopping decided
            return _finish(history, stopper, model)
    steps_per_epoch = len(train_loader)
    with _frozen_heap():  # no full garbage collection in the middle of training
        for epoch in range(len(history) + 1, config.epochs + 1):
            lr = optimizer.param_groups[0]["lr"]
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
            result = EpochResult(epoch, train_loss, evaluate_loss(model, val_loader, loss_fn, device), lr)
            history.append(result)
            if schedule is not None:
                schedule.step()
            if stopper is not None:
                stopper.step(model, result.val_loss)
            if checkpoint is not None:
                checkpoint.save([asdict(r) for r in history], generator, **stateful)
            if on_epoch is not None:
                on_epoch(result)
            if stopper is not None and stopper.stopped:
                break
    return _finish(history, stopper, model)


# Objects frozen before anyone could freeze any: Python 3.12's interpreter starts with a few
# hundred, 3.11 and 3.13 with none. Only more than these means someone else froze the heap.
_FROZEN_AT_START = gc.get_freeze_count()


@contextmanager
def _frozen_heap() -> Iterator[None]:
    """Leave the objects that exist when training starts (the libraries' and the tracking
    client's: hundreds of thousands with torch, pandas and MLflow loaded) out of garbage
    collection until it ends.

    Creating a tracking client leaves many new long-lived objects, which soon trigger a full
    collection over all of them: a fraction of a second that can land in the first epochs,
    as gc.callbacks showed in the tracked benchmark loop. The training loop's own garbage is
    still collected. Nothing changes for the program's logic: all is collectable afterwards,
    the interpreter's own start-up objects included (gc can only unfreeze everything).
    """
    if gc.get_freeze_count() > _FROZEN_AT_START:  # someone else froze the heap: theirs to manage
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def _resident(dataset: Dataset, device: torch.device) -> Dataset:
    """`dataset` moved to `device` once, where it can be (TabularDataset.to), so that batches
    are gathered where the model is; else as it is, and each batch is copied there."""
    if device.type == "cpu" or not hasattr(dataset, "to"):
        return dataset
    return dataset.to(device)


def _finish(history: list[EpochResult], stopper: EarlyStopping | None, model: nn.Module) -> list[EpochResult]:
    if stopper is not None:
        stopper.restore_best(model)
    return history


def final_epoch(history: list[EpochResult], config: TrainConfig) -> EpochResult:
    """The epoch whose weights `fit` leaves in the model: the best one with early stopping, else the last."""
    if config.early_stopping_patience:
        return min(history, key=lambda r: r.val_loss)
    return history[-1]
