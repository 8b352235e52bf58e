"""End to end: `dvc repro` in a temporary copy of this repository, read back through
MlflowClient, TensorBoard's event reader and DVC's own commands."""

from __future__ import annotations

import json
import re
import subprocess

import pytest
import yaml
from mlflow import MlflowClient

from default_pipeline import repro_log
from helpers import noisy_lines, read_scalars
from pipeline_copy import BIN, LIMIT_S, copy_project, dvc, pipeline_env, stages_run, update_params
from torchtrack.baseline import WORSE_TAG
from torchtrack.config import Config
from torchtrack.tracking.backend.lineage import find_model_run

pytestmark = pytest.mark.slow
pytest_plugins = ["default_pipeline"]


@pytest.fixture(scope="module")
def repo(default_pipeline, tmp_path_factory):
    """A copy of the repo after one default `dvc repro`, with that run's output."""
    path = copy_project(default_pipeline, tmp_path_factory.mktemp("pipeline") / "repo")
    path.joinpath("repro.log").write_text(repro_log(default_pipeline))
    return path


@pytest.fixture(scope="module")
def mlflow(repo) -> MlflowClient:
    return MlflowClient(f"sqlite:///{repo / 'mlflow.db'}")


def trained_epochs(repo) -> int:
    """The epochs the default run trained, as metrics/train.json records them."""
    return json.loads((repo / "metrics/train.json").read_text())["epochs"]


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
        "data/prepared/preprocessing.json",
        "data/prepared/columns.json",
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
    assert set(lock) == {"validate", "prepare", "train", "evaluate"}
    assert lock["train"]["params"]["params.yaml"]["train.lr"] == 0.03
    assert {out["path"] for out in lock["train"]["outs"]} >= {"models/model.pt", "metrics/train.json"}


def test_repro_prints_no_mlflow_info_no_download_bars_and_no_line_that_wraps(repo):
    assert noisy_lines((repo / "repro.log").read_text()) == []


def test_default_model_reaches_the_noise_floor(repo):
    """The best any model can do is the noise variance; the default gets within 5% of it."""
    evaluation = json.loads((repo / "metrics/evaluate.json").read_text())
    assert evaluation["test_mse"] == pytest.approx(0.3**2, rel=0.05)
    assert evaluation["test_mse_over_noise_variance"] == pytest.approx(1.0, abs=0.05)
    assert evaluation["test_r2"] > 0.97


def test_default_model_comes_within_half_a_percent_of_the_true_rule(repo, mlflow):
    """The default model family holds the synthetic rule, so the default recipe should find it:
    its test MSE is within 0.5% of the rule's own on the same rows (docs/training-recipe.md)."""
    evaluation = json.loads((repo / "metrics/evaluate.json").read_text())
    oracle = json.loads((repo / "metrics/prepare.json").read_text())["oracle_test_mse"]
    assert evaluation["test_mse"] <= 1.005 * oracle
    (model,) = model_runs(mlflow)
    assert WORSE_TAG not in model.data.tags  # it beats the least-squares line, so no warning


def test_mlflow_holds_one_model_run_with_nested_stage_runs(repo, mlflow):
    (model,) = model_runs(mlflow)
    assert model.info.status == "FINISHED"
    assert model.data.params["train.lr"] == "0.03" and model.data.params["data.noise_std"] == "0.3"
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
    assert [m.step for m in epochs] == list(range(1, trained_epochs(repo) + 1))
    assert {a.path for a in mlflow.list_artifacts(train.info.run_id)} >= {"tensorboard", "figures"}
    (logged,) = mlflow.search_logged_models(experiment_ids=[model.info.experiment_id])
    assert logged.source_run_id == model.info.run_id
    assert model.data.tags["torchtrack.model_uri"] == f"models:/{logged.model_id}"
    prepare_experiment = mlflow.get_experiment_by_name("torchtrack-prepare")
    (prepare,) = mlflow.search_runs([prepare_experiment.experiment_id])
    assert model.data.tags["torchtrack.prepare_run_id"] == prepare.info.run_id
    assert prepare.data.metrics["noise_variance"] == pytest.approx(0.09)


def test_runs_carry_the_hashes_dvc_records_for_what_they_made(repo, mlflow):
    """The link from an output to its run is the output's hash in dvc.lock, never a run id in a file."""
    lock = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]
    recorded = {out["path"]: out["md5"] for stage in lock.values() for out in stage.get("outs", [])}
    (model,) = model_runs(mlflow)
    assert model.data.tags["torchtrack.model_md5"] == recorded["models/model.pt"]
    assert model.data.tags["torchtrack.prepared_md5"] == recorded["data/prepared"]
    prepare = mlflow.get_run(model.data.tags["torchtrack.prepare_run_id"])
    assert prepare.data.tags["torchtrack.prepared_md5"] == recorded["data/prepared"]
    assert find_model_run(repo / "models/model.pt", mlflow).info.run_id == model.info.run_id


