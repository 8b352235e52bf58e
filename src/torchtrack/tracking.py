"""The one door to tracking: every stage logs through `Tracker`, which fans out to
TensorBoard (one log directory per stage execution) and MLflow.

MLflow layout: each trained model is one top-level run in the experiment (all params that
shaped it, final train/val metrics, test metrics from evaluate, the logged model); the
train and evaluate executions are nested runs under it. prepare executions are runs in
the `<experiment>-prepare` experiment, linked from the model run by tag. Step metrics are
buffered and written with `MlflowClient.log_batch`, never one database write per step, and
at least every `flush_every_seconds`, so a hard kill loses only the last few seconds.

Nothing is left RUNNING: a stage that raises ends its runs FAILED (KILLED on Ctrl-C or
SIGTERM, which never cut a logging call in half), and each run records its process, so
the next stage marks KILLED the runs whose process died without a word (SIGKILL). An HTTP
tracking server that does not answer stops the stage within seconds, naming its address.
"""

from __future__ import annotations

import hashlib
import io
import os
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from torchtrack.config import TrackingConfig
from torchtrack.errors import TrackingStoreError
from torchtrack.files import write_atomic
from torchtrack.login import check_login
from torchtrack.processes import HOST_TAG, ProcessIdentity
from torchtrack.profiling import timed
from torchtrack.signals import uninterrupted
from torchtrack.tensorboard_layout import run_dir_name, scalar_tag

if TYPE_CHECKING:
    from mlflow import MlflowClient

STORE_FILE = "mlflow.db"  # default SQLite store at the repository root
ARTIFACT_DIR = "mlartifacts"  # default artifact root beside it
MAX_BATCH = 1000  # MLflow's limit on metrics per log_batch call
# The logged model is exported (pt2) on the CPU, and a pt2 export loads only on the device it
# was exported on; MLflow's pyfunc loader picks CUDA whenever one is present unless this says
# otherwise. Set while logging (MLflow checks the input example) and for `torchtrack serve`.
PREDICTION_DEVICE = {"MLFLOW_DEFAULT_PREDICTION_DEVICE": "cpu"}
# Seconds between MLflow's system-metrics samples (CPU, memory, GPU where present): one psutil
# read and one small write each, off the training thread. MLflow's
# MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL overrides it.
SYSTEM_METRICS_EVERY_S = 10


def repo_root() -> Path:
    """The repository the pipeline belongs to.

    DVC sets DVC_ROOT to the parent repo even when a queued experiment runs in a temporary
    copy, so every run lands in the same store; otherwise the nearest folder holding dvc.yaml.
    """
    if os.environ.get("DVC_ROOT"):
        return Path(os.environ["DVC_ROOT"]).resolve()
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if (folder / "dvc.yaml").is_file():
            return folder
    return here


def tracking_uri() -> str:
    """MLFLOW_TRACKING_URI if set, else the SQLite store at the repository root."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{repo_root() / STORE_FILE}"


@timed("store open")
def open_store(uri: str) -> MlflowClient:
    """An MlflowClient for `uri`; a SQLite store is opened (and created) under a file lock.

    MLflow creates a new SQLite store's tables without a lock across processes, so two
    stages starting at once on a new store (queued experiments run in parallel) can fail
    with "duplicate column name". Once the tables exist, MLflow's busy timeout handles
    concurrent writers.
    """
    from filelock import FileLock
    from mlflow import MlflowClient

    if not uri.startswith("sqlite:///"):
        return MlflowClient(uri)
    database = Path(uri.removeprefix("sqlite:///")).resolve()
    lock_name = f"torchtrack-store-{hashlib.sha256(str(database).encode()).hexdigest()[:16]}.lock"
    with FileLock(Path(tempfile.gettempdir()) / lock_name):
        return MlflowClient(uri)  # builds the store, cached for this process


@timed("store open")
def check_reachable(uri: str, timeout: float = 5.0) -> None:
    """Raise TrackingStoreError naming the address when an HTTP tracking server does not answer.

    MLflow's client retries a refused connection with growing back-off for minutes; this
    probe gives up within seconds. Any answer (an error status, a TLS failure) counts as
    reachable: MLflow's own requests report what is wrong with it, except a refused login
    (`login.check_login`), which ends the stage in one line before it creates a run.
    """
    if not uri.startswith(("http://", "https://")):
        return
    import requests

    parts = urlsplit(uri)
    address = urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, "", ""))  # no secrets
    try:
        requests.get(address, timeout=(timeout, 2 * timeout), allow_redirects=False)
    except requests.exceptions.SSLError:
        return
    except (requests.ConnectionError, requests.Timeout) as exc:
        raise TrackingStoreError(
            f"cannot reach the MLflow tracking server at {address} (MLFLOW_TRACKING_URI): "
            f"{type(exc).__name__}; start the server, or unset MLFLOW_TRACKING_URI to use the local store"
        ) from None
    check_login(address, timeout)


@contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    """`values` in os.environ for the duration, then the variables as they were."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextmanager
def fluent_tracking_uri(uri: str) -> Iterator[None]:
    """`uri` as MLflow's fluent (global) tracking URI for the duration, then the process's own.

    Some MLflow calls know only the global URI (`mlflow.pytorch.log_model`, the registry's
    check of a `models:/` source). Its `set_tracking_uri` also sets MLFLOW_TRACKING_URI and
    unsets it on the way back, so the variable is saved and put back around it.
    """
    from mlflow.tracking._tracking_service.utils import _use_tracking_uri

    with environment({"MLFLOW_TRACKING_URI": uri}), _use_tracking_uri(uri):
        yield


