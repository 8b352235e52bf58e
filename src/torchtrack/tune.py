"""`torchtrack tune`: a hyperparameter search with Optuna in which every trial is a DVC experiment.

    torchtrack tune [--space tune.yaml] [--trials 20] [--jobs 2] [--metric test_mse]
                    [--study NAME] [--storage postgresql://...]

The search space is a small YAML file of ranges and choices over params keys (tune.yaml).
Each trial runs `dvc exp run --temp -n <study>-<number> -S key=value ...`, DVC's own executor in
a temporary copy of the repo, so every trial can be applied, diffed and pushed like any other
experiment; its MLflow model run carries the study and trial number as tags and is nested under
one run per study. The study lives in Optuna's storage, SQLite beside mlflow.db by default:
any number of `torchtrack tune` processes, on one machine or (with PostgreSQL) many, share
its trials. A worker that dies stops sending heartbeats; its trial is then marked failed, and
the others carry on. The train stage reports each epoch's val_loss to its trial (trial.py),
and the median pruner stops trials that are clearly worse than the others.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from torchtrack.compare import shown_param
from torchtrack.config import Config, config_from_dict, load_config, params_mapping, read_yaml
from torchtrack.errors import ConfigError, InputError, TrainingError
from torchtrack.signals import Terminated
from torchtrack.tracking.backend.registry import higher_is_better
from torchtrack.trial import PRUNED_ATTR, STUDY_TAG, TRIAL_ENV, TRIAL_TAG, make_pruner, open_storage

SPACE_FILE = Path("tune.yaml")
STORAGE_FILE = "optuna.db"  # the default study storage, beside mlflow.db
EXP_NAME_ATTR = "dvc.exp_name"  # the trial's DVC experiment, on the Optuna trial
PARAMS_ATTR = "params"  # the values it set, as `-S` set them (Optuna keeps a list choice as text)
STATE_TAG = "torchtrack.trial_state"  # COMPLETE, PRUNED or FAIL, on the trial's MLflow model run
STUDY_KIND = "study"  # torchtrack.kind of the run that groups a study's trials in MLflow
PRUNER_DEFAULTS = {"startup_trials": 5, "warmup_epochs": 0}


@dataclass(frozen=True)
class Dimension:
    """One params key of the search space: a range (`low`..`high`, `log` scale) or `choices`."""

    key: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: tuple[Any, ...] | None = None

    def suggest(self, trial: Any) -> Any:
        """This key's value for `trial` (an optuna.Trial): an int range when both ends are ints."""
        if self.choices is not None:
            # Optuna's choices must be scalars: a list (model.hidden_sizes) goes as its JSON text.
            by_text = {c if _is_scalar(c) else json.dumps(c): c for c in self.choices}
            return by_text[trial.suggest_categorical(self.key, list(by_text))]
        if isinstance(self.low, int) and isinstance(self.high, int):
            return trial.suggest_int(self.key, self.low, self.high, log=self.log)
        return trial.suggest_float(self.key, float(self.low), float(self.high), log=self.log)

    def values_to_check(self) -> list[Any]:
        """The values that must each be valid for the key: both ends, or every choice."""
        return list(self.choices) if self.choices is not None else [self.low, self.high]


@dataclass(frozen=True)
class SearchSpace:
    """What tune.yaml says: the dimensions, the study's default name and metric, the pruner."""

    dimensions: tuple[Dimension, ...]
    study: str = "tune"
    metric: str = "test_mse"
    pruner: dict[str, int] | None = None


def load_space(path: Path, config: Config) -> SearchSpace:
    """Read and check a search space file: every key a params key, every end and choice a value
    that params.yaml accepts there; ConfigError naming the first bad entry."""
    path = Path(path)
    raw = read_yaml(path, not_found="search space file not found (see docs/scaling.md for its format)")
    if not isinstance(raw, dict) or not isinstance(raw.get("space"), dict) or not raw["space"]:
        raise ConfigError(f"{path}: needs a non-empty `space:` mapping of params keys to ranges or choices")
    unknown = sorted(set(raw) - {"space", "study", "metric", "pruner"})
    if unknown:
        raise ConfigError(f"{path}: unknown key {unknown[0]!r}; allowed: space, study, metric, pruner")
    known = config.flat()
    dimensions = []
    for key, entry in raw["space"].items():
        where = f"{path}: space.{key}"
        if key not in known:
            raise ConfigError(f"{where}: not a params key (e.g. train.lr, model.activation)")
        dimension = _dimension(key, entry, where)
        for value in dimension.values_to_check():
            check_params(config, {key: value}, where)
        dimensions.append(dimension)
    pruner = {**PRUNER_DEFAULTS, **(raw.get("pruner") or {})}
    if set(pruner) != set(PRUNER_DEFAULTS) or not all(isinstance(v, int) and v >= 0 for v in pruner.values()):
        raise ConfigError(f"{path}: pruner takes startup_trials and warmup_epochs, each an integer >= 0")
    return SearchSpace(
        tuple(dimensions), str(raw.get("study", "tune")), str(raw.get("metric", "test_mse")), pruner
    )


