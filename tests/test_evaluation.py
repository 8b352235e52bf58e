"""evaluation.py: regression metrics agree with scikit-learn; predict runs in eval mode without a
graph; a split scored a block at a time gives the whole table's figures, the same bits for any
chunking."""

import math

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score
from torch import nn

from torchtrack.errors import DataError
from torchtrack.evaluation import (
    NormalEquations,
    RegressionSums,
    least_squares_test_mse,
    predict,
    regression_metrics,
    sample_rows,
    score_split,
)
from torchtrack.models import RegressionModel

Y_TRUE = np.array([3.0, -0.5, 2.0, 7.0])
Y_PRED = np.array([2.5, 0.0, 2.0, 8.0])


def test_regression_metrics_match_sklearn():
    metrics = regression_metrics(Y_TRUE, Y_PRED)
    assert metrics == pytest.approx(
        {
            "mse": mean_squared_error(Y_TRUE, Y_PRED),
            "rmse": math.sqrt(mean_squared_error(Y_TRUE, Y_PRED)),
            "mae": mean_absolute_error(Y_TRUE, Y_PRED),
            "r2": r2_score(Y_TRUE, Y_PRED),
        }
    )


def test_regression_metrics_match_sklearn_on_a_constant_target():
    constant = np.full(4, 2.0)
    for y_pred in (constant.copy(), Y_PRED):
        assert regression_metrics(constant, y_pred)["r2"] == r2_score(constant, y_pred)


def test_regression_metrics_known_values():
    metrics = regression_metrics(Y_TRUE, Y_PRED)
    # Residuals 0.5, 0.5, 0, 1: MSE 1.5/4, MAE 2/4; R^2 = 1 - 1.5 / sum((y - 2.875)^2) = 1 - 1.5/29.1875.
    assert metrics["mse"] == pytest.approx(0.375)
    assert metrics["rmse"] == pytest.approx(math.sqrt(0.375))
    assert metrics["mae"] == pytest.approx(0.5)
    assert metrics["r2"] == pytest.approx(1 - 1.5 / 29.1875)
    assert all(type(value) is float for value in metrics.values())


def test_perfect_prediction_gives_zero_error_and_r2_one():
    metrics = regression_metrics(Y_TRUE, Y_TRUE.copy())
    assert metrics == {"mse": 0.0, "rmse": 0.0, "mae": 0.0, "r2": 1.0}


def test_predict_returns_flat_model_outputs():
    torch.manual_seed(0)
    model = RegressionModel(in_features=3)
    X = torch.randn(10, 3)
    predictions = predict(model, X, batch_size=4)  # several batches, last one short
    assert isinstance(predictions, np.ndarray)
    assert predictions.shape == (10,)
    np.testing.assert_allclose(predictions, model(X).detach().numpy().reshape(-1), rtol=1e-6)


def test_predict_runs_in_eval_mode_without_building_a_graph():
    model = nn.Sequential(nn.Linear(3, 1), nn.Dropout(p=0.5))
    model.train()
    seen = []
    model.register_forward_hook(lambda module, inputs, output: seen.append((module.training, output)))
    predictions = predict(model, torch.ones(64, 3))
    ((training, output),) = seen
    assert not training
    assert output.grad_fn is None and not output.requires_grad
    assert not model.training  # left in eval mode
    np.testing.assert_allclose(predictions, predictions[0])  # no dropout: every identical row agrees


# Streamed: chunks of rows, and Parquet files read a block at a time

CHUNKINGS = [7, 1000, None]  # rows per chunk; None: all in one


def chunks(rows: int, size: int | None) -> list[slice]:
    size = size or rows
    return [slice(start, start + size) for start in range(0, rows, size)]


def test_streamed_metrics_equal_numpy_on_the_whole_table_and_the_same_bits_for_any_chunking():
    rng = np.random.default_rng(0)
    y_true = rng.normal(1e3, 2.0, 5_000)  # a mean far from 0: R^2's spread needs its second pass
    y_pred = y_true + rng.normal(0.0, 0.5, 5_000)
    seen = []
    for size in CHUNKINGS:
        sums = RegressionSums()
        for part in chunks(len(y_true), size):
            sums.add(y_true[part], y_pred[part])
        mean = sums.target_mean()
        for part in chunks(len(y_true), size):
            sums.add_spread(y_true[part], mean)
        seen.append(sums.metrics())
    assert seen[0] == seen[1] == seen[2] == regression_metrics(y_true, y_pred)
    errors = y_pred - y_true
    assert seen[0] == pytest.approx(
        {
            "mse": np.mean(errors**2),
            "rmse": np.sqrt(np.mean(errors**2)),
            "mae": np.mean(np.abs(errors)),
            "r2": 1 - np.sum(errors**2) / np.sum((y_true - y_true.mean()) ** 2),
        },
        rel=1e-12,
    )


