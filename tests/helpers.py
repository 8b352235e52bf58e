"""Helpers that tests import (never from conftest or another test module): the environment a
test must isolate, TensorBoard's scalars read back, a logger that records what `fit` logs, a
run's dataset inputs as plain values, the lines of a command's output that are noise, and
folders built once for every pytest-xdist worker."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from filelock import FileLock

from torchtrack.tracking.client import stop_daemons

# What points a process at another store or marks it as part of a DVC pipeline or experiment:
# inherited from a developer's shell or from `dvc exp run`, each would send a test's runs elsewhere.
ISOLATED_ENV = ("MLFLOW_TRACKING_URI", "DVC_ROOT", "DVC_EXP_NAME")

# Every output but the figures: bytes that depend only on code, params and data (no output
# holds a run id, see tracking/hashes.py).
DETERMINISTIC_OUTPUTS = (
    "data/prepared",
    "metrics/prepare.json",
    "models/model.pt",
    "metrics/train.json",
    "plots/loss.csv",
    "metrics/evaluate.json",
    "plots/predictions.csv",
)


WIDTH = 100  # a line longer than this wraps in a terminal of common width


def noisy_lines(output: str) -> list[str]:
    """The lines of a command's output that a user should not see: MLflow's INFO lines, its
    artifact download bars, and lines too long for a terminal."""
    return [
        line
        for line in output.splitlines()
        if " INFO mlflow" in line or "Downloading artifacts" in line or len(line) > WIDTH
    ]


def isolate_env(patch: pytest.MonkeyPatch) -> None:
    """Unset ISOLATED_ENV for this test (or MonkeyPatch context)."""
    for name in ISOLATED_ENV:
        patch.delenv(name, raising=False)


def isolated_env() -> dict[str, str]:
    """os.environ without ISOLATED_ENV, for a subprocess."""
    return {k: v for k, v in os.environ.items() if k not in ISOLATED_ENV}


def read_scalars(log_dir) -> dict[str, list[tuple[int, float]]]:
    """Every scalar in a TensorBoard log directory, read back with TensorBoard's own reader."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(log_dir), size_guidance={"scalars": 0})
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


class RecordingLogger:
    """A logger for `fit` that keeps every (step, metrics) it is given, in order."""

    def __init__(self):
        self.logged: list[tuple[int, dict[str, float]]] = []

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        self.logged.append((step, dict(metrics)))

    def steps_of(self, key: str) -> list[int]:
        """The steps at which `key` was logged."""
        return [step for step, metrics in self.logged if key in metrics]


def windowed(splits, folder: Path, group_rows: int, buffer_rows: int):
    """The held (train, val) `splits` (TabularDatasets of a DataFrame) written as Parquet files in
    row groups of `group_rows`, and opened as splits larger than a `buffer_rows` shuffle buffer
    (`tabular.ParquetRows`): read a window of row groups at a time."""
    from torchtrack.tabular import ParquetRows

    for name, rows in zip(("train", "val"), splits, strict=True):
        rows.data.to_parquet(folder / f"{name}.parquet", index=False, row_group_size=group_rows)
    return tuple(ParquetRows(folder / f"{name}.parquet", buffer_rows) for name in ("train", "val"))


def save_model(path, model, features: list[str], target: str = "y"):
    """`model` (a RegressionModel with its own default activation) saved as train saves it,
    with a preprocessing that reads `features` as numbers and changes nothing (no scaling, no
    gaps), so a logged model's answers are `model`'s own. Returns that preprocessing, what
    `Tracker.log_model` takes with the file."""
    import numpy as np
    import pandas as pd

    from torchtrack.config import DataConfig, ModelConfig
    from torchtrack.models import save_checkpoint
    from torchtrack.preprocessing import Preprocessor

    rows = np.arange(2.0 * len(features)).reshape(2, -1)  # (2, F): distinct values, so no column is constant
    frame = pd.DataFrame(rows, columns=features).assign(**{target: 0.0})
    preprocessor = Preprocessor.fit(frame, target, DataConfig(source="synthetic", scale=False))
    extra = {"features": features, "target": target, "preprocessing": preprocessor.to_dict()}
    save_checkpoint(path, model, ModelConfig(activation="tanh_plus_x"), extra)  # RegressionModel's default
    return preprocessor


def wait_until(condition, what: str, timeout_s: float = 60.0, every_s: float = 0.1):
    """Poll `condition()` until it returns something true, and return that; fail saying `what`
    was awaited once `timeout_s` has passed. A deadline, not a fixed sleep: as fast as the
    machine allows, and patient with a loaded one."""
    import time

    deadline = time.monotonic() + timeout_s
    while not (value := condition()):
        if time.monotonic() > deadline:
            pytest.fail(f"waited {timeout_s:.0f} s for {what}")
        time.sleep(every_s)
    return value


def dataset_inputs(run) -> list[tuple]:
    """An MLflow run's dataset inputs, each as (name, digest, source type, source, schema,
    profile, sorted tags), sorted: what two stores must agree on for the same run."""
    return sorted(
        (d.dataset.name, d.dataset.digest, d.dataset.source_type, d.dataset.source, d.dataset.schema,
         d.dataset.profile, sorted((t.key, t.value) for t in d.tags))
        for d in run.inputs.dataset_inputs
    )  # fmt: skip


def shared_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session's temporary folder that every pytest-xdist worker shares (a worker's own
    basetemp is a folder inside it); without xdist, the basetemp itself."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def built_once(tmp_path_factory: pytest.TempPathFactory, name: str, build: Callable[[Path], None]) -> Path:
    """The folder `name`, filled by `build(folder)` once per test session by whichever worker
    asks first, while the others wait; a build that failed is retried, from an empty folder, by
    the next one that asks. A template that tests copy: its store daemons end once it is built."""
    folder = shared_root(tmp_path_factory) / name
    built = folder.with_name(f"{name}.built")
    with FileLock(folder.with_name(f"{name}.lock")):
        if not built.exists():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            build(folder)
            stop_daemons(folder)
            built.touch()
    return folder


BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench.py"
# The smoke bench runs in two files, so that pytest-xdist's two workers share it: the parts that
# run `dvc repro` (tests/test_bench_repro.py) and all the others (tests/test_bench.py).
BENCH_REPRO_PARTS = ("pipeline", "fixed")


def smoke_bench(folder: Path, parts: list[str]) -> tuple[dict, str]:
    """`bench.py --smoke --only PARTS` (each part once at its smallest size) run in `folder`: its
    results, and the section `make bench` writes from them into docs/performance.md."""
    output = folder / "results.json"
    result = subprocess.run(
        [sys.executable, BENCH, "--smoke", "--output", str(output), "--only", *parts],
        cwd=folder,
        env=isolated_env(),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    sys.path.insert(0, str(BENCH.parents[1] / "scripts"))
    from docs_tables import performance_section

    results = json.loads(output.read_text())
    return results, performance_section(results)
