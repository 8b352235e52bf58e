"""Tracker: one door that fans out to TensorBoard and MLflow (a real SQLite store here)."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest
import torch
from mlflow import MlflowClient
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from helpers import read_scalars, save_model, wait_until
from torchtrack.config import Config, DataConfig, ModelConfig, TrainConfig
from torchtrack.models import RegressionModel, build_model
from torchtrack.tracking.backend.model_logging import fluent_tracking_uri
from torchtrack.tracking.client import DAEMON_ENV
from torchtrack.tracking.event_writer import traced_graph
from torchtrack.tracking.location import repo_root, tracking_uri
from torchtrack.tracking.tracker import SYSTEM_METRICS_EVERY_S, Tracker


def client() -> MlflowClient:
    return MlflowClient(tracking_uri())


def test_default_store_is_sqlite_at_repo_root(workdir, monkeypatch):
    assert tracking_uri() == f"sqlite:///{workdir / 'mlflow.db'}"
    (workdir / "dvc.yaml").write_text("stages: {}\n")
    (workdir / "sub").mkdir()
    monkeypatch.chdir(workdir / "sub")
    assert repo_root() == workdir  # the nearest folder holding dvc.yaml


def test_dvc_root_and_env_override_pick_the_store(workdir, monkeypatch, tmp_path_factory):
    parent = tmp_path_factory.mktemp("parent-repo")
    monkeypatch.setenv("DVC_ROOT", str(parent))  # as in a queued experiment's temporary copy
    assert tracking_uri() == f"sqlite:///{parent / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:////elsewhere/store.db")
    assert tracking_uri() == "sqlite:////elsewhere/store.db"


def test_train_opens_a_model_run_with_the_stage_nested(shared_workdir, tracking_config):
    params = {"train.lr": 0.01, "model.activation": "tanh_plus_x", "data.path": None}
    with Tracker(tracking_config, "train", params=params, model_run="new") as tracker:
        for step in range(1, 121):
            tracker.log_metrics({"train_loss_step": 1.0 / step}, step)
        tracker.log_summary({"train_loss": 0.5, "val_loss": 0.6}, step=3)
    model_run = client().get_run(tracker.model_run_id)
    stage_run = client().get_run(tracker.run_id)
    assert model_run.info.status == stage_run.info.status == "FINISHED"
    assert "mlflow.parentRunId" not in model_run.data.tags
    assert stage_run.data.tags["mlflow.parentRunId"] == tracker.model_run_id
    assert stage_run.data.tags["dvc.stage"] == "train"
    assert (
        model_run.data.params
        == stage_run.data.params
        == {"train.lr": "0.01", "model.activation": "tanh_plus_x", "data.path": "None"}
    )
    assert model_run.data.metrics == {"train_loss": 0.5, "val_loss": 0.6}
    history = client().get_metric_history(tracker.run_id, "train_loss_step")
    assert [m.step for m in history] == list(range(1, 121))
    assert "tensorboard" in {a.path for a in client().list_artifacts(tracker.run_id)}


def test_step_metrics_are_buffered_until_the_batch_is_full(shared_workdir, tracking_config):
    with Tracker(tracking_config, "train", params={}, model_run="new") as tracker:
        for step in range(tracking_config.flush_every_n_metrics - 1):
            tracker.log_metrics({"loss": float(step)}, step)
        assert client().get_metric_history(tracker.run_id, "loss") == []  # nothing written yet
        tracker.log_metrics({"loss": 0.0}, tracking_config.flush_every_n_metrics)
        assert (
            len(client().get_metric_history(tracker.run_id, "loss")) == tracking_config.flush_every_n_metrics
        )


def test_tensorboard_gets_scalars_graph_and_hparams(shared_workdir, tracking_config):
    model = RegressionModel(3)
    with Tracker(tracking_config, "train", params={"train.lr": 0.1}, model_run="new") as tracker:
        tracker.log_graph(model, torch.zeros(4, 3))
        tracker.log_metrics({"train_loss": 2.0, "val_loss": 3.0}, 1)
        tracker.log_metrics({"train_loss": 1.0, "val_loss": 1.5}, 2)
        tracker.log_hyperparams({"train.lr": 0.1, "data.path": None}, {"val_loss": 1.5})
    assert tracker.log_dir.parent == shared_workdir / "runs" / "train"
    scalars = read_scalars(tracker.log_dir)
    assert scalars["loss/train"] == [(1, 2.0), (2, 1.0)]  # one "loss" group, the train and val curves in it
    assert scalars["loss/val"] == [(1, 3.0), (2, 1.5)]
    events = EventAccumulator(str(tracker.log_dir))
    events.Reload()
    assert events.Graph() is not None
    assert "model_summary.txt" in {a.path for a in client().list_artifacts(tracker.run_id)}


@pytest.mark.parametrize("model", [{}, {"kind": "mlp", "hidden_sizes": [8, 4], "activation": "relu"}])
def test_the_graph_is_the_one_torch_s_tensorboard_writer_draws(model):
    """traced_graph skips torch's trace check (a second of imports), and gives the same graph."""
    from torch.utils.tensorboard._pytorch_graph import graph

    net, example = build_model(ModelConfig(**model), 5), torch.randn(8, 5)
    assert traced_graph(net, example) == graph(net, example)
    assert net.training  # traced in eval mode, and left as it was


