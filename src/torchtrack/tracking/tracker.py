"""The one door to tracking: every stage logs through `Tracker`, which fans out to
TensorBoard (one log directory per stage execution) and MLflow. Where the store is, opening
it and keeping it tidy is backend/store.py's; which run made a file is backend/lineage.py's.

MLflow layout: each trained model is one top-level run in the experiment (all params that
shaped it, final train/val metrics, test metrics from evaluate, the logged model); the
train and evaluate executions are nested runs under it. prepare executions are runs in
the `<experiment>-prepare` experiment, linked from the model run by tag. Step metrics are
buffered and written with `MlflowClient.log_batch`, never one database write per step, and
at least every `flush_every_seconds`, so a hard kill loses only the last few seconds.

Nothing is left RUNNING: a stage that raises ends its runs FAILED (KILLED on Ctrl-C or
SIGTERM, which never cut a logging call in half), and each run records its process, so
the next stage marks KILLED the runs whose process died without a word (SIGKILL).
"""

from __future__ import annotations

import os
import struct
import sys
import time
from pathlib import Path
from typing import Any

from torchtrack.config import KEY_PARAMS, Config, TrackingConfig
from torchtrack.profiling import timed
from torchtrack.signals import uninterrupted
from torchtrack.tracking.client import DaemonClient, open_run_store
from torchtrack.tracking.location import artifact_location, git_commit, repo_root, tracking_uri
from torchtrack.tracking.processes import ProcessIdentity
from torchtrack.tracking.tensorboard_layout import run_dir_name, scalar_tag

MAX_BATCH = 1000  # MLflow's limit on metrics per log_batch call
# Seconds between MLflow's system-metrics samples (CPU, memory, GPU where present): one psutil
# read and one small write each, off the training thread (in the store daemon, where there is one).
# MLflow's own default, 10 s, is longer than the default train stage runs: its run got none.
# MLflow's MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL, in the stage's environment, overrides it.
SYSTEM_METRICS_EVERY_S = 1
SAMPLING_INTERVAL_ENV = "MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL"


def param_text(value: Any) -> str:
    """A param as MLflow and TensorBoard show it: a list as params.yaml writes it, `[]` or
    `[64, 64]` (not the config's tuple, `()`); None as None, which reproduce.param_value reads."""
    return str(list(value)) if isinstance(value, tuple) else str(value)


def run_status(exc_type: type[BaseException] | None) -> str:
    """The MLflow status of a stage that ended by raising `exc_type` (None: it did not)."""
    if exc_type is None:
        return "FINISHED"
    return "KILLED" if issubclass(exc_type, KeyboardInterrupt) else "FAILED"


