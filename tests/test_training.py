"""training.py: seeded, reproducible fitting that lowers validation loss and stops on divergence."""

import math

import pytest
import torch
from torch import nn

from torchtrack.config import TrainConfig
from torchtrack.data import Scaler, TabularDataset, make_synthetic, split_indices
from torchtrack.errors import ConfigError, TrainingError
from torchtrack.models import RegressionModel
from torchtrack.training import (
    NonFiniteLossError,
    evaluate_loss,
    fit,
    make_loader,
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


def test_fit_lowers_validation_loss(splits):
    train_set, val_set = splits
    generator = seed_everything(0)
    model = RegressionModel(in_features=3)
    before = evaluate_loss(model, make_loader(val_set, 1024, False), nn.MSELoss(), CPU)
    epochs = []
    history = fit(
        model,
        train_set,
        val_set,
        TrainConfig(lr=0.05, epochs=5, batch_size=32),
        generator=generator,
        device=CPU,
        on_epoch=epochs.append,
    )
    assert [result.epoch for result in history] == [1, 2, 3, 4, 5]
    assert epochs == history
    assert history[-1].val_loss < 0.05 * before
    assert history[-1].val_loss < 3 * NOISE_STD**2  # near the noise floor


def fitted_parameters(splits, seed: int) -> dict[str, torch.Tensor]:
    train_set, val_set = splits
    generator = seed_everything(seed)
    model = RegressionModel(in_features=3)
    config = TrainConfig(lr=0.05, epochs=2, batch_size=32, shuffle=True)
    fit(model, train_set, val_set, config, generator=generator, device=CPU)
    return model.state_dict()


def test_same_seed_gives_bit_identical_parameters(splits):
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


def test_train_one_epoch_calls_on_step_every_log_every_steps(splits):
    train_set, _ = splits
    loader = make_loader(TabularDataset(train_set.data.iloc[:100]), batch_size=10, shuffle=False)
    model = RegressionModel(in_features=3)
    optimizer = make_optimizer(model.parameters(), TrainConfig(lr=0.01))
    calls = []
    train_one_epoch(
        model,
        loader,
        nn.MSELoss(),
        optimizer,
        CPU,
        first_step=20,
        log_every=3,
        on_step=lambda *c: calls.append(c),
    )
    assert [step for step, _ in calls] == [21, 24, 27, 30]
    assert all(isinstance(loss, float) and math.isfinite(loss) for _, loss in calls)


def test_train_one_epoch_without_log_every_never_calls_on_step(splits):
    train_set, _ = splits
    loader = make_loader(TabularDataset(train_set.data.iloc[:50]), batch_size=10, shuffle=False)
    model = RegressionModel(in_features=3)
    calls = []
    loss = train_one_epoch(
        model,
        loader,
        nn.MSELoss(),
        make_optimizer(model.parameters(), TrainConfig()),
        CPU,
        on_step=lambda *c: calls.append(c),
    )
    assert calls == []
    assert math.isfinite(loss)


def test_fit_step_numbers_keep_increasing_across_epochs(splits):
    train_set, val_set = splits
    small = TabularDataset(train_set.data.iloc[:100])
    steps = []
    fit(
        RegressionModel(in_features=3),
        small,
        val_set,
        TrainConfig(epochs=2, batch_size=10),
        generator=seed_everything(0),
        device=CPU,
        log_every=5,
        on_step=lambda step, loss: steps.append(step),
    )
    assert steps == [5, 10, 15, 20]


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


def freeze_counts_while_fitting(splits) -> list[int]:
    """gc.get_freeze_count() at the end of each of two epochs of `fit`."""
    import gc

    train_set, val_set = splits
    counts = []
    fit(
        RegressionModel(in_features=3),
        train_set,
        val_set,
        TrainConfig(epochs=2, batch_size=64),
        generator=seed_everything(0),
        device=CPU,
        on_epoch=lambda result: counts.append(gc.get_freeze_count()),
    )
    return counts


def test_fit_keeps_set_up_objects_out_of_garbage_collection_only_while_it_trains(splits):
    import gc

    gc.unfreeze()  # a clean start, whatever froze objects before this test
    during = freeze_counts_while_fitting(splits)
    assert len(during) == 2 and min(during) > 0
    assert gc.get_freeze_count() == 0


FIT_IN_A_NEW_INTERPRETER = """
import gc
import torch
from torchtrack.config import TrainConfig
from torchtrack.data import TabularDataset, make_synthetic
from torchtrack.models import RegressionModel
from torchtrack.training import fit, seed_everything

start, counts = gc.get_freeze_count(), []
frame, _ = make_synthetic(600, 3, 0.3, seed=0)
data = TabularDataset(frame)
fit(
    RegressionModel(in_features=3), data, data, TrainConfig(epochs=2, batch_size=64),
    generator=seed_everything(0), device=torch.device("cpu"),
    on_epoch=lambda result: counts.append(gc.get_freeze_count()),
)
print(start, min(counts), gc.get_freeze_count())
"""


def test_fit_freezes_the_heap_from_the_state_the_interpreter_starts_in():
    """Python 3.12 starts with objects frozen already; that is not someone else's freeze."""
    import subprocess
    import sys

    output = subprocess.run(
        [sys.executable, "-c", FIT_IN_A_NEW_INTERPRETER], capture_output=True, text=True, check=True
    ).stdout
    start, during, after = map(int, output.split())
    assert during > start  # fit froze the heap while it trained
    assert after <= start  # and froze nothing that outlives it


def test_fit_leaves_a_heap_that_someone_else_froze_as_it_was(splits):
    import gc

    gc.freeze()
    try:
        freeze_counts_while_fitting(splits)
        assert gc.get_freeze_count() > 0  # still frozen: fit did not unfreeze what it had not frozen
    finally:
        gc.unfreeze()
