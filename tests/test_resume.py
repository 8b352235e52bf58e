"""Resume: a train stage killed part-way and rerun with `train.resume` continues from its last
epoch checkpoint and ends with a model byte-identical to an uninterrupted run's (on CPU)."""

from __future__ import annotations

import shutil
import signal

import pytest
import yaml

from pipeline_copy import StageProcess, temporary_files
from torchtrack.cli import main

pytestmark = [pytest.mark.slow, pytest.mark.full]
PARAMS = {
    "data": {"n_samples": 12000},
    "train": {"epochs": 3, "max_steps": 10**6, "batch_size": 8, "device": "cpu", "resume": True},  # 3 epochs
    "tracking": {"log_every_n_steps": 50},
}
OUTPUTS = ("models/model.pt", "metrics/train.json", "plots/loss.csv")


def test_a_killed_run_resumed_ends_with_the_uninterrupted_model_byte_for_byte(tmp_path, monkeypatch):
    interrupted, uninterrupted = tmp_path / "interrupted", tmp_path / "uninterrupted"
    interrupted.mkdir()
    (interrupted / "dvc.yaml").write_text("stages: {}\n")  # the folder is the repository root
    (interrupted / "params.yaml").write_text(yaml.safe_dump(PARAMS))
    monkeypatch.chdir(interrupted)
    assert main(["prepare"]) == 0
    shutil.copytree(interrupted, uninterrupted)
    monkeypatch.chdir(uninterrupted)
    assert main(["train"]) == 0

    train = StageProcess(interrupted, "train")
    train.wait_for_line("epoch   1/")
    assert train.stop(signal.SIGKILL) == -signal.SIGKILL
    assert (interrupted / "models" / "checkpoint.pt").is_file()
    assert not (interrupted / "models" / "model.pt").exists() and temporary_files(interrupted) == []

    rerun = StageProcess(interrupted, "train")
    assert rerun.wait() == 0, rerun.stderr
    resumed = [line for line in rerun.stdout if line.startswith("resuming after epoch")]
    assert len(resumed) == 1, rerun.stdout
    done = int(resumed[0].split()[3])  # "resuming after epoch N from models/checkpoint.pt"
    epochs_run = [line.split()[1] for line in rerun.stdout if line.startswith("epoch")]
    assert done >= 1 and epochs_run == [f"{epoch}/3" for epoch in range(done + 1, 4)]
    for output in OUTPUTS:
        assert (interrupted / output).read_bytes() == (uninterrupted / output).read_bytes(), output
    assert not (interrupted / "models" / "checkpoint.pt").exists()  # removed once the model is saved