class Tracker:
    """Logs one stage execution to TensorBoard and MLflow; use as a context manager.

    `model_run`: None for a standalone run (prepare), "new" to open a new top-level model
    run with this stage nested under it (train), or an existing model run id to nest this
    stage under (evaluate). `log_summary` writes to the model run's row. `system_metrics`:
    sample CPU, memory (and GPU) into this stage's run with MLflow's system metrics monitor.

    `continues`: with model_run "new", a (tag, value) naming an earlier attempt of the same
    training run (torchrun restarted it after a rank failed): its model run, if one is left
    unfinished, is reopened and carries on, so that one training run is one model run.

    Starting a Tracker marks KILLED the runs of its experiment that a process of this host
    left RUNNING and that no longer exists.
    """

    @timed("run creation")
    def __init__(
        self,
        config: TrackingConfig,
        stage: str,
        *,
        params: dict[str, Any],
        model_run: str | None = None,
        tags: dict[str, str] | None = None,
        system_metrics: bool = False,
        continues: tuple[str, str] | None = None,
    ):
        self.config = config
        self.stage = stage
        self.root = repo_root()
        self.store = open_run_store()  # plain values in and out
        # (key, value, step, wall time) waiting for `flush`: this stage's scalars, for both
        # backends, and the model run's summary, for MLflow only.
        self._metrics: list[tuple[str, float, int, float]] = []
        self._summary: list[tuple[str, float, int, float]] = []
        experiment = config.experiment if model_run else f"{config.experiment}-prepare"
        self.experiment_id = self.store.experiment_id(experiment, artifact_location(tracking_uri()))
        owner = ProcessIdentity.current()
        ended = self.store.end_runs_of_gone_processes(self.experiment_id, owner.host, f"torchtrack {stage}")
        for line in ended:
            print(line, file=sys.stderr)
        base_tags = self._context_tags() | owner.as_tags() | (tags or {})
        self.model_run_id: str | None = None
        self.run_id: str | None = None
        self._owns_model_run = model_run == "new"
        self._closed = False
        try:
            if self._owns_model_run and continues:
                self.model_run_id = self.store.unfinished_model_run(self.experiment_id, *continues)
                if self.model_run_id:
                    self.store.reopen_run(self.model_run_id)
            if self._owns_model_run and not self.model_run_id:
                name = os.environ.get("DVC_EXP_NAME") or f"model-{time.strftime('%Y%m%d-%H%M%S')}"
                self.model_run_id = self.store.create_run(
                    self.experiment_id, name, base_tags | {"torchtrack.kind": "model"}
                )
                self._log_params(self.model_run_id, params)
            elif not self._owns_model_run and model_run:
                self.model_run_id = model_run
            if self._owns_model_run:  # its model is logged once this stage has trained
                self.store.prepare_model_logging()
            run_tags = base_tags | {"torchtrack.kind": "stage"}
            if self.model_run_id:
                run_tags["mlflow.parentRunId"] = self.model_run_id
            self.run_id = self.store.create_run(self.experiment_id, stage, run_tags)
            self._log_params(self.run_id, params)
            self.log_dir = (
                self.root
                / config.tensorboard_dir
                / stage
                / run_dir_name(self.run_id, os.environ.get("DVC_EXP_NAME"))
            )
            from torchtrack.tracking.event_writer import EventWriter

            self.writer = EventWriter(self.log_dir)
            self._monitored: str | None = None  # the run whose system metrics are being sampled
            if system_metrics:
                every_s = float(os.environ.get(SAMPLING_INTERVAL_ENV) or SYSTEM_METRICS_EVERY_S)
                self.store.start_system_metrics(self.run_id, every_s)
                self._monitored = self.run_id
        except BaseException as exc:  # a half-made Tracker never reaches __exit__
            self._end_runs(run_status(type(exc)))
            raise
        self._last_flush = time.monotonic()

    # -- set-up ---------------------------------------------------------------------------
    def _context_tags(self) -> dict[str, str]:
        tags = {"dvc.stage": self.stage, "mlflow.source.name": f"torchtrack {self.stage}"}
        commit = git_commit(self.root)
        if commit:
            tags["mlflow.source.git.commit"] = commit
        if os.environ.get("DVC_EXP_NAME"):
            tags["dvc.exp_name"] = os.environ["DVC_EXP_NAME"]
        return tags

    @timed("params")
    def _log_params(self, run_id: str, params: dict[str, Any]) -> None:
        items = [(k, param_text(v)) for k, v in params.items()]
        for start in range(0, len(items), 100):  # MLflow's limit on params per batch
            self.store.log_batch(run_id, params=items[start : start + 100])

    # -- logging --------------------------------------------------------------------------
    @timed("step metrics")
    @uninterrupted()
    def log_metrics(self, metrics: dict[str, float], step: int = 0) -> None:
        """Scalars for this stage, buffered and written to both backends in batches.

        `Tracker` is thereby a logger for `training.fit`. The hot path only appends: a
        TensorBoard write per call (protobuf encoding plus a
        wake-up of its writer thread) measurably slowed small-batch training.
        """
        now = time.time()
        self._metrics.extend((key, float(value), step, now) for key, value in metrics.items())
        if (
            len(self._metrics) >= self.config.flush_every_n_metrics
            or time.monotonic() - self._last_flush >= self.config.flush_every_seconds
        ):
            self.flush()

    @timed("step metrics")
    @uninterrupted()
    def log_summary(self, metrics: dict[str, float], step: int = 0) -> None:
        """Final figures for the model run's row in MLflow (what Compare shows)."""
        if self.model_run_id is None:
            raise RuntimeError("log_summary needs a model run; this stage has none")
        now = time.time()
        self._summary.extend((key, float(value), step, now) for key, value in metrics.items())

    @timed("artifacts")
    @uninterrupted()
    def log_graph(self, model: Any, example: Any) -> None:
        """The model graph for TensorBoard; its printed structure as an MLflow artifact."""
        self.writer.add_graph(model, example)
        self.store.log_text(self.run_id, str(model), "model_summary.txt")

    @timed("artifacts")
    @uninterrupted()
    def log_hyperparams(self, params: dict[str, Any], metrics: dict[str, float]) -> None:
        """Hyperparameters with their final metrics, for TensorBoard's HPARAMS tab (as Lightning's
        TensorBoardLogger does); MLflow has them all as the runs' params from the start.

        HPARAMS gets KEY_PARAMS and the params whose value is not params.yaml's default: its
        table opens on the columns that tell runs apart, not on two dozen constant ones.
        """
        defaults = Config().flat()
        shown = {k: v for k, v in params.items() if k in KEY_PARAMS or k not in defaults or v != defaults[k]}
        clean = {k: v if isinstance(v, (int, float, str, bool)) else param_text(v) for k, v in shown.items()}
        self.writer.add_hparams(clean, {f"hparam/{k}": v for k, v in metrics.items()})

    @timed("figures")
    @uninterrupted()
    def log_figure(self, path: Path) -> None:
        """A figure that the stage saved as the PNG `path`, to both backends.

        TensorBoard gets the saved file's bytes, so the figure is drawn once (`add_figure`
        would draw it again).
        """
        from tensorboard.compat.proto.summary_pb2 import Summary

        png = Path(path).read_bytes()
        width, height = struct.unpack(">II", png[16:24])  # the PNG header's IHDR chunk
        image = Summary.Image(height=height, width=width, colorspace=4, encoded_image_string=png)
        self.writer.add_summary(Summary(value=[Summary.Value(tag=path.stem, image=image)]))
        self.store.log_artifact(self.run_id, str(Path(path).resolve()), "figures")
        if self.model_run_id:
            self.store.log_artifact(self.model_run_id, str(Path(path).resolve()), "figures")

    @property
    def painter(self) -> DaemonClient | None:
        """What renders this stage's figures (figures.draw): the store daemon, which has matplotlib
        imported; None, the stage itself, where the stage opened the store in its own process."""
        return self.store if isinstance(self.store, DaemonClient) else None

    @timed("artifacts")
    @uninterrupted()
    def set_tags(self, tags: dict[str, str]) -> None:
        """Tags on this stage's run and on the model run, if there is one."""
        for run_id in filter(None, (self.run_id, self.model_run_id)):
            for key, value in tags.items():
                self.store.set_tag(run_id, key, value)

    @timed("tracking")
    @uninterrupted()
    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        """A file for this stage's MLflow run."""
        self.store.log_artifact(
            self.run_id, str(Path(path).resolve()), artifact_path
        )  # the store's folder is not ours

    @timed("model logging")
    @uninterrupted()
    def log_model(self, checkpoint: Path, preprocessor: Any) -> str:
        """The checkpoint to the model run as an MLflow pyfunc model from code (served_model.py):
        it takes raw rows, with a column signature made from `preprocessor`'s inputs (a
        `preprocessing.Preprocessor`), and answers in the target's units.
        """
        types = {"number": "double", "boolean": "boolean", "text": "string"}
        return self.store.log_model(
            self.model_run_id,
            str(Path(checkpoint).resolve()),
            [(c.name, types[c.kind]) for c in preprocessor.inputs],
            preprocessor.example(),
            {"features": preprocessor.features, "target": preprocessor.target},
        )

    @timed("step metrics")
    @uninterrupted()
    def log_datasets(self, split_files: dict[str, Path], prepared_dir: Path, md5: str, target: str) -> None:
        """The splits (their Parquet files in `prepared_dir`) as MLflow datasets, on this stage's run
        and the model run; `md5` is DVC's hash of `prepared_dir`, their digest."""
        files = {split: str(Path(path).resolve()) for split, path in split_files.items()}
        for run_id in dict.fromkeys((self.run_id, self.model_run_id)):
            if run_id is not None:
                self.store.log_inputs(run_id, files, str(prepared_dir), md5, target)

    @timed("tracking")
    @uninterrupted()
    def tag_model_run(self, tags: dict[str, str]) -> None:
        """Tags on the model run, e.g. the hashes of outputs once they are written."""
        self.store.log_batch(self.model_run_id, tags=list(tags.items()))

    @timed("tracking")
    @uninterrupted()
    def register_model(self, model_uri: str) -> str:
        """The logged model as a version of the registered model named after the experiment (no
        new one when a version holds the same bytes, registry.register); returns its number."""
        return self.store.register_model(self.config.experiment, model_uri, self.model_run_id)

    @timed("tracking")
    @uninterrupted()
    def record_test_metrics(self, metrics: dict[str, float]) -> Any:
        """Test metrics onto the model run's registry version; then `tracking.promote`'s rule,
        if one is set: returns what it did (a sentence), else None."""
        return self.store.record_test_metrics(
            self.config.experiment, self.model_run_id, metrics, self.config.promote
        )

    @timed("tracking")
    @uninterrupted()
    def flush(self) -> None:
        """Write buffered metrics: to TensorBoard, then to MLflow in `log_batch` calls."""
        for key, value, step, wall in self._metrics:
            self.writer.add_scalar(scalar_tag(key, self.stage), value, step, walltime=wall)
        self.writer.flush()
        for run_id, buffer in ((self.run_id, self._metrics), (self.model_run_id, self._summary)):
            metrics = [(key, value, int(wall * 1000), step) for key, value, step, wall in buffer]
            for start in range(0, len(metrics), MAX_BATCH):
                self.store.log_batch(run_id, metrics=metrics[start : start + MAX_BATCH])
            buffer.clear()
        self._last_flush = time.monotonic()

    # -- ending ---------------------------------------------------------------------------
    @timed("artifacts")
    @uninterrupted()
    def close(self, status: str = "FINISHED") -> None:
        """Flush, attach this stage's TensorBoard events, end the run(s) with `status`."""
        if self._closed:
            return
        self._closed = True
        try:
            self.flush()
            self.writer.close()
            if self.log_dir.is_dir():
                self.store.log_artifacts(self.run_id, str(self.log_dir.resolve()), "tensorboard")
        finally:
            if self._monitored is not None:
                self.store.stop_system_metrics(self._monitored)
            self._end_runs(status)
            self.store.close()

    def _end_runs(self, status: str) -> None:
        for run_id in (self.run_id, self.model_run_id if self._owns_model_run else None):
            if run_id is not None:
                self.store.set_terminated(run_id, status)

    def __enter__(self) -> Tracker:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(run_status(exc_type))
