"""Determinism: same code, params and data give the same bytes. Two forced `dvc repro -f` runs
record identical hashes in dvc.lock for the splits, the model, the metrics and the plot data;
seeds cover Python, NumPy, torch, the DataLoader's generator and any DataLoader workers."""

from __future__ import annotations

import random
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml
from torch.utils.data import DataLoader, Dataset

from helpers import DETERMINISTIC_OUTPUTS
from pipeline_copy import copy_repo, dvc, update_params
from torchtrack.training import seed_everything


def output_hashes(repo) -> dict[str, str]:
    """Every stage output's md5 as dvc.lock records it."""
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    return {out["path"]: out["md5"] for stage in lock["stages"].values() for out in stage.get("outs", [])}


@pytest.mark.slow
@pytest.mark.full
def test_two_forced_repros_give_byte_identical_outputs(tmp_path):
    repo = copy_repo(tmp_path)
    update_params(repo, data={"n_samples": 2000}, train={"epochs": 3, "device": "cpu"})
    dvc(repo, "repro")
    first = output_hashes(repo)
    dvc(repo, "repro", "-f")
    second = output_hashes(repo)
    assert set(DETERMINISTIC_OUTPUTS) <= set(first)
    assert {path: second[path] for path in DETERMINISTIC_OUTPUTS} == {
        path: first[path] for path in DETERMINISTIC_OUTPUTS
    }


class RandomDraws(Dataset):
    """Each item is a draw from Python's, NumPy's and torch's global generators, in a worker."""

    def __len__(self) -> int:
        return 16

    def __getitem__(self, index: int) -> torch.Tensor:
        return torch.tensor([index, random.random(), np.random.random(), torch.rand(()).item()])


def draws_through_workers(seed: int) -> torch.Tensor:
    loader = DataLoader(
        RandomDraws(), batch_size=4, shuffle=True, num_workers=2, generator=seed_everything(seed)
    )
    return torch.cat(list(loader))


def test_dataloader_workers_are_seeded_from_the_loaders_generator():
    assert torch.equal(draws_through_workers(0), draws_through_workers(0))
    assert not torch.equal(draws_through_workers(0), draws_through_workers(1))


def test_deterministic_algorithms_are_on_after_seeding():
    seed_everything(0)
    assert torch.are_deterministic_algorithms_enabled()


def test_seeding_turns_on_inductors_deterministic_mode_without_importing_it():
    probe = (
        "import sys, torch\n"
        "from torchtrack.training import seed_everything\n"
        "seed_everything(0)\n"
        "imported = 'torch._inductor' in sys.modules\n"
        "import torch._inductor.config as inductor\n"
        "print(imported, torch.are_deterministic_algorithms_enabled(),\n"
        "      torch.is_deterministic_algorithms_warn_only_enabled(), inductor.deterministic)\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "True", "True", "True"]