def test_tensorboard_has_one_log_directory_per_stage_execution(repo):
    logs = {stage: list((repo / "runs" / stage).iterdir()) for stage in ("prepare", "train", "evaluate")}
    assert all(len(dirs) == 1 for dirs in logs.values()), logs
    train = read_scalars(logs["train"][0])
    epochs = list(range(1, trained_epochs(repo) + 1))
    assert [step for step, _ in train["loss/val"]] == epochs  # grouped: loss/..., optimizer/...
    assert [step for step, _ in train["loss/train_step"]][:2] == [50, 100]  # every log_every_n_steps
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(logs["train"][0]))
    events.Reload()
    assert events.Graph() is not None
    assert "evaluate/test_mse" in read_scalars(logs["evaluate"][0])


def test_dvc_reads_metrics_params_and_plots_without_project_code(repo):
    metrics = json.loads(dvc(repo, "metrics", "show", "--json"))
    assert "test_mse" in json.dumps(metrics)
    assert re.search(r"train\.lr\s+0\.03\s+0\.03", dvc(repo, "params", "diff", "--all"))
    dvc(repo, "plots", "show", "-o", "plots_html")
    assert (repo / "plots_html" / "index.html").is_file()


def test_a_second_repro_runs_nothing(repo):
    output = dvc(repo, "repro")
    assert stages_run(output) == []
    assert "Data and pipelines are up to date" in output


def test_a_key_no_stage_reads_stops_dvc_exp_run_naming_it(repo):
    """A typo added with DVC's `+` makes only validate stale; it refuses the key in one line."""
    saved = (repo / "params.yaml").read_text()
    try:
        result = subprocess.run(
            [str(BIN / "dvc"), "exp", "run", "-S", "+train.lrr=0.1"],
            cwd=repo,
            env=pipeline_env(repo),
            capture_output=True,
            text=True,
            timeout=LIMIT_S,
        )
        assert result.returncode != 0
        assert stages_run(result.stdout) == ["validate"]
        expected = "torchtrack validate: error: params.yaml: unknown key train.lrr;"
        assert expected in result.stderr, result.stderr
    finally:
        (repo / "params.yaml").write_text(saved)


def test_changing_any_tracking_setting_runs_no_stage_but_validate(repo):
    """Where records go does not change what the stages make; validate checks every change."""
    saved = (repo / "params.yaml").read_text()
    changed = {
        "experiment": "elsewhere",
        "tensorboard_dir": "elsewhere",
        "log_every_n_steps": 7,
        "flush_every_n_metrics": 3,
        "flush_every_seconds": 1,
        "promote": "best_test_mse",
    }
    assert set(changed) == {key.split(".")[1] for key in Config().flat("tracking")}
    update_params(repo, tracking=changed)
    try:
        assert stages_run(dvc(repo, "repro")) == ["validate"]
    finally:
        (repo / "params.yaml").write_text(saved)
        dvc(repo, "repro")  # validate again, on the saved params


def test_a_forced_prepare_that_makes_the_same_splits_retrains_nothing(repo, mlflow):
    """prepare's outputs are byte-identical on a rerun; its new run id is in no output."""
    lock_before = (repo / "dvc.lock").read_text()
    assert stages_run(dvc(repo, "repro", "-f", "prepare")) == ["prepare"]
    assert (repo / "dvc.lock").read_text() == lock_before
    assert stages_run(dvc(repo, "repro")) == []
    prepare_runs = mlflow.search_runs([mlflow.get_experiment_by_name("torchtrack-prepare").experiment_id])
    assert len({run.data.tags["torchtrack.prepared_md5"] for run in prepare_runs}) == 1 < len(prepare_runs)


@pytest.mark.parametrize("module", ["data.py", "training.py", "models.py", "losses.py", "checkpoints.py"])
def test_touching_code_that_shapes_the_model_makes_train_changed(repo, module):
    source = repo / "src" / "torchtrack" / module
    saved = source.read_text()
    source.write_text(saved + "# touched\n")
    try:
        status = yaml.safe_load(dvc(repo, "status", "--json"))
        assert "train" in status, status
    finally:
        source.write_text(saved)
    assert yaml.safe_load(dvc(repo, "status", "--json")) == {}


def test_changing_lr_reruns_only_train_and_evaluate(repo):
    update_params(repo, train={"lr": 0.005})
    assert stages_run(dvc(repo, "repro")) == ["validate", "train", "evaluate"]


def test_dvc_exp_run_lands_in_the_same_store_named_after_the_experiment(repo, mlflow):
    subprocess.run(["git", "commit", "-qam", "lr 0.005"], cwd=repo, env=pipeline_env(repo), check=True)
    dvc(repo, "exp", "run", "-n", "lr-005", "-S", "train.lr=0.05")
    runs = {run.info.run_name: run for run in model_runs(mlflow)}
    assert runs["lr-005"].data.tags["dvc.exp_name"] == "lr-005"
    assert runs["lr-005"].data.params["train.lr"] == "0.05"
    assert "test_mse" in runs["lr-005"].data.metrics
    shown = json.loads(dvc(repo, "exp", "show", "--json"))
    assert "lr-005" in json.dumps(shown)
