"""checkpoints.py: the state after each epoch, enough to resume bit for bit, for these params only."""

from __future__ import annotations

import hashlib
import json
import random

import numpy as np
import pytest
import torch

from helpers import windowed
from torchtrack.checkpoints import EpochCheckpoint, fingerprint
from torchtrack.config import TrainConfig
from torchtrack.data import Scaler, make_synthetic, split_indices
from torchtrack.models import RegressionModel
from torchtrack.tabular import ParquetRows, TabularDataset
from torchtrack.training import fit, seed_everything

CONFIG = TrainConfig(lr=0.05, epochs=4, batch_size=32, shuffle=True)
# A schedule and early stopping carry state from epoch to epoch too.
SCHEDULED = TrainConfig(
    lr=0.05,
    epochs=6,
    batch_size=32,
    lr_schedule="step",
    lr_step_epochs=2,
    lr_step_gamma=0.5,
    early_stopping_patience=3,
)


@pytest.fixture(scope="module")
def splits() -> tuple[TabularDataset, TabularDataset]:
    frame, _ = make_synthetic(600, 3, 0.1, seed=0)
    raw = {name: frame.iloc[rows] for name, rows in split_indices(600, 0.2, 0.2, 0).items()}
    scaler = Scaler.fit(raw["train"], "y")
    return TabularDataset(scaler.transform(raw["train"])), TabularDataset(scaler.transform(raw["val"]))


@pytest.fixture(scope="module")
def windowed_splits(splits, tmp_path_factory) -> tuple[ParquetRows, ParquetRows]:
    """The same splits as Parquet files larger than their shuffle buffer: read in windows."""
    return windowed(splits, tmp_path_factory.mktemp("windowed"), group_rows=50, buffer_rows=120)


class StopAfter(Exception):
    """Raised while an epoch is logged, to interrupt fit after a given epoch."""


class StopAfterEpoch:
    """A logger for `fit` that interrupts it once epoch `epoch` is logged (None: never)."""

    def __init__(self, epoch: int | None):
        self.epoch = epoch

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        if "val_loss" in metrics and step == self.epoch:
            raise StopAfter


def train(splits, checkpoint: EpochCheckpoint | None, stop_after: int | None = None, config=CONFIG):
    """A fresh seeded model fitted as the train stage does; returns (state dict, history)."""
    generator = seed_everything(0)
    model = RegressionModel(in_features=3)

    cpu = torch.device("cpu")
    history = fit(
        model,
        *splits,
        config,
        generator=generator,
        device=cpu,
        loggers=[StopAfterEpoch(stop_after)],
        checkpoint=checkpoint,
    )
    return model.state_dict(), history


@pytest.mark.parametrize(
    ("config", "stop_after", "held"),
    [(CONFIG, 2, "splits"), (SCHEDULED, 3, "splits"), (CONFIG, 2, "windowed_splits")],
    ids=["plain", "scheduled", "read-in-windows"],
)
def test_resuming_after_an_interruption_ends_with_the_uninterrupted_model(
    request, tmp_path, config, stop_after, held
):
    splits = request.getfixturevalue(held)
    expected_state, expected_history = train(splits, checkpoint=None, config=config)
    checkpoint = EpochCheckpoint(tmp_path / "checkpoint.pt", "params-and-data", resume=True)
    with pytest.raises(StopAfter):
        train(splits, checkpoint, stop_after=stop_after, config=config)
    state, history = train(splits, checkpoint, config=config)
    assert checkpoint.resumed_epochs == stop_after
    assert history == expected_history
    assert state.keys() == expected_state.keys()
    assert all(torch.equal(state[name], expected_state[name]) for name in state)


@pytest.mark.parametrize(
    ("fingerprint_now", "resume"),
    [("other params or data", True), ("params and data", False)],
    ids=["made-with-other-params-or-data", "resume-off"],
)
def test_training_starts_from_epoch_one_unless_resuming_the_same_params(
    splits, tmp_path, fingerprint_now, resume
):
    path = tmp_path / "checkpoint.pt"
    with pytest.raises(StopAfter):
        train(splits, EpochCheckpoint(path, "params and data", resume=True), stop_after=2)
    checkpoint = EpochCheckpoint(path, fingerprint_now, resume=resume)
    _, history = train(splits, checkpoint)
    assert checkpoint.resumed_epochs == 0 and [r.epoch for r in history] == [1, 2, 3, 4]


def test_every_random_number_generator_is_restored(tmp_path):
    checkpoint = EpochCheckpoint(tmp_path / "checkpoint.pt", "same")
    generator = seed_everything(3)
    checkpoint.save([], generator)
    draws = (random.random(), np.random.random(), torch.rand(1), torch.rand(1, generator=generator))
    generator = seed_everything(4)  # as a rerun would, with anything
    checkpoint.restore(generator)
    assert (random.random(), np.random.random(), torch.rand(1), torch.rand(1, generator=generator)) == draws


def test_fingerprint_changes_with_params_and_file_contents(tmp_path):
    data = tmp_path / "train.parquet"
    data.write_bytes(b"rows")
    first = fingerprint({"train.lr": 0.1}, [data])
    assert fingerprint({"train.lr": 0.1}, [data]) == first
    assert fingerprint({"train.lr": 0.2}, [data]) != first
    data.write_bytes(b"other rows")
    assert fingerprint({"train.lr": 0.1}, [data]) != first


def test_fingerprint_of_files_larger_than_its_reads_is_the_hash_of_their_bytes(tmp_path):
    files = [tmp_path / "train.parquet", tmp_path / "val.parquet"]
    files[0].write_bytes(bytes(range(256)) * 9_000)  # a little over 2 MB: read a MB at a time
    files[1].write_bytes(b"val rows")
    whole = hashlib.sha256(json.dumps({"seed": 1}, sort_keys=True).encode())
    for path in files:
        whole.update(path.read_bytes())
    assert fingerprint({"seed": 1}, files) == whole.hexdigest()


def test_remove_deletes_the_file(tmp_path):
    checkpoint = EpochCheckpoint(tmp_path / "checkpoint.pt", "same")
    checkpoint.save([], torch.Generator())
    checkpoint.remove()
    assert list(tmp_path.iterdir()) == []