def test_hparams_show_the_key_params_and_those_not_at_their_default_and_lists_as_params_yaml(
    shared_workdir, tracking_config, monkeypatch
):
    """TensorBoard's HPARAMS opens on what tells runs apart, and `[]` reads as params.yaml writes it."""
    params = Config(train=TrainConfig(lr=0.1), data=DataConfig(categorical=("island",))).flat()
    with Tracker(tracking_config, "train", params=params, model_run="new") as tracker:
        logged = {}
        monkeypatch.setattr(tracker.writer, "add_hparams", lambda hparams, metrics: logged.update(hparams))
        tracker.log_hyperparams(params, {"val_loss": 1.5})
    assert logged == {
        "model.activation": "learnable_tanh_plus_x",
        "train.optimizer": "adam",
        "train.lr": 0.1,
        "train.max_steps": 2000,
        "train.batch_size": 256,
        "data.categorical": "['island']",
    }
    shown = client().get_run(tracker.model_run_id).data.params
    assert shown["data.dates"] == "[]" and shown["model.hidden_sizes"] == "[64, 64]"
    assert shown["data.target"] == "None"


def test_evaluate_nests_under_an_existing_model_run(shared_workdir, tracking_config):
    with Tracker(tracking_config, "train", params={}, model_run="new") as train:
        pass
    with Tracker(tracking_config, "evaluate", params={}, model_run=train.model_run_id) as evaluate:
        evaluate.log_metrics({"test_mse": 0.1})
        evaluate.log_summary({"test_mse": 0.1})
    assert client().get_run(evaluate.run_id).data.tags["mlflow.parentRunId"] == train.model_run_id
    assert client().get_run(train.model_run_id).data.metrics["test_mse"] == 0.1
    assert client().get_run(train.model_run_id).info.status == "FINISHED"


def test_prepare_runs_live_in_their_own_experiment(shared_workdir, tracking_config):
    with Tracker(tracking_config, "prepare", params={"seed": 1}) as tracker:
        pass
    run = client().get_run(tracker.run_id)
    assert client().get_experiment(run.info.experiment_id).name == "test-prepare"
    assert "mlflow.parentRunId" not in run.data.tags
    with pytest.raises(RuntimeError, match="model run"):
        tracker.log_summary({"x": 1.0})


@pytest.mark.parametrize(("error", "status"), [(ValueError, "FAILED"), (KeyboardInterrupt, "KILLED")])
def test_a_stage_that_raises_ends_its_runs_with_a_status(shared_workdir, tracking_config, error, status):
    with pytest.raises(error):
        with Tracker(tracking_config, "train", params={}, model_run="new") as tracker:
            tracker.log_metrics({"loss": 1.0}, 1)
            raise error()
    assert client().get_run(tracker.run_id).info.status == status
    assert client().get_run(tracker.model_run_id).info.status == status
    assert len(client().get_metric_history(tracker.run_id, "loss")) == 1  # buffered metrics kept


def test_dvc_experiment_name_names_the_model_run(shared_workdir, tracking_config, monkeypatch):
    monkeypatch.setenv("DVC_EXP_NAME", "brave-lr")
    with Tracker(tracking_config, "train", params={}, model_run="new") as tracker:
        pass
    run = client().get_run(tracker.model_run_id)
    assert run.info.run_name == "brave-lr"
    assert run.data.tags["dvc.exp_name"] == "brave-lr"


