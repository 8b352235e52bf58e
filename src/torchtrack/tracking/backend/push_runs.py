"""`torchtrack push-runs`: copy the runs of a local MLflow store to the team's tracking server.

    MLFLOW_TRACKING_URI=http://team-server:5000 torchtrack push-runs [--experiment torchtrack]

A run is copied whole into the experiment of the same name: its name, start and end time and
status, params, every value of every metric with its step and timestamp, tags, artifacts
(figures, TensorBoard event files), its parent, its dataset inputs (name, digest, source,
schema, profile, context), the model it logged (a new logged model on the server with the same
files, so `models:/<id>` loads from there) and the registered model versions made from it (new
versions of the registered model of the same name, with their tags, linked to the copy). A tag
whose value is the id of a copied run (the model run's prepare run) names the copy instead.
An alias (champion, challenger) that points at a version copied now points at its copy; a
version copied by an earlier push keeps whatever alias the server gave it since.

A finished copy carries the id of the run it came from (tag `torchtrack.pushed_from`), so a
second push copies only what is new; until then it carries `torchtrack.push_incomplete`, and
a copy that an interrupted push left so is deleted and made again. Runs still RUNNING in the
local store are not copied yet. mlflow-export-import does this too, but as a separate tool with
its own layout of exported files, made for moving whole workspaces; this is one call on the
two stores, and what it keeps is what the tests check.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torchtrack.environment import environment
from torchtrack.errors import ConfigError, InputError
from torchtrack.tracking.backend.model_logging import fluent_tracking_uri
from torchtrack.tracking.backend.store import check_reachable, open_store
from torchtrack.tracking.location import STORE_FILE, repo_root
from torchtrack.tracking.tracker import MAX_BATCH

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run

SOURCE_TAG = "torchtrack.pushed_from"
INCOMPLETE_TAG = "torchtrack.push_incomplete"  # replaced by SOURCE_TAG once the copy is whole
PARENT_TAG = "mlflow.parentRunId"
MAX_PARAMS = 100  # MLflow's limit on params per log_batch call
UNFINISHED = ("RUNNING", "SCHEDULED")


@dataclass
class PushReport:
    """What one push did."""

    target: str
    copied: list[str] = field(default_factory=list)  # source run ids
    already: int = 0
    still_running: int = 0
    models: int = 0
    versions: int = 0

    def summary(self) -> str:
        line = (
            f"copied {len(self.copied)} run(s), {self.models} logged model(s) and "
            f"{self.versions} registered model version(s) to {self.target}"
        )
        line += f"; {self.already} already there"
        if self.still_running:
            line += f"; {self.still_running} still running, not copied (push again once they end)"
        return line


def local_store_uri() -> str:
    """The default SQLite store at the repository root, whatever MLFLOW_TRACKING_URI says."""
    return f"sqlite:///{repo_root() / STORE_FILE}"


def push_runs(
    source_uri: str | None, target_uri: str | None, experiments: list[str] | None = None
) -> PushReport:
    """Copy `experiments` (default: every experiment with runs) from `source_uri` (default: the
    local store) to `target_uri`; return what was done."""
    source_uri = source_uri or local_store_uri()
    if not target_uri:
        raise ConfigError("no tracking server to push to: pass --to or set MLFLOW_TRACKING_URI")
    if source_uri == target_uri:
        raise ConfigError(f"--from and --to are the same store ({source_uri})")
    if source_uri.startswith("sqlite:///") and not Path(source_uri.removeprefix("sqlite:///")).is_file():
        raise InputError(f"no local MLflow store at {source_uri.removeprefix('sqlite:///')}: nothing to push")
    check_reachable(target_uri)
    pusher = Pusher(open_store(source_uri), open_store(target_uri), source_uri, target_uri)
    with (
        environment({"MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}),  # one bar per run is noise
        fluent_tracking_uri(target_uri),  # a SQL registry looks a version's logged model up there
    ):
        return pusher.push(experiments)


class Pusher:
    """Copies runs from one store to another, remembering which source run each copy is."""

    def __init__(self, source: MlflowClient, target: MlflowClient, source_uri: str, target_uri: str):
        self.source, self.target, self.source_uri = source, target, source_uri
        self.report = PushReport(target_uri)
        self.copies: dict[str, str] = {}  # source run id -> its finished copy's id
        self.runs: dict[str, Run] = {}  # source run id -> run, every run being pushed
        self.target_experiments: dict[str, str] = {}  # source experiment id -> target's
        self.model_copies: dict[str, str] = {}  # source logged model id -> its copy's, this push

    def push(self, names: list[str] | None) -> PushReport:
        experiments = self._source_experiments(names)
        for experiment in experiments:
            self.target_experiments[experiment.experiment_id] = self._target_experiment(experiment.name)
            for run in all_runs(self.source, experiment.experiment_id):
                self.runs[run.info.run_id] = run
        self._find_copies()
        self.report.already = len(self.copies.keys() & self.runs.keys())
        # Oldest first, so a run that another run's tag names (prepare) is copied before it.
        for run in sorted(self.runs.values(), key=lambda r: r.info.start_time or 0):
            self._copy(run)
        return self.report

    # -- which runs, where ----------------------------------------------------------------
    def _source_experiments(self, names: list[str] | None) -> list[Any]:
        if not names:
            return [e for e in self.source.search_experiments() if all_runs(self.source, e.experiment_id, 1)]
        found = []
        for name in names:
            experiment = self.source.get_experiment_by_name(name)
            if experiment is None:
                known = ", ".join(sorted(e.name for e in self.source.search_experiments()))
                raise InputError(f"no experiment named {name!r} in {self.source_uri}; experiments: {known}")
            found.append(experiment)
        return found

    def _target_experiment(self, name: str) -> str:
        from mlflow.exceptions import MlflowException

        found = self.target.get_experiment_by_name(name)
        if found is not None:
            return found.experiment_id
        try:
            return self.target.create_experiment(name)  # the server's artifact store, not our folder
        except MlflowException:  # created meanwhile by someone else
            return self.target.get_experiment_by_name(name).experiment_id

    def _find_copies(self) -> None:
        """Copies from an earlier push: whole ones are kept, incomplete ones deleted."""
        experiment_ids = sorted(set(self.target_experiments.values()))
        for copy in all_runs(self.target, experiment_ids, filter_string=f"tags.`{INCOMPLETE_TAG}` LIKE '%'"):
            self._delete_copy(copy)
        for copy in all_runs(self.target, experiment_ids, filter_string=f"tags.`{SOURCE_TAG}` LIKE '%'"):
            self.copies[copy.data.tags[SOURCE_TAG]] = copy.info.run_id

    def _delete_copy(self, copy: Run) -> None:
        for version in self.target.search_model_versions(f"run_id = '{copy.info.run_id}'"):
            self.target.delete_model_version(version.name, version.version)
        for model in self.target.search_logged_models(
            [copy.info.experiment_id], filter_string=f"source_run_id = '{copy.info.run_id}'"
        ):
            self.target.delete_logged_model(model.model_id)
        self.target.delete_run(copy.info.run_id)

    # -- copying ----------------------------------------------------------------------------
    def _copy(self, run: Run) -> str | None:
        """The id of `run`'s copy, made now (after its parent's) unless it exists; None while it runs."""
        run_id = run.info.run_id
        if run_id in self.copies:
            return self.copies[run_id]
        if run.info.status in UNFINISHED:
            self.report.still_running += 1
            return None
        tags = {key: self.copies.get(value, value) for key, value in run.data.tags.items()}
        parent = tags.pop(PARENT_TAG, None)
        if parent is not None and parent in self.runs:
            parent = self._copy(self.runs[parent])
        if parent is not None:
            tags[PARENT_TAG] = parent
        tags[INCOMPLETE_TAG] = run_id
        copy = self.target.create_run(
            self.target_experiments[run.info.experiment_id],
            start_time=run.info.start_time,
            tags=tags,
            run_name=run.info.run_name,
        )
        copy_id = copy.info.run_id
        self._copy_params_and_metrics(run, copy_id)
        self._copy_artifacts(run_id, copy_id)
        if run.inputs and run.inputs.dataset_inputs:
            self.target.log_inputs(copy_id, datasets=list(run.inputs.dataset_inputs))
        self._copy_logged_models(run, copy_id)
        self._copy_model_versions(run_id, copy_id)
        self.target.set_tag(copy_id, SOURCE_TAG, run_id)
        self.target.delete_tag(copy_id, INCOMPLETE_TAG)
        self.target.set_terminated(copy_id, run.info.status, end_time=run.info.end_time)
        self.copies[run_id] = copy_id
        self.report.copied.append(run_id)
        return copy_id

    def _copy_params_and_metrics(self, run: Run, copy_id: str) -> None:
        from mlflow.entities import Metric, Param

        params = [Param(key, value) for key, value in run.data.params.items()]
        for start in range(0, len(params), MAX_PARAMS):
            self.target.log_batch(copy_id, params=params[start : start + MAX_PARAMS])
        metrics = [
            Metric(m.key, m.value, m.timestamp, m.step)
            for key in run.data.metrics
            for m in self.source.get_metric_history(run.info.run_id, key)
        ]
        for start in range(0, len(metrics), MAX_BATCH):
            self.target.log_batch(copy_id, metrics=metrics[start : start + MAX_BATCH])

    def _copy_artifacts(self, run_id: str, copy_id: str) -> None:
        if not self.source.list_artifacts(run_id):
            return
        with tempfile.TemporaryDirectory(prefix="torchtrack-push-") as folder:
            local = self.source.download_artifacts(run_id, "", folder)
            self.target.log_artifacts(copy_id, local)

    def _copy_logged_models(self, run: Run, copy_id: str) -> None:
        """Each model `run` logged, as a new logged model of the copy with the same files.

        The model's MLmodel file names the run and model it belongs to; the copy's names the copy.
        """
        import mlflow.artifacts
        from mlflow.entities import LoggedModelOutput
        from mlflow.models import Model

        experiment_id = self.target_experiments[run.info.experiment_id]
        found = self.source.search_logged_models(
            [run.info.experiment_id], filter_string=f"source_run_id = '{run.info.run_id}'"
        )
        for model in found:
            new = self.target.create_logged_model(
                experiment_id,
                name=model.name,
                source_run_id=copy_id,
                tags=model.tags | {SOURCE_TAG: model.model_id},
                params=model.params,
                model_type=model.model_type,
            )
            with tempfile.TemporaryDirectory(prefix="torchtrack-push-") as folder:
                local = Path(
                    mlflow.artifacts.download_artifacts(
                        artifact_uri=model.artifact_location, dst_path=folder, tracking_uri=self.source_uri
                    )
                )
                if (local / "MLmodel").is_file():
                    described = Model.load(local / "MLmodel")
                    described.run_id, described.model_id = copy_id, new.model_id
                    described.save(local / "MLmodel")
                self.target.log_model_artifacts(new.model_id, str(local))
            self.target.finalize_logged_model(new.model_id, model.status)
            outputs = run.outputs.model_outputs if run.outputs else []
            steps = [output.step for output in outputs if output.model_id == model.model_id]
            self.target.log_outputs(copy_id, [LoggedModelOutput(new.model_id, step) for step in steps or [0]])
            self.model_copies[model.model_id] = new.model_id
            self.report.models += 1

    def _copy_model_versions(self, run_id: str, copy_id: str) -> None:
        """Each registered model version made from run `run_id`, as a new version of the same
        registered model made from the copy, with its tags and the aliases it has in the source.

        Done before the copy is marked whole, so that an interrupted push leaves no version or
        alias that the next one would not make again."""
        found = self.source.search_model_versions(f"run_id = '{run_id}'")
        for version in sorted(found, key=lambda v: int(v.version)):
            aliases = self._registered_model(version.name)
            # A search's versions name their logged model only in `source` (models:/<model id>).
            model_id = self.model_copies.get(version.model_id or version.source.removeprefix("models:/"))
            if model_id is not None:
                source = f"models:/{model_id}"
            else:  # a version made from a run's artifacts, not a logged model
                source = version.source.replace(f"runs:/{run_id}/", f"runs:/{copy_id}/", 1)
            new = self.target.create_model_version(
                version.name,
                source,
                run_id=copy_id,
                tags=version.tags,
                description=version.description,
                model_id=model_id,
            )
            for alias in (alias for alias, number in aliases.items() if str(number) == str(version.version)):
                self.target.set_registered_model_alias(version.name, alias, new.version)
            self.report.versions += 1

    def _registered_model(self, name: str) -> dict[str, str]:
        """Make the registered model `name` on the target like the source's if it is new; return
        the source's aliases (alias -> version)."""
        from mlflow.exceptions import MlflowException

        model = self.source.get_registered_model(name)  # a search's versions carry no aliases
        try:
            self.target.create_registered_model(name, tags=model.tags, description=model.description)
        except MlflowException as exc:  # made by an earlier push, or by the server's own runs
            if exc.error_code not in ("RESOURCE_ALREADY_EXISTS", "ALREADY_EXISTS"):
                raise
        return model.aliases


def all_runs(
    client: MlflowClient, experiment_ids: str | list[str], limit: int | None = None, **kwargs: Any
) -> list[Any]:
    """Every active run of the experiments (at most `limit`), page by page."""
    ids = [experiment_ids] if isinstance(experiment_ids, str) else experiment_ids
    if not ids:
        return []
    runs, token = [], None
    while True:
        page = client.search_runs(ids, max_results=limit or 1000, page_token=token, **kwargs)
        runs.extend(page)
        token = page.token
        if not token or (limit and len(runs) >= limit):
            return runs
