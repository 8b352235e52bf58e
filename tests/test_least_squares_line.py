"""least_squares_line.py: after training, a model that can be a line ends as the train split's
exact least-squares fit unless its curve pays for its two extra parameters (Akaike)."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from helpers import read_scalars
from torchtrack.config import TrainConfig
from torchtrack.evaluation import least_squares_fit, predict
from torchtrack.least_squares_line import (
    AKAIKE_COST,
    can_be_a_line,
    keep_the_better,
    line_losses,
    set_to_line,
)
from torchtrack.models import MLP, RegressionModel
from torchtrack.tabular import ParquetRows, TabularDataset
from torchtrack.training import fit, seed_everything

pytest_plugins = ["trained_project"]

CPU = torch.device("cpu")
CONFIG = TrainConfig(max_steps=600, device="cpu")


def table(rows: int, curved: bool, seed: int = 0) -> TabularDataset:
    """Standardised-looking features; a target on the line z = X w, or on tanh(z) + z, plus noise."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(rows, 4))
    z = X @ np.array([0.8, -0.5, 0.3, 0.0])
    y = (np.tanh(3 * z) + z if curved else z) + rng.normal(0, 0.3, rows)
    return TabularDataset(pd.DataFrame({**{f"x{i}": X[:, i] for i in range(4)}, "y": y}))


def least_squares_predictions(rows: TabularDataset) -> np.ndarray:
    X, y = rows.X.numpy().astype(np.float64), rows.y.numpy().reshape(-1).astype(np.float64)
    coef, *_ = np.linalg.lstsq(np.c_[X, np.ones(len(X))], y, rcond=None)
    return np.c_[X, np.ones(len(X))] @ coef


def trained(rows: TabularDataset, activation: str = "learnable_tanh_plus_x") -> RegressionModel:
    generator = seed_everything(0)
    model = RegressionModel(in_features=4, activation=activation)
    fit(model, rows, table(60, curved=False, seed=9), CONFIG, generator=generator, device=CPU)
    return model


@pytest.mark.parametrize("activation", ["learnable_tanh_plus_x", "manual_grad_tanh_plus_x", "identity"])
def test_the_line_predicts_exactly_what_least_squares_predicts(activation):
    rows = table(300, curved=True)
    model = RegressionModel(in_features=4, activation=activation)
    set_to_line(model, least_squares_fit(rows.X.numpy(), rows.y.numpy()))
    np.testing.assert_allclose(predict(model, rows.X), least_squares_predictions(rows), rtol=0, atol=1e-5)


def test_on_a_line_the_trained_curve_gives_way_to_least_squares():
    rows = table(300, curved=False)
    model = trained(rows)
    before = predict(model, rows.X)
    choice = keep_the_better(model, rows, CONFIG)
    assert choice.kept_line and choice.saved <= choice.cost == 2 * AKAIKE_COST
    assert not np.allclose(before, least_squares_predictions(rows), atol=1e-5)  # training left a curve
    np.testing.assert_allclose(predict(model, rows.X), least_squares_predictions(rows), rtol=0, atol=1e-5)
    assert choice.metrics()["kept_least_squares_line"] == 1.0
    assert choice.describe().startswith("kept the least-squares line")


def test_a_curve_that_pays_for_its_parameters_is_kept_as_trained():
    rows = table(300, curved=True)
    model = trained(rows)
    weights = {name: value.clone() for name, value in model.state_dict().items()}
    choice = keep_the_better(model, rows, CONFIG)
    assert not choice.kept_line and choice.saved > choice.cost
    for name, value in model.state_dict().items():
        assert torch.equal(value, weights[name]), name
    assert choice.describe().startswith("kept the trained model")


def test_a_trained_identity_model_has_nothing_to_pay_for_and_ends_as_least_squares():
    rows = table(300, curved=True)
    model = trained(rows, "identity")
    choice = keep_the_better(model, rows, CONFIG)
    assert choice.cost == 0 and choice.kept_line
    np.testing.assert_allclose(predict(model, rows.X), least_squares_predictions(rows), rtol=0, atol=1e-5)


@pytest.mark.parametrize(
    ("model", "config"),
    [
        (RegressionModel(in_features=4, activation="tanh_plus_x"), CONFIG),  # never a straight line
        (MLP(in_features=4, hidden_sizes=[8]), CONFIG),
        (RegressionModel(in_features=4, activation="learnable_tanh_plus_x"), TrainConfig(loss="l1")),
    ],
)
def test_a_model_that_cannot_be_the_line_or_a_loss_that_is_not_squared_is_left_alone(model, config):
    weights = {name: value.clone() for name, value in model.state_dict().items()}
    assert keep_the_better(model, table(100, curved=False), config) is None
    assert all(torch.equal(value, weights[name]) for name, value in model.state_dict().items())


def test_only_a_linear_layer_with_identity_or_a_learnable_tanh_plus_x_can_be_a_line():
    assert can_be_a_line(RegressionModel(activation="identity"))
    assert can_be_a_line(RegressionModel(activation="manual_grad_tanh_plus_x"))
    assert not can_be_a_line(RegressionModel(activation="relu"))
    assert not can_be_a_line(MLP(hidden_sizes=[8], activation="identity"))


def test_when_the_line_is_kept_the_records_end_on_the_line_not_on_the_discarded_curve(trained_project):
    """The tiny project's two epochs do not pay for the curve: train keeps the line, and its
    TensorBoard curves and metrics/train.json end on the line's losses and a = 0, b = 1."""
    final = json.loads((trained_project.root / "metrics" / "train.json").read_text())
    assert final["kept_least_squares_line"] == 1.0
    (log_dir,) = (trained_project.root / "runs" / "train").iterdir()
    curves = read_scalars(log_dir)
    epochs = final["epochs"]
    for tag, name in (("activation/a", "activation.a"), ("activation/b", "activation.b")):
        assert curves[tag][-1] == (epochs, pytest.approx(final[name])), tag
    assert (final["activation.a"], final["activation.b"]) == (0.0, 1.0)
    for tag, name in (("loss/train", "train_loss"), ("loss/val", "val_loss")):
        assert curves[tag][-1] == (epochs, pytest.approx(final[name], rel=1e-6)), tag
        assert curves[tag][-2][0] == epochs  # the trained epoch's point, then the line's at the same step


@pytest.mark.parametrize("curved", [False, True], ids=["line", "curve"])
def test_a_split_read_in_windows_decides_as_the_held_split_does_bit_for_bit(tmp_path, curved):
    """The streamed blocks are the held split's (tabular.ParquetRows): the same choice, weights and losses."""
    rows = table(300, curved=curved)
    rows.data.to_parquet(tmp_path / "train.parquet", index=False, row_group_size=70)
    held, streamed = (
        TabularDataset.from_parquet(tmp_path / "train.parquet"),
        ParquetRows(tmp_path / "train.parquet", 100),
    )
    val = table(60, curved=curved, seed=9)
    choices, states, losses = [], [], []
    for split in (held, streamed):
        model = trained(rows)  # the same trained weights each time
        choices.append(keep_the_better(model, split, CONFIG))
        states.append(model.state_dict())
        losses.append(line_losses(model, choices[-1], val))
    assert choices[0] == choices[1] and choices[0].kept_line == (not curved)
    assert all(torch.equal(states[0][name], states[1][name]) for name in states[0])
    assert losses[0] == losses[1]
