"""Divergence: a learning rate that makes the loss non-finite stops training at the first
logging interval after it (or the epoch's end), with a message naming the step and the rate
and suggesting a smaller one; the train stage then fails its MLflow runs and writes no model."""

from __future__ import annotations

import math

import pytest
import torch
import yaml
from mlflow import MlflowClient
from torch import nn

from torchtrack.cli import main
from torchtrack.config import TrainConfig
from torchtrack.data import Scaler, make_synthetic
from torchtrack.loader import make_loader
from torchtrack.models import RegressionModel
from torchtrack.tabular import TabularDataset
from torchtrack.tracking.location import tracking_uri
from torchtrack.training import (
    NonFiniteLossError,
    make_optimizer,
    seed_everything,
    train_one_epoch,
)

DIVERGING_LR = 10.0  # plain SGD on these scaled rows overflows within a couple of dozen steps


class RecordedMSELoss(nn.MSELoss):
    """MSE that keeps every loss it computes, to find the first non-finite one independently."""

    def __init__(self):
        super().__init__()
        self.losses: list[float] = []

    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        loss = super().forward(prediction, target)
        self.losses.append(loss.item())
        return loss


@pytest.fixture(scope="module")
def rows() -> TabularDataset:
    frame, _ = make_synthetic(1200, 3, 0.1, seed=0)
    return TabularDataset(Scaler.fit(frame, "y").transform(frame))


def diverge(rows: TabularDataset, log_every: int) -> tuple[NonFiniteLossError, list[float]]:
    """One epoch of SGD at DIVERGING_LR; the error it raised and every loss it computed."""
    seed_everything(0)
    model = RegressionModel(in_features=3)
    optimizer = make_optimizer(model.parameters(), TrainConfig(optimizer="sgd", lr=DIVERGING_LR))
    loss_fn = RecordedMSELoss()
    with pytest.raises(NonFiniteLossError) as excinfo:
        loader = make_loader(rows, batch_size=10, shuffle=False)
        train_one_epoch(model, loader, loss_fn, optimizer, torch.device("cpu"), log_every=log_every)
    return excinfo.value, loss_fn.losses


@pytest.mark.parametrize("log_every", [1, 5, 7])
def test_training_stops_at_the_logging_interval_after_the_first_non_finite_loss(rows, log_every):
    error, losses = diverge(rows, log_every)
    first = next(step for step, loss in enumerate(losses, start=1) if not math.isfinite(loss))
    assert error.step == first
    assert len(losses) == math.ceil(first / log_every) * log_every  # not one interval more
    assert f"at step {first} with learning rate 10:" in str(error)
    assert "lower train.lr (e.g. to 1)" in str(error)


def test_without_a_logging_interval_divergence_is_caught_at_the_epoch_end(rows):
    error, losses = diverge(rows, log_every=0)
    assert len(losses) == len(rows) // 10
    assert error.step == next(step for step, loss in enumerate(losses, start=1) if not math.isfinite(loss))


def test_a_diverging_train_stage_fails_its_runs_and_writes_no_model(workdir, capsys):
    params = {
        "data": {"n_samples": 1000},
        "train": {"optimizer": "sgd", "lr": 1e6, "epochs": 2, "batch_size": 10},
    }
    (workdir / "params.yaml").write_text(yaml.safe_dump(params))
    assert main(["prepare"]) == 0
    capsys.readouterr()
    assert main(["train"]) == 1
    stderr = capsys.readouterr().err
    assert "Traceback" not in stderr
    message = stderr.splitlines()[-1]
    assert message.startswith("torchtrack train: error: the training loss became NaN or infinite at step ")
    assert "learning rate 1e+06" in message and "lower train.lr (e.g. to 100000)" in message
    client = MlflowClient(tracking_uri())
    experiment = client.get_experiment_by_name("torchtrack")
    runs = client.search_runs([experiment.experiment_id])
    assert sorted(run.data.tags["torchtrack.kind"] for run in runs) == ["model", "stage"]
    assert {run.info.status for run in runs} == {"FAILED"}
    assert not (workdir / "models" / "model.pt").exists()
