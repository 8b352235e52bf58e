"""End to end: `dvc repro` in a temporary copy of this repository, read back through
MlflowClient, TensorBoard's event reader and DVC's own commands."""

from __future__ import annotations

import json
import re
import subprocess

import pytest
import yaml
from mlflow import MlflowClient

from helpers import read_scalars
from pipeline_copy import copy_repo, dvc, pipeline_env, stages_run, update_params

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    """A copy of the repo after one default `dvc repro`, with that run's output."""
    path = copy_repo(tmp_path_factory.mktemp("repo"))
    path.joinpath("repro.log").write_text(dvc(path, "repro"))
    return path


@pytest.fixture(scope="module")
def mlflow(repo) -> MlflowClient:
    return MlflowClient(f"sqlite:///{repo / 'mlflow.db'}")


def model_runs(client: MlflowClient):
    experiment = client.get_experiment_by_name("torchtrack")
    return client.search_runs(
        [experiment.experiment_id], "tags.`torchtrack.kind` = 'model'", order_by=["attributes.start_time ASC"]
    )


def test_repro_runs_every_stage_and_writes_outputs_and_lock(repo):
    assert stages_run((repo / "repro.log").read_text()) == ["prepare", "train", "evaluate"]
    for path in (
        "data/prepared/train.parquet",
        "data/prepared/val.parquet",
        "data/prepared/test.parquet",
        "data/prepared/scaler.json",
        "models/model.pt",
        "metrics/prepare.json",
        "metrics/train.json",
        "metrics/evaluate.json",
        "plots/loss.csv",
        "plots/loss.png",
        "plots/predictions.csv",
        "plots/predictions.png",
    ):
        assert (repo / path).is_file(), path
    lock = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]
    assert set(lock) == {"prepare", "train", "evaluate"}
    assert lock["train"]["params"]["params.yaml"]["train"]["lr"] == 0.01
    assert {out["path"] for out in lock["train"]["outs"]} >= {"models/model.pt", "metrics/train.json"}


def test_default_model_reaches_the_noise_floor(repo):
    """The best any model can do is the noise variance; the default gets within 5% of it."""
    evaluation = json.loads((repo / "metrics/evaluate.json").read_text())
    assert evaluation["test_mse"] == pytest.approx(0.3**2, rel=0.05)
    assert evaluation["test_mse_over_noise_variance"] == pytest.approx(1.0, abs=0.05)
    assert evaluation["test_r2"] > 0.97


def test_mlflow_holds_one_model_run_with_nested_stage_runs(repo, mlflow):
    (model,) = model_runs(mlflow)
    assert model.info.status == "FINISHED"
    assert model.data.params["train.lr"] == "0.01" and model.data.params["data.noise_std"] == "0.3"
    assert set(model.data.metrics) >= {
        "train_loss",
        "val_loss",
        "test_mse",
        "test_rmse",
        "test_mae",
        "test_r2",
    }
    assert (
        model.data.tags["mlflow.source.git.commit"]
        == subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True
        ).stdout.strip()
    )
    children = mlflow.search_runs(
        [model.info.experiment_id], f"tags.`mlflow.parentRunId` = '{model.info.run_id}'"
    )
    assert {run.info.run_name for run in children} == {"train", "evaluate"}
    train = next(run for run in children if run.info.run_name == "train")
    epochs = mlflow.get_metric_history(train.info.run_id, "val_loss")
    assert [m.step for m in epochs] == list(range(1, 21))
    assert {a.path for a in mlflow.list_artifacts(train.info.run_id)} >= {"tensorboard", "figures"}
    assert json.loads((repo / "models/mlflow_run.json").read_text())["model_run_id"] == model.info.run_id
    (logged,) = mlflow.search_logged_models(experiment_ids=[model.info.experiment_id])
    assert logged.source_run_id == model.info.run_id
    prepare_experiment = mlflow.get_experiment_by_name("torchtrack-prepare")
    (prepare,) = mlflow.search_runs([prepare_experiment.experiment_id])
    assert model.data.tags["torchtrack.prepare_run_id"] == prepare.info.run_id
    assert prepare.data.metrics["noise_variance"] == pytest.approx(0.09)


def test_tensorboard_has_one_log_directory_per_stage_execution(repo):
    logs = {stage: list((repo / "runs" / stage).iterdir()) for stage in ("prepare", "train", "evaluate")}
    assert all(len(dirs) == 1 for dirs in logs.values()), logs
    train = read_scalars(logs["train"][0])
    assert [step for step, _ in train["loss/val"]] == list(range(1, 21))  # grouped: loss/..., optimizer/...
    assert [step for step, _ in train["loss/train_step"]][:2] == [50, 100]  # every log_every_n_steps
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(logs["train"][0]))
    events.Reload()
    assert events.Graph() is not None
    assert "evaluate/test_mse" in read_scalars(logs["evaluate"][0])


def test_dvc_reads_metrics_params_and_plots_without_project_code(repo):
    metrics = json.loads(dvc(repo, "metrics", "show", "--json"))
    assert "test_mse" in json.dumps(metrics)
    assert re.search(r"train\.lr\s+0\.01\s+0\.01", dvc(repo, "params", "diff", "--all"))
    dvc(repo, "plots", "show", "-o", "plots_html")
    assert (repo / "plots_html" / "index.html").is_file()


def test_a_second_repro_runs_nothing(repo):
    output = dvc(repo, "repro")
    assert stages_run(output) == []
    assert "Data and pipelines are up to date" in output


def test_changing_lr_reruns_only_train_and_evaluate(repo):
    update_params(repo, train={"lr": 0.005})
    assert stages_run(dvc(repo, "repro")) == ["train", "evaluate"]


def test_dvc_exp_run_lands_in_the_same_store_named_after_the_experiment(repo, mlflow):
    subprocess.run(["git", "commit", "-qam", "lr 0.005"], cwd=repo, env=pipeline_env(repo), check=True)
    dvc(repo, "exp", "run", "-n", "lr-005", "-S", "train.lr=0.05")
    runs = {run.info.run_name: run for run in model_runs(mlflow)}
    assert runs["lr-005"].data.tags["dvc.exp_name"] == "lr-005"
    assert runs["lr-005"].data.params["train.lr"] == "0.05"
    assert "test_mse" in runs["lr-005"].data.metrics
    shown = json.loads(dvc(repo, "exp", "show", "--json"))
    assert "lr-005" in json.dumps(shown)
