"""The train stage's side of a `torchtrack tune` trial: the tags that tie its MLflow model run
to the study, and each epoch's val_loss reported to the Optuna trial, which stops training
when the study's pruner says the trial is clearly worse than the others.

`torchtrack tune` names the trial in the TRIAL_ENV environment variable of the DVC
experiment it runs, so that nothing of the study enters params.yaml or DVC's graph.
"""

from __future__ import annotations

import json
import os
from functools import cached_property
from typing import Any

from torchtrack.errors import TrainingError

TRIAL_ENV = "TORCHTRACK_TRIAL"  # JSON: storage, study, trial number and id, pruner settings
STUDY_TAG = "torchtrack.study"
TRIAL_TAG = "torchtrack.trial"  # the trial's number in its study
PRUNED_ATTR = "torchtrack.pruned_epoch"  # set on the Optuna trial when the stage stops it
HEARTBEAT_S = 10  # a running trial's worker writes a heartbeat this often...
GRACE_S = 60  # ...and a trial without one for this long is marked failed


class TrialPruned(TrainingError):
    """The study's pruner stopped this trial: its val_loss is worse than the other trials' median."""


class StudyTrial:
    """The Optuna trial this training run belongs to, read from TRIAL_ENV."""

    def __init__(self, spec: dict[str, Any]):
        self.spec = spec

    def tags(self) -> dict[str, str]:
        """Tags for the model run: its study and trial number (tune then nests it under the study's run)."""
        return {STUDY_TAG: self.spec["study"], TRIAL_TAG: str(self.spec["number"])}

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        """As one of `fit`'s loggers: each epoch's val_loss (logged at the epoch) goes to `report`."""
        if "val_loss" in metrics:
            self.report(step, metrics["val_loss"])

    def report(self, epoch: int, val_loss: float) -> None:
        """Tell the trial this epoch's val_loss; raise TrialPruned when the pruner stops it."""
        trial = self._trial
        trial.report(val_loss, epoch)
        if trial.should_prune():
            trial.set_user_attr(PRUNED_ATTR, epoch)
            raise TrialPruned(
                f"trial {self.spec['number']} of study {self.spec['study']!r} pruned after epoch {epoch}: "
                f"val_loss {val_loss:.5g} is worse than the median of the earlier trials at that epoch"
            )

    @cached_property
    def _trial(self) -> Any:
        import optuna

        study = optuna.load_study(
            study_name=self.spec["study"],
            storage=open_storage(self.spec["storage"], heartbeat=False),
            pruner=make_pruner(self.spec["pruner"]),
        )
        return optuna.trial.Trial(study, self.spec["trial_id"])


def from_environment() -> StudyTrial | None:
    """The trial named in TRIAL_ENV, or None when this run is not part of a study."""
    text = os.environ.get(TRIAL_ENV)
    return StudyTrial(json.loads(text)) if text else None


def open_storage(url: str, heartbeat: bool = True) -> Any:
    """Optuna's RDB storage at `url`; with `heartbeat`, running trials send heartbeats, and
    one without a heartbeat for GRACE_S seconds is marked failed by the next trial to start."""
    import optuna

    from torchtrack.tracking.location import sqlite_creation_lock

    engine = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else None  # wait out writers
    beats = {"heartbeat_interval": HEARTBEAT_S, "grace_period": GRACE_S} if heartbeat else {}
    with sqlite_creation_lock(url):  # two workers starting on a new study file: one creates the tables
        return optuna.storages.RDBStorage(url, engine_kwargs=engine, **beats)


def make_pruner(settings: dict[str, int]) -> Any:
    """Optuna's median pruner: after `startup_trials` finished trials and `warmup_epochs`
    epochs, a trial whose val_loss is worse than the median of the others' at that epoch stops."""
    import optuna

    return optuna.pruners.MedianPruner(
        n_startup_trials=settings["startup_trials"], n_warmup_steps=settings["warmup_epochs"]
    )
