"""End to end at a million rows: `dvc repro` in a temporary copy of the repository on
1,000,000 synthetic rows (4 features, one epoch at batch 8192), every stage's outputs read back.
The train split (700,000 rows) is larger than its shuffle buffer here, so train reads it a window
at a time, as it reads any split of more than `train.shuffle_buffer_rows`."""

from __future__ import annotations

import json
import math

import pytest
import torch

from pipeline_copy import copy_repo, dvc, stages_run, store, update_params
from torchtrack.models import load_checkpoint
from torchtrack.tracking.backend.lineage import find_model_run

pytestmark = pytest.mark.slow

ROWS = 1_000_000


def test_a_million_rows_run_through_every_stage_and_the_model_learns_the_rule(tmp_path):
    repo = copy_repo(tmp_path / "repo")
    update_params(
        repo,
        data={"n_samples": ROWS, "n_features": 4},
        train={"epochs": 1, "batch_size": 8192, "shuffle_buffer_rows": 500_000},
    )
    printed = dvc(repo, "repro", stderr=True)
    assert stages_run(printed) == ["validate", "prepare", "train", "evaluate"]
    assert "train.parquet: 700,000 rows, read a window of at most 700,000 at a time" in printed

    prepared = json.loads((repo / "metrics/prepare.json").read_text())
    assert (prepared["rows_train"], prepared["rows_val"], prepared["rows_test"]) == (
        700_000,
        150_000,
        150_000,
    )
    assert prepared["features"] == 4 and prepared["rows_dropped_missing_target"] == 0

    trained = json.loads((repo / "metrics/train.json").read_text())
    assert (trained["epochs"], trained["batch_size"]) == (1, 8192)
    model, _ = load_checkpoint(repo / "models/model.pt")
    assert model.in_features == 4 and all(torch.isfinite(p).all() for p in model.parameters())

    # One epoch of 86 steps fits the rule: the test error is near the noise, far below the target's spread.
    evaluated = json.loads((repo / "metrics/evaluate.json").read_text())
    assert all(math.isfinite(v) for v in evaluated.values())
    assert evaluated["test_mse_over_noise_variance"] < 1.5 and evaluated["test_r2"] > 0.9
    model_run = find_model_run(repo / "models/model.pt", store(repo))
    assert model_run.data.metrics["test_mse"] == pytest.approx(evaluated["test_mse"])
