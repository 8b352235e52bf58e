"""Shared fixtures: an isolated working folder with its own MLflow store and TensorBoard root."""

from __future__ import annotations

import pytest

from torchtrack.config import TrackingConfig

ISOLATED_ENV = ("MLFLOW_TRACKING_URI", "DVC_ROOT", "DVC_EXP_NAME")


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A fresh cwd outside any repo; the default MLflow store becomes tmp_path/mlflow.db."""
    for name in ISOLATED_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def tracking_config() -> TrackingConfig:
    """Tracking settings with a small flush threshold so batching is observable."""
    return TrackingConfig(experiment="test", tensorboard_dir="runs", flush_every_n_metrics=50)


def read_scalars(log_dir) -> dict[str, list[tuple[int, float]]]:
    """Every scalar in a TensorBoard log directory, read back with TensorBoard's own reader."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(log_dir), size_guidance={"scalars": 0})
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}