def test_normal_equations_give_lstsq_and_the_same_bits_for_any_chunking():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(3_000, 4))
    y = X @ [1.0, -2.0, 0.5, 3.0] + 4.0 + rng.normal(0.0, 0.1, 3_000)
    fits = []
    for size in CHUNKINGS:
        equations = NormalEquations(4)
        for part in chunks(len(X), size):
            equations.add(X[part], y[part])
        fits.append(equations.solve())
    assert fits[0] == fits[1] == fits[2]
    design = np.column_stack([X, np.ones(len(X))])
    np.testing.assert_allclose(fits[0], np.linalg.lstsq(design, y, rcond=None)[0], rtol=1e-10)


def write_split(path, frame: pd.DataFrame, row_group_rows: int | None) -> None:
    """A prepared split's file (float32 columns, the target last) cut into row groups of this many rows."""
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path, row_group_size=row_group_rows)


def prepared_frame(rows: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(rows, 3)).astype(np.float32)
    y = (np.tanh(X @ [0.5, -1.0, 0.25]) + X[:, 0] + rng.normal(0.0, 0.1, rows)).astype(np.float32)
    return pd.DataFrame({"x0": X[:, 0], "x1": X[:, 1], "x2": X[:, 2], "y": y})


def to_target_units(scaled: np.ndarray) -> np.ndarray:
    return np.asarray(scaled, np.float64) * 2.0 + 10.0  # as Preprocessor.target_values


@pytest.fixture(scope="module")
def split_model() -> nn.Module:
    torch.manual_seed(0)
    return RegressionModel(in_features=3)


def test_a_split_scored_a_block_at_a_time_gives_the_whole_tables_figures_and_sample(tmp_path, split_model):
    train, test = prepared_frame(2_500, seed=2), prepared_frame(1_234, seed=3)
    write_split(tmp_path / "train.parquet", train, 100)
    write_split(tmp_path / "test.parquet", test, 100)
    sample = sample_rows(len(test), seed=42, count=50)
    scores = score_split(
        split_model, to_target_units, tmp_path / "train.parquet", tmp_path / "test.parquet", sample
    )

    # The whole table in memory, as evaluate computed it before it streamed.
    y_true = to_target_units(test["y"].to_numpy())
    X_test = torch.from_numpy(test[["x0", "x1", "x2"]].to_numpy(copy=True))
    y_pred = to_target_units(predict(split_model, X_test))
    reference = least_squares_test_mse(
        train[["x0", "x1", "x2"]].to_numpy(),
        to_target_units(train["y"].to_numpy()),
        test.iloc[:, :3].to_numpy(),
        y_true,
    )
    assert scores.metrics == pytest.approx(
        {**regression_metrics(y_true, y_pred), "mse_least_squares": reference}
    )
    assert scores.metrics["mse_least_squares"] == reference  # both exactly rounded: the same bits
    shown = np.random.default_rng(42).permutation(len(test))[:50]  # the rows predictions.csv showed
    assert scores.actual.tolist() == y_true[shown].tolist()
    np.testing.assert_allclose(scores.predicted, y_pred[shown], rtol=1e-6)


def test_a_split_scores_the_same_bits_however_its_file_is_cut_and_read(tmp_path, split_model):
    train, test = prepared_frame(2_500, seed=4), prepared_frame(1_234, seed=5)
    sample = sample_rows(len(test), seed=1, count=20)
    seen = []
    for row_group_rows in CHUNKINGS:
        folder = tmp_path / f"row_groups_{row_group_rows}"
        folder.mkdir()
        write_split(folder / "train.parquet", train, row_group_rows)
        write_split(folder / "test.parquet", test, row_group_rows)
        for block_rows in (7, 1000, 5000):
            scores = score_split(
                split_model,
                to_target_units,
                folder / "train.parquet",
                folder / "test.parquet",
                sample,
                block_rows,
            )
            seen.append((scores.metrics, scores.actual.tolist(), scores.predicted.tolist()))
    assert all(scores == seen[0] for scores in seen)


def test_a_smaller_sample_is_the_start_of_a_larger_one():
    assert (
        sample_rows(10_000, seed=42, count=2000).tolist()
        == sample_rows(10_000, seed=42, count=10_000)[:2000].tolist()
    )
    assert sorted(sample_rows(30, seed=0, count=100).tolist()) == list(
        range(30)
    )  # every row when there are few


def test_a_split_with_a_gap_names_its_file_and_column(tmp_path, split_model):
    frame = prepared_frame(20, seed=6)
    frame.loc[5, "x1"] = np.nan
    write_split(tmp_path / "test.parquet", frame, None)
    with pytest.raises(DataError, match=r"test\.parquet: column 'x1' has 1 missing or infinite value\(s\)"):
        score_split(
            split_model, to_target_units, tmp_path / "test.parquet", tmp_path / "test.parquet", np.arange(3)
        )