def _dimension(key: str, entry: Any, where: str) -> Dimension:
    if not isinstance(entry, dict):
        raise ConfigError(f"{where}: must be a mapping: {{low: .., high: .., log: ..}} or {{choices: [..]}}")
    if "choices" in entry:
        if set(entry) != {"choices"} or not isinstance(entry["choices"], list) or not entry["choices"]:
            raise ConfigError(f"{where}: choices must be a non-empty list, alone")
        return Dimension(key, choices=tuple(entry["choices"]))
    if set(entry) - {"low", "high", "log"} or not {"low", "high"} <= set(entry):
        raise ConfigError(f"{where}: a range needs low and high (and optionally log: true)")
    low, high, log = entry["low"], entry["high"], entry.get("log", False)
    numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (low, high))
    if not numbers or not low < high:
        raise ConfigError(f"{where}: low and high must be numbers with low < high, got {low!r} and {high!r}")
    if log is not False and (log is not True or low <= 0):
        raise ConfigError(f"{where}: log: true needs low > 0")
    return Dimension(key, low, high, log)


def check_params(config: Config, values: dict[str, Any], where: str) -> None:
    """Raise ConfigError unless params.yaml with `values` (dotted keys) set is valid."""
    params = params_mapping(config)
    for key, value in values.items():
        section, _, name = key.partition(".")
        if name:
            params[section][name] = value
        else:
            params[key] = value
    try:
        config_from_dict(params, source=where)
    except ConfigError as exc:
        raise ConfigError(str(exc)) from None


def default_storage(root: Path) -> str:
    """The SQLite study storage at the repository root, beside mlflow.db."""
    return f"sqlite:///{root / STORAGE_FILE}"


class TrialFailed(TrainingError):
    """A trial's experiment failed; the study records it as failed and goes on."""


