"""Shared fixtures: an isolated working folder with its own MLflow store and TensorBoard root."""

from __future__ import annotations

import pytest

from helpers import isolate_env
from torchtrack.config import TrackingConfig
from torchtrack.tracking.client import stop_daemons

# The longest files: the smoke bench's two halves, minutes each while the other worker runs the rest.
LONGEST_FILES = ("test_bench_repro.py", "test_bench.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """LONGEST_FILES first, then the files of slow tests (a stable sort, each file's tests kept
    together and in order): pytest-xdist, run with --no-loadscope-reorder (the Makefile's
    PARALLEL), hands out files in this order, so the workers start on the longest ones and end
    together on the quick ones, not one of them alone on a long file."""
    slow_files = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: (item.path.name not in LONGEST_FILES, item.path not in slow_files))


@pytest.fixture(autouse=True, scope="module")
def store_daemons_end_with_their_module(tmp_path_factory):
    """The store daemons of a module's temporary stores end with the module, not IDLE_EXIT_S after
    its last test, so that a run of the suite does not keep dozens of them alive."""
    yield
    stop_daemons(tmp_path_factory.getbasetemp())


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A fresh cwd outside any repo; the default MLflow store becomes tmp_path/mlflow.db."""
    isolate_env(monkeypatch)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def tracking_config() -> TrackingConfig:
    """Tracking settings with a small flush threshold so batching is observable."""
    return TrackingConfig(experiment="test", tensorboard_dir="runs", flush_every_n_metrics=50)
