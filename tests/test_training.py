"""training.py: seeded, reproducible fitting that lowers validation loss and stops on divergence."""

import gc
import math

import pytest
import torch
from torch import nn

from helpers import RecordingLogger, windowed
from torchtrack.config import TrainConfig
from torchtrack.data import Scaler, make_synthetic, split_indices
from torchtrack.errors import ConfigError, TrainingError
from torchtrack.loader import make_loader
from torchtrack.models import RegressionModel
from torchtrack.tabular import ParquetRows, TabularDataset
from torchtrack.training import (
    STEP_LOSS,
    NonFiniteLossError,
    epoch_metrics,
    evaluate_loss,
    fit,
    make_optimizer,
    resolve_device,
    seed_everything,
    train_one_epoch,
)

CPU = torch.device("cpu")
NOISE_STD = 0.1


@pytest.fixture(scope="module")
def splits() -> tuple[TabularDataset, TabularDataset]:
    """Small scaled synthetic train and val sets that the default model can fit."""
    frame, _ = make_synthetic(1200, 3, NOISE_STD, seed=0)
    raw = {
        name: frame.iloc[rows].reset_index(drop=True)
        for name, rows in split_indices(1200, 0.2, 0.2, 0).items()
    }
    scaler = Scaler.fit(raw["train"], "y")
    return TabularDataset(scaler.transform(raw["train"])), TabularDataset(scaler.transform(raw["val"]))


@pytest.fixture(scope="module")
def windowed_splits(splits, tmp_path_factory) -> tuple[ParquetRows, ParquetRows]:
    """The same splits larger than their shuffle buffer (tabular.ParquetRows): trained a window
    of row groups at a time."""
    return windowed(splits, tmp_path_factory.mktemp("windowed"), group_rows=100, buffer_rows=250)


@pytest.mark.parametrize("held", ["splits", "windowed_splits"], ids=["held", "read-in-windows"])
def test_fit_lowers_validation_loss(request, held):
    train_set, val_set = request.getfixturevalue(held)
    generator = seed_everything(0)
    model = RegressionModel(in_features=3)
    before = evaluate_loss(model, make_loader(val_set, 1024, False), nn.MSELoss(), CPU)
    logger = RecordingLogger()
    history = fit(
        model,
        train_set,
        val_set,
        TrainConfig(lr=0.05, epochs=5, batch_size=32),
        generator=generator,
        device=CPU,
        loggers=[logger],
    )
    assert [result.epoch for result in history] == [1, 2, 3, 4, 5]
    assert logger.logged == [(result.epoch, epoch_metrics(result)) for result in history]
    assert history[-1].val_loss < 0.05 * before
    assert history[-1].val_loss < 3 * NOISE_STD**2  # near the noise floor


def fitted_parameters(splits, seed: int) -> dict[str, torch.Tensor]:
    train_set, val_set = splits
    generator = seed_everything(seed)
    model = RegressionModel(in_features=3)
    config = TrainConfig(lr=0.05, epochs=2, batch_size=32, shuffle=True)
    fit(model, train_set, val_set, config, generator=generator, device=CPU)
    return model.state_dict()


@pytest.mark.parametrize("held", ["splits", "windowed_splits"], ids=["held", "read-in-windows"])
def test_same_seed_gives_bit_identical_parameters(request, held):
    splits = request.getfixturevalue(held)
    first, second = fitted_parameters(splits, seed=1), fitted_parameters(splits, seed=1)
    assert first.keys() == second.keys()
    assert all(torch.equal(first[name], second[name]) for name in first)


def test_different_seed_gives_different_parameters(splits):
    first, second = fitted_parameters(splits, seed=1), fitted_parameters(splits, seed=2)
    assert not torch.equal(first["linear.weight"], second["linear.weight"])


@pytest.mark.parametrize(("name", "optimizer_class"), [("sgd", torch.optim.SGD), ("adam", torch.optim.Adam)])
def test_make_optimizer_follows_config(name, optimizer_class):
    optimizer = make_optimizer(RegressionModel().parameters(), TrainConfig(optimizer=name, lr=0.123))
    assert type(optimizer) is optimizer_class
    assert optimizer.param_groups[0]["lr"] == 0.123


def test_huge_sgd_learning_rate_raises_non_finite_loss_error(splits):
    train_set, val_set = splits
    generator = seed_everything(0)
    config = TrainConfig(optimizer="sgd", lr=1e6, epochs=1, batch_size=32)
    with pytest.raises(NonFiniteLossError, match="lower train.lr") as excinfo:
        fit(RegressionModel(in_features=3), train_set, val_set, config, generator=generator, device=CPU)
    assert isinstance(excinfo.value, TrainingError)


def test_train_one_epoch_logs_the_step_loss_every_log_every_steps(splits):
    train_set, _ = splits
    loader = make_loader(TabularDataset(train_set.data.iloc[:100]), batch_size=10, shuffle=False)
    model = RegressionModel(in_features=3)
    optimizer = make_optimizer(model.parameters(), TrainConfig(lr=0.01))
    logger = RecordingLogger()
    train_one_epoch(
        model,
        loader,
        nn.MSELoss(),
        optimizer,
        CPU,
        first_step=20,
        log_every=3,
        loggers=[logger],
    )
    assert logger.steps_of(STEP_LOSS) == [21, 24, 27, 30]
    assert all(list(metrics) == [STEP_LOSS] for _, metrics in logger.logged)
    assert all(isinstance(m[STEP_LOSS], float) and math.isfinite(m[STEP_LOSS]) for _, m in logger.logged)