class Sweep:
    """Runs trials of `study` as DVC experiments in `root`, and records them in MLflow."""

    def __init__(self, study: Any, space: SearchSpace, config: Config, storage: str, root: Path):
        self.study, self.space, self.config, self.storage, self.root = study, space, config, storage, root
        self.logs = root / ".dvc" / "tmp" / "torchtrack-tune"  # each trial's `dvc exp run` output
        self._running: set[subprocess.Popen] = set()
        self._lock = threading.Lock()

    def objective(self, trial: Any) -> float:
        """One trial: suggest its params, run its DVC experiment, return its metric."""
        import optuna

        values = {d.key: d.suggest(trial) for d in self.space.dimensions}
        shown = _shown(values)
        try:
            check_params(self.config, values, f"trial {trial.number}")
        except ConfigError as exc:
            raise self._failed(trial.number, str(exc)) from None
        name = f"{self.study.study_name}-{trial.number}"
        trial.set_user_attr(EXP_NAME_ATTR, name)
        trial.set_user_attr(PARAMS_ATTR, values)
        print(f"trial {trial.number} ({name}): {shown}", flush=True)
        spec = {
            "storage": self.storage,
            "study": self.study.study_name,
            "number": trial.number,
            "trial_id": trial._trial_id,  # the storage's id: what a Trial object is opened by
            "pruner": self.space.pruner,
        }
        # Experiments starting or finishing at once take turns at the repo's lock, not fail on it.
        command = [sys.executable, "-m", "dvc", "--wait-for-lock", "exp", "run", "--temp", "-n", name]
        command += [f"--set-param={k}={_as_yaml(v)}" for k, v in values.items()]
        log = self.logs / f"{name}.log"
        code = self._run(command, {**os.environ, TRIAL_ENV: json.dumps(spec)}, log)
        model_run = self._model_run(trial.number)
        pruned_at = self._user_attrs(trial.number).get(PRUNED_ATTR)
        if pruned_at is not None:
            self._record(model_run, "PRUNED")
            print(f"trial {trial.number}: pruned after epoch {pruned_at}", flush=True)
            raise optuna.TrialPruned(f"pruned after epoch {pruned_at}")
        if code or model_run is None or self.space.metric not in model_run.data.metrics:
            self._record(model_run, "FAIL")
            tail = "".join(log.read_text().splitlines(keepends=True)[-15:]) if log.is_file() else ""
            raise self._failed(trial.number, f"`dvc exp run` failed (exit {code}); {log} ends:\n{tail}")
        value = model_run.data.metrics[self.space.metric]
        self._record(model_run, "COMPLETE")
        print(f"trial {trial.number}: {self.space.metric} {value:.6g}", flush=True)
        return value

    @staticmethod
    def _failed(number: int, reason: str) -> TrialFailed:
        """The error that marks a trial failed (the study goes on); said here, as Optuna is quiet."""
        print(f"trial {number}: failed: {reason}", file=sys.stderr, flush=True)
        return TrialFailed(reason)

    def _run(self, command: list[str], env: dict[str, str], log: Path) -> int:
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "w") as out:
            process = subprocess.Popen(command, cwd=self.root, env=env, stdout=out, stderr=subprocess.STDOUT)
            with self._lock:
                self._running.add(process)
            try:
                return process.wait()
            finally:
                with self._lock:
                    self._running.discard(process)

    def stop_running(self) -> None:
        """SIGTERM every running experiment, its stages included (their runs end KILLED):
        `dvc exp run` does not pass a SIGTERM on to the stage it runs."""
        import psutil

        with self._lock:
            running = list(self._running)
        for process in running:
            try:
                dvc = psutil.Process(process.pid)
                tree = [*dvc.children(recursive=True), dvc]
            except psutil.NoSuchProcess:
                continue
            for member in tree:
                with suppress(psutil.NoSuchProcess):
                    member.terminate()

    @contextmanager
    def stopped_by_sigterm(self) -> Iterator[None]:
        """Within the block, a SIGTERM stops the running experiments, then raises `Terminated`.

        Without this, the signal would wait for them: Optuna's worker threads finish their
        trials before the error leaves `optimize`. (Ctrl-C reaches them from the terminal.)
        """
        previous = signal.getsignal(signal.SIGTERM)

        def stop(signum: int, frame: Any) -> None:
            self.stop_running()
            raise Terminated(f"signal {signum}")

        signal.signal(signal.SIGTERM, stop)
        try:
            yield
        finally:
            signal.signal(signal.SIGTERM, previous)

    def _user_attrs(self, number: int) -> dict[str, Any]:
        """The trial's user attributes as the storage has them now (the stage may have set some)."""
        return next(t for t in self.study.get_trials(deepcopy=False) if t.number == number).user_attrs

    # -- MLflow ---------------------------------------------------------------------------
    @cached_property
    def client(self) -> Any:
        from torchtrack.tracking.backend.store import connect

        return connect()

    def _model_run(self, number: int) -> Any:
        """The trial's MLflow model run (the newest, should a study name be reused), or None."""
        experiment = self.client.get_experiment_by_name(self.config.tracking.experiment)
        if experiment is None:
            return None
        runs = self.client.search_runs(
            [experiment.experiment_id],
            f"tags.`{STUDY_TAG}` = '{self.study.study_name}' AND tags.`{TRIAL_TAG}` = '{number}' "
            "AND tags.`torchtrack.kind` = 'model'",
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )
        return runs[0] if runs else None

    def _record(self, model_run: Any, state: str) -> None:
        """Tag the trial's model run with its Optuna state and nest it under the study's run."""
        if model_run is None:
            return
        self.client.set_tag(model_run.info.run_id, STATE_TAG, state)
        parent = self.study_run(model_run.info.experiment_id)
        self.client.set_tag(model_run.info.run_id, "mlflow.parentRunId", parent)

    def study_run(self, experiment_id: str) -> str:
        """The run that groups this study's trials in the MLflow UI; made by the first to need it."""
        from torchtrack.tracking.private_dir import locked, private_dir

        name = self.study.study_name
        digest = hashlib.sha256(f"{self.storage} {name}".encode()).hexdigest()[:16]
        with locked(private_dir() / f"study-{digest}.lock"):
            found = self.client.search_runs(
                [experiment_id],
                f"tags.`torchtrack.kind` = '{STUDY_KIND}' AND tags.`{STUDY_TAG}` = '{name}'",
                max_results=1,
            )
            if found:
                return found[0].info.run_id
            run = self.client.create_run(
                experiment_id,
                run_name=f"study {name}",
                tags={
                    "torchtrack.kind": STUDY_KIND,
                    STUDY_TAG: name,
                    "optuna.storage": _no_secrets(self.storage),
                },
            )
            self.client.set_terminated(run.info.run_id)  # a grouping, not a process: never left RUNNING
            return run.info.run_id

    def record_best(self) -> None:
        """The best trial so far on the study's run: its number and metric."""
        best = _best(self.study)
        experiment = self.client.get_experiment_by_name(self.config.tracking.experiment)
        if best is None or experiment is None:
            return
        run_id = self.study_run(experiment.experiment_id)
        self.client.log_metric(run_id, f"best_{self.space.metric}", best.value, step=len(self.study.trials))
        self.client.set_tag(run_id, "torchtrack.best_trial", str(best.number))


