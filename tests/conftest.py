"""Shared fixtures: an isolated working folder with its own MLflow store and TensorBoard root.
And the order the test files run in: the longest first (tests/durations.json)."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import pytest

from helpers import isolate_env
from torchtrack.config import TrackingConfig
from torchtrack.tracking.client import stop_daemons

# Seconds each test file took in a run of `make test` (its tests' setup, call and teardown), as
# `--record-durations` wrote them: the order the files go out in. A file not there yet counts as
# UNKNOWN_SLOW_S when it holds a slow test, else as quick.
DURATIONS = Path(__file__).with_name("durations.json")
UNKNOWN_SLOW_S = 60.0


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--record-durations",
        action="store_true",
        help=f"write each test file's seconds in this run into {DURATIONS.name}, the order of later runs",
    )


def pytest_configure(config: pytest.Config) -> None:
    # In the one process that sees every report: pytest-xdist's controller, or pytest alone.
    if config.getoption("record_durations") and not hasattr(config, "workerinput"):
        config.pluginmanager.register(DurationRecorder(), "record-durations")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The longest files first (a stable sort, each file's tests kept together and in order):
    pytest-xdist, run with --no-loadscope-reorder (the Makefile's PARALLEL), hands out files in
    this order, so the workers start on the long ones and end together on the quick ones, not
    one of them alone on a long file."""
    known = json.loads(DURATIONS.read_text()) if DURATIONS.is_file() else {}
    slow_files = {item.path.name for item in items if item.get_closest_marker("slow")}

    def expected_s(item: pytest.Item) -> float:
        name = item.path.name
        return known.get(name, UNKNOWN_SLOW_S if name in slow_files else 0.0)

    items.sort(key=lambda item: -expected_s(item))


class DurationRecorder:
    """Adds up the seconds of each test file's reports; writes them when the session ends."""

    def __init__(self) -> None:
        self.seconds: defaultdict[str, float] = defaultdict(float)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.seconds[Path(report.fspath).name] += report.duration

    def pytest_sessionfinish(self) -> None:
        ranked = sorted(self.seconds.items(), key=lambda kv: -kv[1])
        DURATIONS.write_text(json.dumps({name: round(s, 1) for name, s in ranked}, indent=0) + "\n")


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


@pytest.fixture(scope="module")
def module_folder(tmp_path_factory):
    """A folder that a module's tests share, and with it the MLflow store made there and its daemon."""
    return tmp_path_factory.mktemp("module")


@pytest.fixture
def shared_workdir(module_folder, monkeypatch):
    """`workdir`, but the module's one folder: its store is made, and its store daemon started,
    once per module rather than once per test. For tests that read back only the runs they made
    themselves and need no store or daemon of their own (no count of daemons, no kill, no damage)."""
    isolate_env(monkeypatch)
    monkeypatch.chdir(module_folder)
    return module_folder


@pytest.fixture
def tracking_config() -> TrackingConfig:
    """Tracking settings with a small flush threshold so batching is observable."""
    return TrackingConfig(experiment="test", tensorboard_dir="runs", flush_every_n_metrics=50)