def test_train_one_epoch_without_log_every_never_logs(splits):
    train_set, _ = splits
    loader = make_loader(TabularDataset(train_set.data.iloc[:50]), batch_size=10, shuffle=False)
    model = RegressionModel(in_features=3)
    logger = RecordingLogger()
    loss = train_one_epoch(
        model,
        loader,
        nn.MSELoss(),
        make_optimizer(model.parameters(), TrainConfig()),
        CPU,
        loggers=[logger],
    )
    assert logger.logged == []
    assert math.isfinite(loss)


def test_fit_step_numbers_keep_increasing_across_epochs(splits):
    train_set, val_set = splits
    small = TabularDataset(train_set.data.iloc[:100])
    logger = RecordingLogger()
    fit(
        RegressionModel(in_features=3),
        small,
        val_set,
        TrainConfig(epochs=2, batch_size=10),
        generator=seed_everything(0),
        device=CPU,
        loggers=[logger],
        log_every=5,
    )
    assert logger.steps_of(STEP_LOSS) == [5, 10, 15, 20]
    assert logger.steps_of("val_loss") == [1, 2]  # epoch metrics at the epoch number, after its steps
    assert [step for step, _ in logger.logged] == [5, 10, 1, 15, 20, 2]


def test_fit_logs_learnable_activation_values_with_each_epoch(splits):
    train_set, val_set = splits
    model = RegressionModel(in_features=3, activation="learnable_tanh_plus_x")
    logger = RecordingLogger()
    config = TrainConfig(epochs=2, batch_size=64)
    fit(model, train_set, val_set, config, generator=seed_everything(0), device=CPU, loggers=[logger])
    assert [set(metrics) for _, metrics in logger.logged] == [
        {"train_loss", "val_loss", "lr"}
        | {
            "activation.a",
            "activation.b",
        }
    ] * 2
    assert logger.logged[-1][1]["activation.a"] == model.activation.a.item()


def test_resolve_device_cpu():
    assert resolve_device("cpu") == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_resolve_device_without_cuda():
    assert resolve_device("auto") == torch.device("cpu")
    with pytest.raises(ConfigError, match="train.device"):
        resolve_device("cuda")


needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@needs_cuda
def test_resolve_device_with_cuda():
    assert resolve_device("auto").type == "cuda"


@needs_cuda
def test_fit_on_cuda_follows_the_cpu_run(splits):
    """The same seed gives the same batches on both devices, so the two runs' losses agree to
    float rounding; the data is gathered on the GPU, and the caller's datasets stay on the CPU."""
    train_set, val_set = splits
    config = TrainConfig(lr=0.05, epochs=3, batch_size=32)
    runs = {}
    for name in ("cpu", "cuda"):
        torch.manual_seed(1)  # the same initial weights
        model = RegressionModel(in_features=3)
        runs[name] = fit(
            model, train_set, val_set, config, generator=seed_everything(0), device=torch.device(name)
        )
        assert next(model.parameters()).device.type == name
    assert train_set.device.type == "cpu"
    for cpu, cuda in zip(runs["cpu"], runs["cuda"], strict=True):
        assert cuda.train_loss == pytest.approx(cpu.train_loss, rel=1e-3)
        assert cuda.val_loss == pytest.approx(cpu.val_loss, rel=1e-3)


class GarbageCollectorProbe:
    """A logger for `fit` that notes the collector's state at the end of each epoch."""

    def __init__(self):
        self.thresholds: list[tuple[int, int, int]] = []
        self.freeze_counts: list[int] = []

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        if "val_loss" in metrics:
            self.thresholds.append(gc.get_threshold())
            self.freeze_counts.append(gc.get_freeze_count())


def fit_with_probe(splits) -> GarbageCollectorProbe:
    train_set, val_set = splits
    probe = GarbageCollectorProbe()
    model, config = RegressionModel(in_features=3), TrainConfig(epochs=2, batch_size=64)
    fit(model, train_set, val_set, config, generator=seed_everything(0), device=CPU, loggers=[probe])
    return probe


def test_fit_defers_full_collections_only_while_it_trains(splits):
    before = gc.get_threshold()
    probe = fit_with_probe(splits)
    assert [young for *young, _ in probe.thresholds] == [list(before[:2])] * 2  # young ones collected
    assert all(oldest > 10**9 for *_, oldest in probe.thresholds)
    assert gc.get_threshold() == before


def test_fit_restores_a_callers_own_collector_settings_and_frozen_objects(splits):
    before = gc.get_threshold()
    gc.set_threshold(123, 7, 3)
    gc.freeze()
    try:
        probe = fit_with_probe(splits)
        assert min(probe.freeze_counts) > 0 and gc.get_freeze_count() > 0  # not unfrozen by fit
        assert gc.get_threshold() == (123, 7, 3)
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


def test_fit_restores_the_collector_when_training_fails(splits):
    train_set, val_set = splits
    before = gc.get_threshold()
    config = TrainConfig(optimizer="sgd", lr=1e6, epochs=1, batch_size=32)
    with pytest.raises(NonFiniteLossError):
        fit(
            RegressionModel(in_features=3),
            train_set,
            val_set,
            config,
            generator=seed_everything(0),
            device=CPU,
        )
    assert gc.get_threshold() == before
