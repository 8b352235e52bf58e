"""predict: new rows -> predictions from the trained checkpoint, columns matched by name."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from torchtrack.cli import main
from torchtrack.data import Scaler, read_split
from torchtrack.errors import InputError
from torchtrack.evaluation import predict
from torchtrack.models import load_checkpoint
from torchtrack.predict import PREDICTION_COLUMN, Predictor, check_columns, read_rows

pytest_plugins = ["trained_project"]


@pytest.fixture(scope="module")
def predictor(trained_project) -> Predictor:
    return Predictor.load(trained_project.model_path)


def test_raw_rows_are_scaled_with_the_train_split_statistics(trained_project, predictor):
    test = read_split(trained_project.root / "data" / "prepared", "test")  # scaled, as evaluate reads it
    scaler = Scaler.load(trained_project.root / "data" / "prepared" / "scaler.json")
    raw = test[scaler.features] * scaler.std + scaler.mean  # what the user would have
    model, _ = load_checkpoint(trained_project.model_path)
    expected = predict(model, torch.tensor(test[scaler.features].to_numpy(np.float32)))
    np.testing.assert_allclose(predictor(raw), expected, rtol=1e-5, atol=1e-5)


def test_columns_are_matched_by_name_not_position(trained_project, predictor):
    rows = trained_project.raw_rows(20)
    reversed_columns = rows[rows.columns[::-1]]
    np.testing.assert_array_equal(predictor(reversed_columns), predictor(rows))


def test_the_target_column_may_be_present_and_does_not_change_predictions(trained_project, predictor):
    rows = trained_project.raw_rows(20)
    without_target = rows.drop(columns=["y"])
    np.testing.assert_array_equal(predictor(rows), predictor(without_target))


def test_a_missing_feature_and_an_unknown_column_are_both_named():
    frame = pd.DataFrame({"x0": [1.0], "x2": [2.0], "colour": [3.0]})
    with pytest.raises(InputError, match=r"missing feature column\(s\): x1; unknown column\(s\): colour"):
        check_columns(frame, features=["x0", "x1", "x2"], target="y")


@pytest.mark.parametrize(
    ("values", "problem"),
    [
        (["a", "b"], "is not numeric"),
        ([1.0, np.nan], "has 1 missing or infinite"),
        ([np.inf, 1.0], "has 1 missing"),
    ],
)
def test_feature_values_must_be_finite_numbers(values, problem):
    frame = pd.DataFrame({"x0": values})
    with pytest.raises(InputError, match=f"column 'x0' {problem}"):
        check_columns(frame, features=["x0"], target="y")


def test_the_model_runs_in_eval_mode_without_gradients():
    seen = {}

    class Spy(nn.Module):
        def __init__(self):
            super().__init__()
            self.weight = nn.Parameter(torch.ones(1))

        def forward(self, x):
            seen.update(training=self.training, grad=torch.is_grad_enabled())
            return x.sum(dim=1, keepdim=True) * self.weight

    spy = Spy().train()
    predictor = Predictor(spy, Scaler(["a", "b"], "y", mean=[1.0, 0.0], std=[2.0, 1.0]))
    out = predictor(pd.DataFrame({"a": [3.0], "b": [5.0]}))
    assert seen == {"training": False, "grad": False}
    assert out.tolist() == [(3.0 - 1.0) / 2.0 + 5.0]


def test_no_rows_give_no_predictions(predictor):
    empty = pd.DataFrame({name: pd.Series(dtype="float64") for name in predictor.features})
    assert predictor(empty).shape == (0,)


def test_read_rows_reports_a_missing_or_empty_file(tmp_path):
    with pytest.raises(InputError, match="input file not found"):
        read_rows(tmp_path / "absent.csv")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(InputError, match="is empty"):
        read_rows(tmp_path / "empty.csv")


def test_cli_writes_the_input_columns_plus_prediction(trained_project, predictor, tmp_path):
    rows = trained_project.raw_rows(50)
    rows.to_csv(tmp_path / "new.csv", index=False)
    argv = ["predict", "--input", str(tmp_path / "new.csv"), "--output", str(tmp_path / "out.csv")]
    assert main([*argv, "--model", str(trained_project.model_path)]) == 0
    out = pd.read_csv(tmp_path / "out.csv")
    assert list(out.columns) == [*rows.columns, PREDICTION_COLUMN]
    pd.testing.assert_frame_equal(out[rows.columns], rows)
    np.testing.assert_allclose(
        out[PREDICTION_COLUMN], predictor(rows), rtol=1e-6, atol=1e-6
    )  # the CSV round trip rounds the inputs


def test_cli_reads_and_writes_parquet(trained_project, tmp_path):
    trained_project.raw_rows(10).to_parquet(tmp_path / "new.parquet")
    argv = ["predict", "--input", str(tmp_path / "new.parquet"), "--output", str(tmp_path / "out.parquet")]
    assert main([*argv, "--model", str(trained_project.model_path)]) == 0
    assert len(pd.read_parquet(tmp_path / "out.parquet")) == 10


def test_cli_bad_columns_exit_2_name_them_and_write_nothing(trained_project, tmp_path):
    trained_project.raw_rows(5).rename(columns={"x1": "x9"}).to_csv(tmp_path / "new.csv", index=False)
    command = [
        sys.executable,
        "-m",
        "torchtrack",
        "predict",
        "--input",
        str(tmp_path / "new.csv"),
        "--output",
        str(tmp_path / "out.csv"),
        "--model",
        str(trained_project.model_path),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "missing feature column(s): x1; unknown column(s): x9" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out.csv").exists()


def test_cli_without_a_trained_model_exits_2(tmp_path, capsys):
    (tmp_path / "new.csv").write_text("x0\n1.0\n")
    argv = ["predict", "--input", str(tmp_path / "new.csv"), "--output", str(tmp_path / "out.csv")]
    assert main([*argv, "--model", str(tmp_path / "absent.pt")]) == 2
    assert "run the train stage first" in capsys.readouterr().err
