"""The committed dvc.lock is what a fresh clone produces: `dvc repro` on the default params
leaves dvc.lock and metrics/ as git has them (docs/reproducibility.md). CI runs this on a
fresh clone, so a change that moves an output must commit the refreshed lock with it."""

from __future__ import annotations

import subprocess

import pytest
import torch

from pipeline_copy import copy_project

pytest_plugins = ["default_pipeline"]


@pytest.mark.slow
@pytest.mark.skipif(
    torch.cuda.is_available(), reason="train.device auto trains on the GPU here; the lock is the CPU's"
)
def test_a_fresh_clone_reproduces_the_committed_lock_and_metrics(default_pipeline, tmp_path):
    repo = copy_project(default_pipeline, tmp_path / "repo")  # dvc repro in a fresh copy, pinned kernels
    diff = subprocess.run(
        ["git", "diff", "--exit-code", "dvc.lock", "metrics/"], cwd=repo, capture_output=True, text=True
    )
    assert diff.returncode == 0, f"dvc repro in a fresh clone changed the committed files:\n{diff.stdout}"
