"""The model registry: every distinct trained model is a version of one registered model, named
after `tracking.experiment`, and aliases say which version to use.

- A model whose bytes a version already holds (its tag torchtrack.model_md5: a forced rerun, a
  trial with the default params) registers nothing new; its run is led to that version.
- `challenger`: the newest version that evaluate found no worse, by test MSE, than the
  least-squares line on the same rows and than the champion; a worse one never takes it.
- `champion`: the best version by a test metric; `torchtrack promote` moves it, and so does
  evaluate after every run when `tracking.promote` names a rule (off by default).

Load either as `models:/<name>@champion` in `torchtrack predict`, `torchtrack serve` or
`mlflow.pyfunc.load_model`. MLflow's deprecated stages (Staging, Production) are not used.
Each version links its model run and carries its test metrics as tags.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from torchtrack.baseline import no_worse_than_least_squares
from torchtrack.errors import InputError
from torchtrack.tracking.hashes import MODEL_TAG

if TYPE_CHECKING:
    from mlflow import MlflowClient


def higher_is_better(metric: str) -> bool:
    """R^2 grows as a model improves; every loss and error metric shrinks."""
    return metric.endswith("r2")


CHAMPION = "champion"
CHALLENGER = "challenger"
RULE_PREFIX = "best_"  # tracking.promote: best_<metric>, e.g. best_test_mse
METRIC_TAG_PREFIX = "test_"  # the model run's metrics copied onto its version as tags
CHALLENGER_METRIC = "test_mse"  # what a challenger must not be worse at
LEAST_SQUARES_METRIC = "test_mse_least_squares"  # evaluate's least-squares line, on the same rows


def register(client: MlflowClient, name: str, model_uri: str, run_id: str) -> str:
    """Make the logged model at `model_uri` (`models:/<model id>`) a new version of `name`, linked
    to its model run, unless a version already holds a model with the same bytes (the run's tag
    MODEL_TAG); return the version number. `challenger` waits for the test metrics (tag_version).
    """
    from mlflow.exceptions import MlflowException

    try:
        client.create_registered_model(
            name, description="Models trained by the torchtrack pipeline; aliases: champion, challenger."
        )
    except MlflowException as exc:
        if exc.error_code not in ("RESOURCE_ALREADY_EXISTS", "ALREADY_EXISTS"):
            raise
    md5 = client.get_run(run_id).data.tags.get(MODEL_TAG)
    same = _version_with_md5(client, name, md5) if md5 else None
    if same is not None:
        return same
    model_id = model_uri.removeprefix("models:/") if model_uri.startswith("models:/m-") else None
    tags = {MODEL_TAG: md5} if md5 else None
    version = client.create_model_version(name, model_uri, run_id, tags=tags, model_id=model_id)
    return str(version.version)


def _version_with_md5(client: MlflowClient, name: str, md5: str) -> str | None:
    """The oldest version of `name` whose model has these bytes, or None."""
    versions = client.search_model_versions(f"name = '{name}'")
    same = [int(v.version) for v in versions if v.tags.get(MODEL_TAG) == md5]
    return str(min(same)) if same else None


def version_of_run(client: MlflowClient, name: str, run_id: str) -> str | None:
    """The version of `name` that holds the model run `run_id`'s model (registered by this run, or
    by an earlier one with the same bytes), or None."""
    versions = client.search_model_versions(f"name = '{name}' AND run_id = '{run_id}'")
    if versions:
        return str(max(int(v.version) for v in versions))
    md5 = client.get_run(run_id).data.tags.get(MODEL_TAG)
    return _version_with_md5(client, name, md5) if md5 else None


def tag_version(client: MlflowClient, name: str, version: str, metrics: dict[str, float]) -> None:
    """Copy a model run's test metrics onto its version, so the registry page shows them; then
    move `challenger` onto the version if it earns it (`earns_challenger`)."""
    for key, value in metrics.items():
        if key.startswith(METRIC_TAG_PREFIX):
            client.set_model_version_tag(name, version, key, f"{value:.6g}")
    champion = current_alias(client, name, CHAMPION)
    champion_run = None if champion in (None, version) else client.get_model_version(name, champion).run_id
    champion_mse = client.get_run(champion_run).data.metrics.get(CHALLENGER_METRIC) if champion_run else None
    if earns_challenger(metrics, champion_mse):
        client.set_registered_model_alias(name, CHALLENGER, version)


def earns_challenger(metrics: dict[str, float], champion_mse: float | None) -> bool:
    """Whether a version with these test metrics may be `challenger`: its test MSE is known and
    no worse than the least-squares line's on the same rows (to float32's resolution) nor than
    the champion's (`champion_mse`; None when there is none)."""
    mse = metrics.get(CHALLENGER_METRIC, math.nan)
    if math.isnan(mse):
        return False
    line = metrics.get(LEAST_SQUARES_METRIC)
    if line is not None and not no_worse_than_least_squares(mse, line):
        return False
    return champion_mse is None or math.isnan(champion_mse) or mse <= champion_mse


@dataclass(frozen=True)
class Promotion:
    """What `promote` did: the version now champion, the one it replaced (None: none had it)."""

    name: str
    metric: str
    version: str
    value: float
    replaced: str | None

    def __str__(self) -> str:
        if self.replaced == self.version:
            change = "it already was"
        elif self.replaced is None:
            change = "no version had the alias before"
        else:
            change = f"replacing version {self.replaced}"
        return (
            f"champion: {self.name} version {self.version} ({self.metric} {self.value:.6g}), {change}; "
            f"use models:/{self.name}@{CHAMPION}"
        )


def promote(client: MlflowClient, name: str, metric: str = "test_mse") -> Promotion:
    """Move `champion` onto the version of `name` whose model run is best by `metric`.

    Versions whose run lacks the metric (not evaluated yet) or has NaN (diverged) are not
    candidates; ties go to the newer version. InputError if there is nothing to promote.
    """
    from mlflow.exceptions import MlflowException

    try:
        versions = client.search_model_versions(f"name = '{name}'")
    except MlflowException:
        versions = []
    if not versions:
        raise InputError(f"no registered model named {name!r} (train a model first: dvc repro)")
    candidates: list[tuple[float, int, Any]] = []
    for version in versions:
        value = (
            client.get_run(version.run_id).data.metrics.get(metric, math.nan) if version.run_id else math.nan
        )
        if not math.isnan(value):
            candidates.append((value, int(version.version), version))
    if not candidates:
        raise InputError(f"no version of {name!r} has metric {metric!r} (run evaluate: dvc repro)")
    sign = -1.0 if higher_is_better(metric) else 1.0
    value, number, _ = min(candidates, key=lambda c: (sign * c[0], -c[1]))
    replaced = current_alias(client, name, CHAMPION)
    client.set_registered_model_alias(name, CHAMPION, str(number))
    return Promotion(name, metric, str(number), value, replaced)


def rule_metric(rule: str) -> str:
    """The metric a `tracking.promote` rule ranks by: best_test_mse -> test_mse."""
    return rule.removeprefix(RULE_PREFIX)


def current_alias(client: MlflowClient, name: str, alias: str) -> str | None:
    """The version `alias` points to, or None."""
    aliases = client.get_registered_model(name).aliases
    return str(aliases[alias]) if alias in aliases else None
