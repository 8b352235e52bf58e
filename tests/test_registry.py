"""The registry: each distinct trained model a version of one registered model; `promote` moves
the alias champion to the best one, challenger marks the newest no worse than the least-squares
line and the champion, and predict loads either by name."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from mlflow import MlflowClient

from helpers import save_model
from torchtrack.cli import main
from torchtrack.config import TrackingConfig
from torchtrack.errors import InputError
from torchtrack.models import RegressionModel
from torchtrack.tracking.backend import registry
from torchtrack.tracking.hashes import MODEL_TAG
from torchtrack.tracking.tracker import Tracker

NAME = "registry-test"  # tracking.experiment, and so the registered model's name
FEATURES = ["x0", "x1", "x2"]
# model run -> its test metrics: "b" is best by MSE, "c" by R^2.
TEST_METRICS = {"a": {"test_mse": 0.3, "test_r2": 0.5}, "b": {"test_mse": 0.1, "test_r2": 0.7},
                "c": {"test_mse": 0.2, "test_r2": 0.9}}  # fmt: skip


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """Three models logged, registered in order a, b, c, and given known test metrics."""
    root = tmp_path_factory.mktemp("registry")
    config = TrackingConfig(experiment=NAME)
    runs = {}
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        for variable in ("MLFLOW_TRACKING_URI", "DVC_ROOT", "DVC_EXP_NAME"):
            patch.delenv(variable, raising=False)
        for seed, (name, metrics) in enumerate(TEST_METRICS.items()):
            torch.manual_seed(seed)  # three different models
            checkpoint = root / f"{name}.pt"
            preprocessor = save_model(checkpoint, RegressionModel(len(FEATURES)), FEATURES)
            with Tracker(config, "train", params={"seed": seed}, model_run="new") as tracker:
                uri = tracker.log_model(checkpoint, preprocessor)
                tracker.register_model(uri)
                tracker.log_summary(metrics)
            runs[name] = tracker.model_run_id
        yield root, runs


@pytest.fixture
def client(project, monkeypatch):
    root, _ = project
    monkeypatch.chdir(root)
    for variable in ("MLFLOW_TRACKING_URI", "DVC_ROOT", "DVC_EXP_NAME"):
        monkeypatch.delenv(variable, raising=False)
    return MlflowClient(f"sqlite:///{root / 'mlflow.db'}")


def version_of(client, run_id: str) -> str:
    return registry.version_of_run(client, NAME, run_id)


def test_each_model_is_a_version_linked_to_its_run_and_untested_ones_are_no_challenger(client, project):
    _, runs = project
    versions = {v.version: v for v in client.search_model_versions(f"name = '{NAME}'")}
    assert {v.run_id for v in versions.values()} == set(runs.values())
    assert [version_of(client, runs[name]) for name in TEST_METRICS] == ["1", "2", "3"]
    assert "challenger" not in client.get_registered_model(NAME).aliases  # evaluate has not run
    assert not any(v.current_stage not in (None, "None") for v in versions.values())  # no deprecated stages


def test_a_model_with_the_same_bytes_registers_no_new_version(tmp_path, monkeypatch):
    """A forced rerun or a repeated trial makes the same model.pt: its run leads to the version
    that holds those bytes, and evaluate's metrics land there (issue 24, point 4)."""
    monkeypatch.chdir(tmp_path)
    for variable in ("MLFLOW_TRACKING_URI", "DVC_ROOT", "DVC_EXP_NAME"):
        monkeypatch.delenv(variable, raising=False)
    config = TrackingConfig(experiment="copies")
    checkpoint = tmp_path / "model.pt"
    preprocessor = save_model(checkpoint, RegressionModel(len(FEATURES)), FEATURES)
    registered, model_runs = [], []
    for bytes_md5 in ("same", "same", "other"):
        with Tracker(config, "train", params={}, model_run="new") as tracker:
            uri = tracker.log_model(checkpoint, preprocessor)
            tracker.tag_model_run({MODEL_TAG: bytes_md5})
            registered.append(tracker.register_model(uri))
        model_runs.append(tracker.model_run_id)
    assert registered == ["1", "1", "2"]
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert len(client.search_model_versions("name = 'copies'")) == 2
    with Tracker(config, "evaluate", params={}, model_run=model_runs[1]) as evaluate:
        evaluate.record_test_metrics({"test_mse": 0.2, "test_mse_least_squares": 0.3})
    assert client.get_model_version("copies", "1").tags == {
        MODEL_TAG: "same",
        "test_mse": "0.2",
        "test_mse_least_squares": "0.3",
    }
    assert client.get_model_version_by_alias("copies", "challenger").version == 1
    with Tracker(config, "evaluate", params={}, model_run=model_runs[2]) as evaluate:
        evaluate.record_test_metrics({"test_mse": 0.4, "test_mse_least_squares": 0.3})  # worse than the line
    assert client.get_model_version_by_alias("copies", "challenger").version == 1


