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

        from torchtrack.tune import make_pruner, open_storage

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
