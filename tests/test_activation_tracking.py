"""The train stage logs a learnable activation's parameters every epoch to TensorBoard and MLflow,
and the trained lesson models (learnable activation, MLP) still export to MLflow."""

from dataclasses import replace

import pytest
from mlflow import MlflowClient
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from helpers import isolate_env
from torchtrack.config import Config, DataConfig, ModelConfig, TrainConfig
from torchtrack.paths import MODEL_FILE
from torchtrack.stages import evaluate, prepare, train
from torchtrack.tracking.backend.lineage import find_model_run

EPOCHS = 3


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """An empty project folder with its own MLflow store."""
    monkeypatch.chdir(tmp_path)
    isolate_env(monkeypatch)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    return tmp_path


def run_pipeline(config):
    """prepare, train and evaluate in the working folder; the final losses and the model run."""
    prepare.run(config)
    final = train.run(config)
    evaluate.run(config)
    return final, find_model_run(MODEL_FILE, MlflowClient())


@pytest.mark.slow
def test_learnable_activation_values_are_logged_per_epoch_to_both_trackers(workdir):
    config = replace(
        Config(),
        data=DataConfig(family="scaled_tanh", n_samples=400, n_features=2),
        model=ModelConfig(activation="manual_grad_tanh_plus_x"),
        train=TrainConfig(epochs=EPOCHS, batch_size=64, device="cpu"),
    )
    final, model = run_pipeline(config)

    client = MlflowClient()
    (train_run,) = client.search_runs(
        [model.info.experiment_id],
        f"tags.`mlflow.parentRunId` = '{model.info.run_id}' AND tags.`dvc.stage` = 'train'",
    )
    for name in ("activation.a", "activation.b"):
        history = client.get_metric_history(train_run.info.run_id, name)
        assert sorted(m.step for m in history) == list(range(1, EPOCHS + 1))
        assert history[-1].value == pytest.approx(final[name])
    model_run = model.data
    assert model_run.metrics["activation.a"] == pytest.approx(final["activation.a"])
    assert "test_mse" in model_run.metrics
    assert model_run.params["model.activation"] == "manual_grad_tanh_plus_x"

    (event_dir,) = (workdir / "runs" / "train").iterdir()
    events = EventAccumulator(str(event_dir)).Reload()
    for tag in ("activation/a", "activation/b", "optimizer/lr"):  # TensorBoard's groups
        assert [e.step for e in events.Scalars(tag)] == list(range(1, EPOCHS + 1))


@pytest.mark.slow
def test_mlp_with_huber_and_early_stopping_runs_end_to_end(workdir):
    config = replace(
        Config(),
        data=DataConfig(family="nonlinear", n_samples=400, n_features=3),
        model=ModelConfig(kind="mlp", activation="gelu", hidden_sizes=(8, 4), dropout=0.1),
        train=TrainConfig(
            loss="huber",
            optimizer="adamw",
            weight_decay=0.01,
            lr_schedule="step",
            lr_step_epochs=1,
            early_stopping_patience=2,
            epochs=EPOCHS,
            batch_size=64,
            device="cpu",
        ),
    )
    final, model = run_pipeline(config)
    assert final["epochs"] <= EPOCHS
    logged = MlflowClient().search_logged_models(experiment_ids=[model.info.experiment_id])
    assert len(logged) == 1  # the pt2 export of the MLP succeeded