@pytest.mark.parametrize(
    ("metrics", "champion_mse", "earns"),
    [
        ({"test_mse": 0.2, "test_mse_least_squares": 0.3}, None, True),
        ({"test_mse": 0.3, "test_mse_least_squares": 0.3}, None, True),  # the line itself
        ({"test_mse": 0.31, "test_mse_least_squares": 0.3}, None, False),  # worse than the line
        ({"test_mse": 0.2, "test_mse_least_squares": 0.3}, 0.1, False),  # worse than the champion
        ({"test_mse": 0.1, "test_mse_least_squares": 0.3}, 0.1, True),
        ({"test_mse": float("nan"), "test_mse_least_squares": 0.3}, None, False),  # diverged
        ({"test_r2": 0.9}, None, False),  # no test MSE
    ],
)
def test_challenger_is_never_worse_than_the_least_squares_line_or_the_champion(metrics, champion_mse, earns):
    assert registry.earns_challenger(metrics, champion_mse) is earns


def test_promote_puts_champion_on_the_best_and_says_which_version_it_replaced(client, project, capsys):
    _, runs = project
    assert main(["promote", "--params", "none.yaml"]) == 2  # a missing params file is bad input
    capsys.readouterr()
    (project[0] / "params.yaml").write_text(f"tracking:\n  experiment: {NAME}\n")
    assert main(["promote"]) == 0
    first = capsys.readouterr().out.strip()
    assert client.get_model_version_by_alias(NAME, "champion").run_id == runs["b"]
    assert first.startswith(f"champion: {NAME} version 2 (test_mse 0.1), no version had the alias before")
    assert main(["promote", "--metric", "test_r2"]) == 0  # higher is better for R^2
    assert client.get_model_version_by_alias(NAME, "champion").run_id == runs["c"]
    assert "version 3 (test_r2 0.9), replacing version 2" in capsys.readouterr().out
    assert main(["promote"]) == 0
    assert "version 2 (test_mse 0.1), replacing version 3" in capsys.readouterr().out


def test_promote_without_the_metric_or_the_model_is_an_input_error(client):
    with pytest.raises(InputError, match="no version of 'registry-test' has metric 'test_mape'"):
        registry.promote(client, NAME, "test_mape")
    with pytest.raises(InputError, match="no registered model named 'nope'"):
        registry.promote(client, "nope")


def test_predict_at_champion_equals_predict_with_that_versions_run_uri(client, project, tmp_path):
    _, runs = project
    registry.promote(client, NAME, "test_mse")
    rows = pd.DataFrame(np.random.default_rng(1).standard_normal((7, 3)), columns=FEATURES[::-1])  # by name
    rows.to_csv(tmp_path / "rows.csv", index=False)
    champion_run = client.get_model_version_by_alias(NAME, "champion").run_id
    outputs = {}
    for label, uri in (("alias", f"models:/{NAME}@champion"), ("run", f"runs:/{champion_run}/model"),
                       ("other", f"runs:/{runs['a']}/model")):  # fmt: skip
        output = tmp_path / f"{label}.csv"
        assert (
            main(["predict", "--input", str(tmp_path / "rows.csv"), "--output", str(output), "--model", uri])
            == 0
        )
        outputs[label] = pd.read_csv(output)["prediction"].to_numpy()
    np.testing.assert_array_equal(outputs["alias"], outputs["run"])
    assert not np.allclose(outputs["alias"], outputs["other"])  # the alias chose a model, not any model
    torch.manual_seed(1)  # model "b", the champion by MSE, rebuilt: the URI served its weights
    with torch.no_grad():
        expected = RegressionModel(len(FEATURES))(torch.tensor(rows[FEATURES].to_numpy(np.float32))).numpy()
    np.testing.assert_allclose(outputs["alias"], expected.reshape(-1), rtol=1e-5)


def test_evaluate_tags_the_version_and_the_rule_promotes_when_set(client, project):
    _, runs = project
    config = TrackingConfig(experiment=NAME)
    with Tracker(config, "evaluate", params={}, model_run=runs["a"]) as evaluate:
        assert evaluate.record_test_metrics({"test_mse": 0.3, "val_loss": 1.0}) is None  # rule off: no move
    assert client.get_model_version(NAME, "1").tags == {"test_mse": "0.3"}
    registry.promote(client, NAME, "test_r2")  # champion: c
    ruled = TrackingConfig(experiment=NAME, promote="best_test_mse")
    with Tracker(ruled, "evaluate", params={}, model_run=runs["a"]) as evaluate:
        promotion = evaluate.record_test_metrics({"test_mse": 0.3})
    assert f"{NAME} version 2 " in promotion and "replacing version 3" in promotion
    assert client.get_model_version_by_alias(NAME, "champion").run_id == runs["b"]


def test_an_alias_that_points_nowhere_is_a_data_error_naming_the_uri(client):
    from torchtrack.errors import DataError
    from torchtrack.predict import LoggedPredictor

    with pytest.raises(DataError, match=f"models:/{NAME}@nobody: cannot load the model"):
        LoggedPredictor.load(f"models:/{NAME}@nobody")
