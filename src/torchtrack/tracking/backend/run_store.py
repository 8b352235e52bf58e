"""What a stage asks of the MLflow store, in plain values: ids, strings, numbers, tuples, frames.

No MLflow entity goes in or comes out, so a stage can make these calls through the store
daemon (backend/daemon.py, calls.py) without importing MLflow; `RunStore` over an `MlflowClient` is the
same interface in-process, and what the daemon itself runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from torchtrack.tracking.backend import store

if TYPE_CHECKING:
    from mlflow import MlflowClient


# (key, value, timestamp in ms, step) per metric; (key, value) per param or tag.
MetricRow = tuple[str, float, int, int]
Pair = tuple[str, str]
# How a refused duplicate insert reads: PostgreSQL (through a server), SQLite, MySQL.
DUPLICATE_KEY = (
    "duplicate key value violates unique constraint",
    "UNIQUE constraint failed",
    "Duplicate entry",
)
# The logged model's pip requirements, at this environment's versions.
REQUIREMENTS = ("torch", "mlflow", "pandas")


def pinned_requirements() -> list[str]:
    """REQUIREMENTS at this environment's versions, without a local label (torch's +cpu)."""
    from importlib.metadata import version

    return [f"{name}=={version(name).split('+')[0]}" for name in REQUIREMENTS]


class RunStore:
    """The store operations of `Tracker` and the stages, made with `client`."""

    def __init__(self, client: MlflowClient):
        self.client = client
        self._monitors: dict[str, Any] = {}  # run id -> its running SystemMetricsMonitor

    def close(self) -> None:
        """Nothing to hang up in-process (the daemon's client hangs up here)."""

    def experiment_id(self, name: str, artifact_location: str | None = None) -> str:
        """The id of experiment `name`, created with `artifact_location` (location.artifact_location)
        if it is new."""
        return store.experiment_id(self.client, name, artifact_location)

    def end_runs_of_gone_processes(self, experiment: str, host: str, who: str) -> list[str]:
        """store.end_runs_of_gone_processes on this store: a line for the caller to print per run."""
        return store.end_runs_of_gone_processes(self.client, experiment, host, who)

    def create_run(self, experiment: str, name: str, tags: dict[str, str]) -> str:
        """A new RUNNING run; returns its id."""
        return self.client.create_run(experiment, run_name=name, tags=tags).info.run_id

    def unfinished_model_run(self, experiment: str, tag: str, value: str) -> str | None:
        """The id of the newest model run of `experiment` tagged `tag` = `value` that did not
        finish (an earlier attempt of a restarted training run), or None."""
        runs = self.client.search_runs(
            [experiment],
            f"tags.`{tag}` = '{value}' AND tags.`torchtrack.kind` = 'model' "
            "AND attributes.status != 'FINISHED'",
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )
        return runs[0].info.run_id if runs else None

    def reopen_run(self, run_id: str) -> None:
        """Mark an ended run RUNNING again: a restarted attempt carries on logging into it."""
        self.client.update_run(run_id, status="RUNNING")

    def log_batch(
        self, run_id: str, metrics: list[MetricRow] = (), params: list[Pair] = (), tags: list[Pair] = ()
    ) -> None:
        """One `log_batch` call (MLflow's limits per call apply: the caller splits)."""
        from mlflow.entities import Metric, Param, RunTag

        self.client.log_batch(
            run_id,
            metrics=[Metric(key, value, timestamp, step) for key, value, timestamp, step in metrics],
            params=[Param(key, value) for key, value in params],
            tags=[RunTag(key, value) for key, value in tags],
        )

    def log_text(self, run_id: str, text: str, artifact_file: str) -> None:
        """`text` as the artifact `artifact_file` of the run."""
        self.client.log_text(run_id, text, artifact_file)

    def log_artifact(self, run_id: str, path: str, artifact_path: str | None = None) -> None:
        """The file `path` (absolute) as an artifact of the run."""
        self.client.log_artifact(run_id, path, artifact_path)

    def log_artifacts(self, run_id: str, path: str, artifact_path: str | None = None) -> None:
        """Every file under the folder `path` (absolute) as artifacts of the run."""
        self.client.log_artifacts(run_id, path, artifact_path)

    def set_tag(self, run_id: str, key: str, value: str) -> None:
        """One tag on the run."""
        self.client.set_tag(run_id, key, value)

    def set_terminated(self, run_id: str, status: str) -> None:
        """End the run with `status`."""
        self.client.set_terminated(run_id, status)

    def log_inputs(
        self, run_id: str, split_files: dict[str, str], prepared_dir: str, md5: str, target: str
    ) -> None:
        """The splits (their Parquet files, absolute paths) as MLflow datasets of the run
        (datasets.split_inputs); `prepared_dir` names their folder in the repository.

        MLflow stores a dataset once per experiment: it looks the (name, digest) up, then inserts
        it when absent, in two steps. Two stages logging the same splits at once (queued
        experiments that differ in train params only) can both miss it, and the second insert
        is refused as a duplicate key, its whole call rolled back. The second try then finds
        the dataset and links the run to it.
        """
        from mlflow.exceptions import MlflowException

        from torchtrack.tracking.backend.datasets import split_inputs

        files = {split: Path(path) for split, path in split_files.items()}
        datasets = split_inputs(files, Path(prepared_dir), md5, target)
        try:
            self.client.log_inputs(run_id, datasets=datasets)
        except MlflowException as exc:
            if not any(marker in str(exc) for marker in DUPLICATE_KEY):
                raise
            self.client.log_inputs(run_id, datasets=datasets)

    def prepare_run_id(self, prepared_md5: str) -> str | None:
        """The id of the newest prepare run that made splits with this hash (lineage.find_prepare_run)."""
        from torchtrack.tracking.backend.lineage import find_prepare_run

        return find_prepare_run(prepared_md5, self.client)

    def model_run_id(self, model_file: str, dvc_experiment: str | None = None) -> str:
        """The id of the finished model run that made `model_file` (absolute), the one of the DVC
        experiment `dvc_experiment` if any (lineage.find_model_run)."""
        from torchtrack.tracking.backend.lineage import find_model_run

        return find_model_run(Path(model_file), self.client, dvc_experiment).info.run_id

    def record_test_metrics(
        self, experiment: str, model_run_id: str, metrics: dict[str, float], promote: str | None
    ) -> str | None:
        """Test metrics onto the model run's registry version; then the promotion rule `promote`,
        if set: returns what it did (registry.Promotion's sentence), else None."""
        from torchtrack.tracking.backend import registry

        version = registry.version_of_run(self.client, experiment, model_run_id)
        if version is not None:
            registry.tag_version(self.client, experiment, version, metrics)
        if promote is None:
            return None
        return str(registry.promote(self.client, experiment, registry.rule_metric(promote)))

    def prepare_model_logging(self) -> None:
        """Do ahead what a process's first `log_model` does once, so that it is as quick as the
        next: import MLflow's pyfunc, and torch, which MLflow's check of the input example loads
        the model with; check the requirements against this environment as MLflow does, which
        maps every installed package to its modules the first time. A stage that opens a model
        run calls it (tracker.py); the store daemon runs it in the background while that stage
        trains (daemon.py)."""
        import mlflow.pyfunc  # noqa: F401
        import torch  # noqa: F401
        from mlflow.utils.requirements_utils import warn_dependency_requirement_mismatches

        warn_dependency_requirement_mismatches(pinned_requirements())

    def log_model(
        self, run_id: str, checkpoint: str, columns: list[Pair], example: Any, metadata: dict[str, Any]
    ) -> str:
        """The checkpoint file (absolute path) to the run as an MLflow pyfunc model from code
        (served_model.py), taking the `columns` ((name, MLflow column type) in order) and answering
        one double per row; `example` (a DataFrame) is its input example. Returns its models:/ URI.

        MLflow checks the input example by loading the model and predicting, so the process making
        this call imports torch (the store daemon once, ahead: prepare_model_logging).
        """
        import mlflow
        import mlflow.pyfunc
        from mlflow.models import ModelSignature
        from mlflow.types.schema import ColSpec, Schema

        from torchtrack.tracking.backend.model_logging import (
            CHECKPOINT_ARTIFACT,
            SERVED_MODEL_CODE,
            fluent_tracking_uri,
        )

        signature = ModelSignature(
            inputs=Schema([ColSpec(kind, name) for name, kind in columns]),
            outputs=Schema([ColSpec("double")]),
        )
        with fluent_tracking_uri(self.client.tracking_uri), mlflow.start_run(run_id=run_id):
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=str(SERVED_MODEL_CODE),
                artifacts={CHECKPOINT_ARTIFACT: checkpoint},
                signature=signature,
                input_example=example,
                metadata=metadata,
                pip_requirements=pinned_requirements(),
            )
        return info.model_uri

    def register_model(self, name: str, model_uri: str, run_id: str) -> str:
        """The logged model at `model_uri` as the newest version of the registered model `name`
        (registry.register); returns the version number."""
        from torchtrack.tracking.backend import registry
        from torchtrack.tracking.backend.model_logging import fluent_tracking_uri

        # MLflow looks the logged model up in the global store
        with fluent_tracking_uri(self.client.tracking_uri):
            return registry.register(self.client, name, model_uri, run_id)

    def start_system_metrics(self, run_id: str, every_s: float) -> None:
        """Sample CPU, memory, disk, network (and GPU) into the run every `every_s` seconds with MLflow's
        system metrics monitor, in a thread of this process, until `stop_system_metrics`.

        Its figures are the machine's, not a process's, so the store daemon samples them as well
        as the stage would. MLflow's MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL in this process's
        environment overrides `every_s` (the stage reads it from its own: tracker.py).
        """
        import psutil
        from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

        psutil.cpu_percent()  # the first sample's CPU figure then covers this run, not the time before it
        uri = self.client.tracking_uri
        monitor = SystemMetricsMonitor(run_id, sampling_interval=every_s, tracking_uri=uri)
        monitor.start()
        self._monitors[run_id] = monitor

    def stop_system_metrics(self, run_id: str) -> None:
        """Stop the run's system metrics monitor, once its last samples are written (a no-op if none runs)."""
        monitor = self._monitors.pop(run_id, None)
        if monitor is not None:
            monitor.finish()
