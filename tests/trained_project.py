"""pytest plugin: `trained_project`, a tiny project that has been through prepare, train and
evaluate, for tests that need a real checkpoint, a logged MLflow model and real plots.

Load it with `pytest_plugins = ["trained_project"]`. Built once per session in a temporary
folder with its own MLflow store, so the repository's store is never touched.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import pytest
import yaml

from helpers import isolate_env
from torchtrack.cli import main
from torchtrack.tracking.backend.lineage import find_model_run

if TYPE_CHECKING:
    from mlflow.entities import Run

TINY_PARAMS = {
    "data": {"n_samples": 400, "n_features": 3},
    "train": {"epochs": 2, "batch_size": 64},
    "tracking": {"experiment": "tiny"},
}


@dataclass(frozen=True)
class TrainedProject:
    """Where a trained tiny project's files are."""

    root: Path

    @property
    def model_path(self) -> Path:
        return self.root / "models" / "model.pt"

    @property
    def tracking_uri(self) -> str:
        return f"sqlite:///{self.root / 'mlflow.db'}"

    def model_run(self) -> Run:
        """The MLflow model run that made the checkpoint, found as every command finds it."""
        from mlflow import MlflowClient

        return find_model_run(self.model_path, MlflowClient(self.tracking_uri))

    def raw_rows(self, n: int, seed: int = 7) -> pd.DataFrame:
        """`n` new rows as a user would have them: raw features and the target, in file order."""
        from torchtrack.data import make_synthetic

        features = TINY_PARAMS["data"]["n_features"]
        return make_synthetic(n, features, noise_std=0.3, seed=seed)[0]


@pytest.fixture(scope="session")
def trained_project(tmp_path_factory: pytest.TempPathFactory) -> TrainedProject:
    """prepare, train and evaluate through the CLI on 400 synthetic rows, for 2 epochs."""
    root = tmp_path_factory.mktemp("trained_project")
    (root / "params.yaml").write_text(yaml.safe_dump(TINY_PARAMS))
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        isolate_env(patch)
        for stage in ("prepare", "train", "evaluate"):
            assert main([stage]) == 0, f"{stage} failed"
    return TrainedProject(root)