def _best(study: Any) -> Any:
    from optuna.trial import TrialState

    return study.best_trial if study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) else None


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, (bool, int, float, str))


def _as_yaml(value: Any) -> str:
    """A value as `dvc exp run -S key=value` reads it (YAML): JSON is YAML."""
    return value if isinstance(value, str) else json.dumps(value)


def _shown(values: dict[str, Any]) -> str:
    """A trial's params for people: `key=value` pairs, a float to compare.PARAM_DIGITS significant
    digits as compare shows it (the trial ran the exact value)."""
    return " ".join(
        f"{k}={shown_param(v) if isinstance(v, float) else _as_yaml(v)}" for k, v in values.items()
    )


def _no_secrets(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    return f"{scheme}{sep}{rest.rpartition('@')[2]}" if sep else url


def until(n_trials: int) -> Callable[[Any, Any], None]:
    """A callback that stops this worker once the study has `n_trials` trials finished or
    running, counted across every worker (failed ones do not count: they are replaced)."""
    import optuna
    from optuna.trial import TrialState

    def stop_when_enough(study: Any, trial: Any) -> None:
        optuna.storages.fail_stale_trials(study)  # a dead worker's trial is not counted as running
        states = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
        if len(study.get_trials(deepcopy=False, states=states)) >= n_trials:
            study.stop()

    return stop_when_enough


def tune(
    params: Path,
    space_file: Path,
    trials: int,
    jobs: int,
    metric: str | None = None,
    study_name: str | None = None,
    storage: str | None = None,
) -> str:
    """Run (or join) a study until it has `trials` trials, `jobs` at a time in this process;
    return a report of the best trial."""
    import optuna
    from optuna.trial import TrialState

    from torchtrack.tracking.location import repo_root

    config = load_config(params)
    space = load_space(space_file, config)
    space = SearchSpace(space.dimensions, study_name or space.study, metric or space.metric, space.pruner)
    root = repo_root()
    if not (root / "dvc.yaml").is_file():
        raise InputError(
            f"torchtrack tune runs DVC experiments: run it in the project (no dvc.yaml in {root})"
        )
    storage = storage or default_storage(root)
    # A line per trial comes from here; Optuna would add a traceback per failed trial.
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)  # heartbeats
    study = optuna.create_study(
        storage=open_storage(storage),
        study_name=space.study,
        direction="maximize" if higher_is_better(space.metric) else "minimize",
        pruner=make_pruner(space.pruner),
        load_if_exists=True,
    )
    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
    sweep = Sweep(study, space, config, storage, root)
    if len(done) < trials:
        with sweep.stopped_by_sigterm():
            study.optimize(
                sweep.objective, n_trials=trials, n_jobs=jobs, catch=(TrialFailed,), callbacks=[until(trials)]
            )
    sweep.record_best()
    return report(study, space.metric)


def report(study: Any, metric: str) -> str:
    """The study's trials by state, and its best trial with the params and how to apply it."""
    from optuna.trial import TrialState

    counts = {state.name: len(study.get_trials(deepcopy=False, states=(state,))) for state in TrialState}
    summary = ", ".join(f"{n} {name.lower()}" for name, n in counts.items() if n)
    best = _best(study)
    if best is None:
        return f"study {study.study_name}: {summary}; no trial has completed"
    shown = _shown(best.user_attrs[PARAMS_ATTR])
    return (
        f"study {study.study_name}: {summary}\n"
        f"best: trial {best.number}, {metric} {best.value:.6g}: {shown}\n"
        f"apply it: dvc exp apply {best.user_attrs.get(EXP_NAME_ATTR)}"
    )
