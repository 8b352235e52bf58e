"""`torchtrack compare`: an experiment's model runs from the MLflow store, as a table, best first.

A model run (tag torchtrack.kind = model) is one row in the MLflow UI: every param that
shaped the model, final train/val losses from train and test metrics from evaluate. Stage
runs nested under it, and prepare runs, are not compared. Only finished runs are, unless
asked for all (then with a status column), and runs on different data (another DVC hash of
data/prepared) are ranked in separate tables, the newest data first.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from torchtrack.config import KEY_PARAMS
from torchtrack.errors import InputError
from torchtrack.tracking.backend.registry import higher_is_better
from torchtrack.tracking.hashes import PREPARED_TAG, RELOG

KEY_METRICS = ("test_mse", "test_mae", "test_r2", "val_loss")
MODEL_RUNS = "tags.`torchtrack.kind` = 'model'"
FINISHED = "attributes.status = 'FINISHED'"
MISSING = "-"  # a param or metric the run did not log
PARAM_DIGITS = 6  # significant digits of a float param: 0.00944095, not 0.00944095324834808
UNKNOWN_DATA = "unknown"  # runs logged before the data hash was recorded
HASH_SHOWN = 12  # characters of a data hash in headings
# DVC may restore every output from its cache and so run nothing, logging nothing.
FIRST_RUNS = f"run dvc repro; `{RELOG}` if it has nothing to do"


def find_model_runs(
    experiment: str, tracking_uri: str | None = None, *, everything: bool = True, dataset: str | None = None
) -> list[Any]:
    """The model runs (mlflow.entities.Run) in `experiment`: all, or only FINISHED ones, and only
    those on data whose DVC hash starts with `dataset` if given; InputError if there is no such
    experiment."""
    from torchtrack.tracking.backend.store import connect
    from torchtrack.tracking.location import tracking_uri as default_uri

    uri = tracking_uri or default_uri()
    client = connect(uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        names = sorted(e.name for e in client.search_experiments())
        raise InputError(
            f"no MLflow experiment named {experiment!r} in {uri} "
            f"(experiments: {', '.join(names) or 'none'}); {FIRST_RUNS}"
        )
    query = MODEL_RUNS if everything else f"{MODEL_RUNS} AND {FINISHED}"
    if dataset is not None:
        if not dataset or any(c not in "0123456789abcdef." for c in dataset):
            raise InputError(f"--dataset must be (a prefix of) a DVC md5 hash, got {dataset!r}")
        query += f" AND tags.`{PREPARED_TAG}` LIKE '{dataset}%'"
    runs, token = [], None
    while True:
        page = client.search_runs([found.experiment_id], query, max_results=1000, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def rank_runs(runs: list[Any], metric: str) -> list[Any]:
    """`runs` best first by `metric`; runs without it (or with NaN) last, newest first among them."""
    if runs and not any(metric in run.data.metrics for run in runs):
        logged = sorted({name for run in runs for name in run.data.metrics})
        raise InputError(f"no run has metric {metric!r}; logged metrics: {', '.join(logged) or 'none'}")
    sign = -1.0 if higher_is_better(metric) else 1.0

    def badness(run: Any) -> tuple[bool, float]:
        value = run.data.metrics.get(metric, math.nan)
        return (math.isnan(value), 0.0 if math.isnan(value) else sign * value)

    newest_first = sorted(runs, key=lambda run: -run.info.start_time)
    return sorted(newest_first, key=badness)


def shown_param(value: Any) -> str:
    """A param value as a person reads it: a float to PARAM_DIGITS significant digits, anything
    else (integers, names, lists) as logged."""
    text = str(value)
    try:
        int(text)
        return text
    except ValueError:
        pass
    try:
        return f"{float(text):.{PARAM_DIGITS}g}"
    except ValueError:
        return text


def compared_params(runs: list[Any]) -> list[str]:
    """The params whose values differ between `runs`, by name; KEY_PARAMS when none does."""
    every_param = sorted({name for run in runs for name in run.data.params})
    params = [p for p in every_param if len({run.data.params.get(p) for run in runs}) > 1]
    return params or [p for p in KEY_PARAMS if any(p in run.data.params for run in runs)]


def runs_table(runs: list[Any], metric: str, status: bool = False) -> pd.DataFrame:
    """One row per run, in the given order: name, short id, (status,) `compared_params`, then
    metrics (`metric` first)."""
    params = compared_params(runs)
    metrics = [metric] + [m for m in KEY_METRICS if m != metric]
    rows = []
    for rank, run in enumerate(runs, start=1):
        row: dict[str, Any] = {"#": rank, "run": run.info.run_name, "id": run.info.run_id[:8]}
        row["status"] = run.info.status
        row |= {p: shown_param(run.data.params[p]) if p in run.data.params else MISSING for p in params}
        row |= {m: f"{run.data.metrics[m]:.5g}" if m in run.data.metrics else MISSING for m in metrics}
        rows.append(row)
    return pd.DataFrame(rows, columns=["#", "run", "id", *(["status"] if status else []), *params, *metrics])


def by_dataset(runs: list[Any]) -> dict[str, list[Any]]:
    """`runs` grouped by the DVC hash of the data they were trained on, the newest data first."""
    groups: dict[str, list[Any]] = {}
    for run in sorted(runs, key=lambda run: -run.info.start_time):
        groups.setdefault(run.data.tags.get(PREPARED_TAG, UNKNOWN_DATA), []).append(run)
    return groups


def comparison_report(
    experiment: str,
    metric: str = "test_mse",
    limit: int = 20,
    tracking_uri: str | None = None,
    *,
    everything: bool = False,
    dataset: str | None = None,
) -> str:
    """The text `torchtrack compare` prints: a heading line and an aligned table, best run first;
    one table per dataset when the runs were trained on different data."""
    runs = find_model_runs(experiment, tracking_uri, everything=everything, dataset=dataset)
    if not runs:
        which = "" if everything else " (finished ones; --all for the rest)"
        return f"experiment {experiment!r} has no model runs yet{which} ({FIRST_RUNS})"
    groups = {data: rank_runs(group, metric) for data, group in by_dataset(runs).items()}
    order = "higher" if higher_is_better(metric) else "lower"
    heading = f"experiment {experiment!r}: {len(runs)} model run(s), best {metric} first ({order} is better)"
    if len(groups) > 1:
        heading += f", ranked within each of {len(groups)} datasets (newest data first)"
    if any(len(group) > limit for group in groups.values()):
        heading += f"; showing {limit}{' per dataset' if len(groups) > 1 else ''}, --limit for more"
    parts = [heading]
    for data, group in groups.items():
        if len(groups) > 1:
            parts.append(f"\ndata {data[:HASH_SHOWN]}: {len(group)} run(s)")
        parts.append(runs_table(group[:limit], metric, status=everything).to_string(index=False))
    return "\n".join(parts)