def run_status(exc_type: type[BaseException] | None) -> str:
    """The MLflow status of a stage that ended by raising `exc_type` (None: it did not)."""
    if exc_type is None:
        return "FINISHED"
    return "KILLED" if issubclass(exc_type, KeyboardInterrupt) else "FAILED"


def git_commit(root: Path) -> str | None:
    """HEAD's commit hash, or None outside a git work tree."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


class Tracker:
    """Logs one stage execution to TensorBoard and MLflow; use as a context manager.

    `model_run`: None for a standalone run (prepare), "new" to open a new top-level model
    run with this stage nested under it (train), or an existing model run id to nest this
    stage under (evaluate). `log_summary` writes to the model run's row. `system_metrics`:
    sample CPU, memory (and GPU) into this stage's run with MLflow's system metrics monitor.

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
    ):
        self.config = config
        self.stage = stage
        self.root = repo_root()
        uri = tracking_uri()
        check_reachable(uri)
        self.client = open_store(uri)
        # (key, value, step, wall time) waiting for `flush`: this stage's scalars, for both
        # backends, and the model run's summary, for MLflow only.
        self._metrics: list[tuple[str, float, int, float]] = []
        self._summary: list[tuple[str, float, int, float]] = []
        experiment = config.experiment if model_run else f"{config.experiment}-prepare"
        self.experiment_id = self._experiment_id(experiment)
        owner = ProcessIdentity.current()
        self._end_runs_of_gone_processes(owner.host)
        base_tags = self._context_tags() | owner.as_tags() | (tags or {})
        self.model_run_id: str | None = None
        self.run_id: str | None = None
        self._owns_model_run = model_run == "new"
        self._closed = False
        try:
            if self._owns_model_run:
                name = os.environ.get("DVC_EXP_NAME") or f"model-{time.strftime('%Y%m%d-%H%M%S')}"
                run = self.client.create_run(
                    self.experiment_id, run_name=name, tags=base_tags | {"torchtrack.kind": "model"}
                )
                self.model_run_id = run.info.run_id
                self._log_params(self.model_run_id, params)
            elif model_run:
                self.model_run_id = model_run
            run_tags = base_tags | {"torchtrack.kind": "stage"}
            if self.model_run_id:
                run_tags["mlflow.parentRunId"] = self.model_run_id
            run = self.client.create_run(self.experiment_id, run_name=stage, tags=run_tags)
            self.run_id = run.info.run_id
            self._log_params(self.run_id, params)
            self.log_dir = (
                self.root
                / config.tensorboard_dir
                / stage
                / run_dir_name(self.run_id, os.environ.get("DVC_EXP_NAME"))
            )
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(log_dir=str(self.log_dir))
            self._monitor = self._system_monitor(uri) if system_metrics else None
        except BaseException as exc:  # a half-made Tracker never reaches __exit__
            self._end_runs(run_status(type(exc)))
            raise
        self._last_flush = time.monotonic()

    # -- set-up ---------------------------------------------------------------------------
    @timed("store open")
    def _experiment_id(self, name: str) -> str:
        from mlflow.exceptions import MlflowException

        found = self.client.get_experiment_by_name(name)
        if found is not None:
            return found.experiment_id
        location = None
        if not os.environ.get("MLFLOW_TRACKING_URI"):
            location = (self.root / ARTIFACT_DIR).as_uri()
        try:
            return self.client.create_experiment(name, artifact_location=location)
        except MlflowException:  # created meanwhile by a concurrent stage
            return self.client.get_experiment_by_name(name).experiment_id

    @timed("stale-run search")
    def _end_runs_of_gone_processes(self, host: str) -> None:
        runs = self.client.search_runs(
            [self.experiment_id], f"attributes.status = 'RUNNING' AND tags.`{HOST_TAG}` = '{host}'"
        )
        for run in runs:
            owner = ProcessIdentity.from_tags(run.data.tags)
            if owner is not None and owner.is_gone():
                self.client.set_terminated(run.info.run_id, "KILLED")
                print(
                    f"torchtrack {self.stage}: run {run.info.run_id} ({run.info.run_name}) was left RUNNING "
                    f"by process {owner.pid}, which is gone; marked KILLED",
                    file=sys.stderr,
                )

    def _context_tags(self) -> dict[str, str]:
        tags = {"dvc.stage": self.stage, "mlflow.source.name": f"torchtrack {self.stage}"}
        commit = git_commit(self.root)
        if commit:
            tags["mlflow.source.git.commit"] = commit
        if os.environ.get("DVC_EXP_NAME"):
            tags["dvc.exp_name"] = os.environ["DVC_EXP_NAME"]
        return tags

    def _system_monitor(self, uri: str) -> Any:
        from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

        monitor = SystemMetricsMonitor(
            self.run_id, sampling_interval=SYSTEM_METRICS_EVERY_S, tracking_uri=uri
        )
        monitor.start()
        return monitor

    @timed("params")
    def _log_params(self, run_id: str, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, "None" if v is None else str(v)) for k, v in params.items()]
        for start in range(0, len(items), 100):  # MLflow's limit on params per batch
            self.client.log_batch(run_id, params=items[start : start + 100])

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
        self.client.log_text(self.run_id, str(model), "model_summary.txt")

    @timed("artifacts")
    @uninterrupted()
    def log_hyperparams(self, params: dict[str, Any], metrics: dict[str, float]) -> None:
        """Hyperparameters with their final metrics, for TensorBoard's HPARAMS tab (as Lightning's
        TensorBoardLogger does); MLflow has them as the runs' params from the start."""
        clean = {k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in params.items()}
        self.writer.add_hparams(clean, {f"hparam/{k}": v for k, v in metrics.items()}, run_name=".")

    @timed("figures")
    @uninterrupted()
    def log_figure(self, figure: Any, path: Path) -> None:
        """Save a matplotlib figure to `path`, a PNG stage output (atomically), and log it to both backends.

        Drawn once: TensorBoard gets the saved PNG itself, where `add_figure` would draw it again.
        """
        from tensorboard.compat.proto.summary_pb2 import Summary

        png = io.BytesIO()
        figure.savefig(png, dpi=100, format="png")
        write_atomic(path, lambda tmp: tmp.write_bytes(png.getvalue()))
        width, height = struct.unpack(">II", png.getvalue()[16:24])  # the PNG header's IHDR chunk
        image = Summary.Image(height=height, width=width, colorspace=4, encoded_image_string=png.getvalue())
        self.writer.file_writer.add_summary(Summary(value=[Summary.Value(tag=path.stem, image=image)]))
        self.client.log_artifact(self.run_id, str(path), "figures")
        if self.model_run_id:
            self.client.log_artifact(self.model_run_id, str(path), "figures")

    @timed("artifacts")
    @uninterrupted()
    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        """A file for this stage's MLflow run."""
        self.client.log_artifact(self.run_id, str(path), artifact_path)

    @timed("model logging")
    @uninterrupted()
    def log_model(self, model: Any, input_example: Any, metadata: dict[str, Any] | None = None) -> str:
        """The model to the model run via `mlflow.pytorch.log_model` (pt2, with signature).

        `input_example` is a float32 NumPy array (rows, features): pt2 traces the model on it.
        `metadata` goes into the MLmodel file (the feature names, for `torchtrack predict`).
        """
        import mlflow
        import mlflow.pytorch
        import torch
        from mlflow.models import infer_signature

        model.eval()
        with torch.no_grad():
            output = model(torch.as_tensor(input_example)).numpy()
        # The fluent API needs a global tracking URI; set it only for this call, so that a
        # notebook or test process keeps the one it had (and its MLFLOW_TRACKING_URI).
        with (
            fluent_tracking_uri(tracking_uri()),
            environment(PREDICTION_DEVICE),
            mlflow.start_run(run_id=self.model_run_id),
        ):
            info = mlflow.pytorch.log_model(
                model,
                name="model",
                input_example=input_example,
                signature=infer_signature(input_example, output),
                serialization_format="pt2",
                metadata=metadata,
                pip_requirements=[
                    f"torch=={torch.__version__.split('+')[0]}",
                    f"mlflow=={mlflow.__version__}",
                ],
            )
        return info.model_uri

    @timed("step metrics")
    @uninterrupted()
    def log_datasets(self, splits: dict[str, Any], prepared_dir: Path, md5: str, target: str) -> None:
        """The splits (DataFrames) as MLflow datasets, on this stage's run and the model run;
        `md5` is DVC's hash of `prepared_dir`, their digest."""
        from torchtrack.datasets import split_inputs

        inputs = split_inputs(splits, prepared_dir, md5, target)
        for run_id in dict.fromkeys((self.run_id, self.model_run_id)):
            if run_id is not None:
                self.client.log_inputs(run_id, datasets=inputs)

    @timed("tracking")
    @uninterrupted()
    def tag_model_run(self, tags: dict[str, str]) -> None:
        """Tags on the model run, e.g. the hashes of outputs once they are written."""
        from mlflow.entities import RunTag

        self.client.log_batch(self.model_run_id, tags=[RunTag(k, v) for k, v in tags.items()])

    @timed("tracking")
    @uninterrupted()
    def register_model(self, model_uri: str) -> str:
        """The logged model as the newest version (alias challenger) of the registered model
        named after the experiment; returns the version number."""
        from torchtrack import registry

        with fluent_tracking_uri(tracking_uri()):  # MLflow looks the logged model up in the global store
            return registry.register(self.client, self.config.experiment, model_uri, self.model_run_id)

    @timed("tracking")
    @uninterrupted()
    def record_test_metrics(self, metrics: dict[str, float]) -> Any:
        """Test metrics onto the model run's registry version; then `tracking.promote`'s rule,
        if one is set: returns its registry.Promotion, else None."""
        from torchtrack import registry

        name = self.config.experiment
        version = registry.version_of_run(self.client, name, self.model_run_id)
        if version is not None:
            registry.tag_version(self.client, name, version, metrics)
        if self.config.promote is None:
            return None
        return registry.promote(self.client, name, registry.rule_metric(self.config.promote))

    @timed("tracking")
    @uninterrupted()
    def flush(self) -> None:
        """Write buffered metrics: to TensorBoard, then to MLflow in `log_batch` calls."""
        from mlflow.entities import Metric

        for key, value, step, wall in self._metrics:
            self.writer.add_scalar(scalar_tag(key, self.stage), value, step, walltime=wall)
        self.writer.flush()
        for run_id, buffer in ((self.run_id, self._metrics), (self.model_run_id, self._summary)):
            metrics = [Metric(key, value, int(wall * 1000), step) for key, value, step, wall in buffer]
            for start in range(0, len(metrics), MAX_BATCH):
                self.client.log_batch(run_id, metrics=metrics[start : start + MAX_BATCH])
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
                self.client.log_artifacts(self.run_id, str(self.log_dir), "tensorboard")
        finally:
            if self._monitor is not None:
                self._monitor.finish()
            self._end_runs(status)

    def _end_runs(self, status: str) -> None:
        for run_id in (self.run_id, self.model_run_id if self._owns_model_run else None):
            if run_id is not None:
                self.client.set_terminated(run_id, status)

    def __enter__(self) -> Tracker:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(run_status(exc_type))