@pytest.mark.parametrize("daemon", ["1", "0"], ids=["store-daemon", "in-process"])
def test_logged_model_loads_with_pyfunc_and_predicts_like_the_module(
    shared_workdir, tracking_config, monkeypatch, daemon
):
    import mlflow

    monkeypatch.setenv(DAEMON_ENV, daemon)
    torch.manual_seed(0)
    model = RegressionModel(3)
    preprocessor = save_model(shared_workdir / f"model-{daemon}.pt", model, ["a", "b", "c"])
    example = np.random.default_rng(0).standard_normal((5, 3)).astype(np.float32)
    with Tracker(tracking_config, "train", params={}, model_run="new") as tracker:
        uri = tracker.log_model(shared_workdir / f"model-{daemon}.pt", preprocessor)
    with torch.no_grad():
        expected = model(torch.from_numpy(example)).numpy().reshape(-1)
    with fluent_tracking_uri(tracking_uri()):
        loaded = mlflow.pyfunc.load_model(uri)
        got = np.asarray(loaded.predict(pd.DataFrame(example, columns=["a", "b", "c"])[["c", "b", "a"]]))
    assert loaded.metadata.get_input_schema().input_names() == ["a", "b", "c"]
    np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_environment_sets_variables_for_its_duration_only(monkeypatch):
    from torchtrack.environment import environment

    monkeypatch.setenv("TORCHTRACK_A", "before")
    monkeypatch.delenv("TORCHTRACK_B", raising=False)
    with environment({"TORCHTRACK_A": "during", "TORCHTRACK_B": "during"}):
        assert os.environ["TORCHTRACK_A"] == os.environ["TORCHTRACK_B"] == "during"
    assert os.environ["TORCHTRACK_A"] == "before" and "TORCHTRACK_B" not in os.environ


def test_a_dvc_experiment_names_its_tensorboard_run_directories(shared_workdir, tracking_config, monkeypatch):
    monkeypatch.setenv("DVC_EXP_NAME", "brave-lr")
    with Tracker(tracking_config, "train", params={}, model_run="new") as tracker:
        pass
    assert tracker.log_dir.parent == shared_workdir / "runs" / "train"
    assert tracker.log_dir.name.endswith(f"-brave-lr-{tracker.run_id[:8]}")


@pytest.mark.parametrize("daemon", ["1", "0"], ids=["store-daemon", "in-process"])
def test_system_metrics_sample_cpu_and_memory_into_the_stage_run(
    shared_workdir, tracking_config, monkeypatch, daemon
):
    import time

    sampled = {"system/cpu_utilization_percentage", "system/system_memory_usage_megabytes"}
    monkeypatch.setenv(DAEMON_ENV, daemon)
    with Tracker(tracking_config, "train", params={}, model_run="new", system_metrics=True) as tracker:
        # a short train stage lasts a few default intervals: the first samples come within it
        wait_until(
            lambda: sampled <= set(client().get_run(tracker.run_id).data.metrics),
            f"system metrics sampled every {SYSTEM_METRICS_EVERY_S} s",
        )
    assert not any(name.startswith("system/") for name in client().get_run(tracker.model_run_id).data.metrics)
    with Tracker(tracking_config, "evaluate", params={}, model_run=tracker.model_run_id) as evaluate:
        time.sleep(0.5)
    assert not any(name.startswith("system/") for name in client().get_run(evaluate.run_id).data.metrics)


def test_logging_and_registering_a_model_keep_the_stores_environment_variable(
    workdir, tracking_config, monkeypatch
):
    elsewhere = f"sqlite:///{workdir / 'elsewhere.db'}"  # not the default store at the repo root
    monkeypatch.setenv("MLFLOW_TRACKING_URI", elsewhere)
    preprocessor = save_model(workdir / "model.pt", RegressionModel(3), ["a", "b", "c"])
    with Tracker(tracking_config, "train", params={}, model_run="new") as tracker:
        version = tracker.register_model(tracker.log_model(workdir / "model.pt", preprocessor))
    assert (
        os.environ["MLFLOW_TRACKING_URI"] == elsewhere
    )  # MLflow's set_tracking_uri unsets it on the way out
    assert MlflowClient(elsewhere).get_model_version("test", version).run_id == tracker.model_run_id
