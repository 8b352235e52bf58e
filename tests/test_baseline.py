"""The model against the least-squares baseline: evaluate warns, in one line and with a tag on
the model run, exactly when the model's test MSE is the worse one."""

from __future__ import annotations

import json

import pytest
import yaml
from mlflow import MlflowClient

from helpers import isolate_env
from torchtrack.baseline import SAME_FIT, WORSE_TAG, least_squares_warning
from torchtrack.cli import main
from torchtrack.tracking.backend.lineage import find_model_run


def test_no_warning_when_the_model_is_as_good_or_better():
    assert least_squares_warning(0.09, 0.16) is None
    assert least_squares_warning(0.16, 0.16) is None


def test_a_model_within_float32_resolution_of_least_squares_is_the_same_fit():
    assert least_squares_warning(0.16 * (1 + SAME_FIT / 2), 0.16) is None
    assert least_squares_warning(0.16 * (1 + 10 * SAME_FIT), 0.16) is not None


def test_the_warning_says_by_how_much_and_what_to_try():
    warning = least_squares_warning(0.25, 0.2)
    assert "\n" not in warning
    assert "25.0% worse than the least-squares baseline's 0.2" in warning
    assert "0.25" in warning and "train.max_steps" in warning and "model.activation" in warning


def test_a_model_worse_than_an_exact_least_squares_fit_is_warned_about_without_a_ratio():
    warning = least_squares_warning(0.01, 0.0)
    assert "worse than the least-squares baseline's 0" in warning and "%" not in warning


def evaluated_project(root, capsys, train: dict) -> tuple[dict, str, dict]:
    """prepare, train and evaluate 400 synthetic rows with `train`: evaluate's metrics, its stderr
    and the model run's tags."""
    params = {
        "data": {"n_samples": 400, "n_features": 3},
        "train": train,
        "tracking": {"experiment": "baseline"},
    }
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        isolate_env(patch)
        for stage in ("prepare", "train"):
            assert main([stage]) == 0
        capsys.readouterr()
        assert main(["evaluate"]) == 0
        stderr = capsys.readouterr().err
    metrics = json.loads((root / "metrics" / "evaluate.json").read_text())
    client = MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    return metrics, stderr, find_model_run(root / "models" / "model.pt", client).data.tags


@pytest.mark.slow
def test_evaluate_warns_and_tags_the_run_when_the_model_is_worse(tmp_path, capsys):
    # One step and no least-squares fallback: no fit.
    metrics, stderr, tags = evaluated_project(tmp_path, capsys, {"max_steps": 1, "least_squares_line": False})
    assert metrics["test_mse"] > metrics["test_mse_least_squares"]
    (line,) = [line for line in stderr.splitlines() if "least-squares" in line]
    assert line.startswith("torchtrack evaluate: warning: the model's test MSE")
    assert tags[WORSE_TAG] == line.removeprefix("torchtrack evaluate: warning: ")


@pytest.mark.slow
def test_evaluate_neither_warns_nor_tags_when_the_default_model_beats_least_squares(tmp_path, capsys):
    metrics, stderr, tags = evaluated_project(tmp_path, capsys, {})
    assert metrics["test_mse"] < metrics["test_mse_least_squares"]
    assert "least-squares" not in stderr
    assert WORSE_TAG not in tags
