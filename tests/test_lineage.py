"""Runs are found by the content hash of what they made, the hash DVC records; a file whose run
is not in the store is a one-line error that says how to log it again."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from mlflow import MlflowClient

from pipeline_copy import BIN
from torchtrack.errors import RunNotFoundError
from torchtrack.tracking.backend.lineage import find_model_run
from torchtrack.tracking.hashes import MODEL_TAG, RELOG, directory_md5, file_md5

pytest_plugins = ["trained_project"]


def test_hashes_are_the_ones_dvc_records(tmp_path):
    folder = tmp_path / "folder"
    (folder / "inner").mkdir(parents=True)
    (folder / "b.bin").write_bytes(bytes(range(256)) * 10)
    (folder / "a.json").write_text('{"x": 1}\r\n')  # DVC 3 hashes text as it is, line ends too
    (folder / "inner" / "c.txt").write_text("c\n")
    (tmp_path / "single.bin").write_bytes(bytes(range(256)) * 3)
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    for command in (["init", "-q"], ["add", "-q", "folder", "single.bin"]):
        subprocess.run([str(BIN / "dvc"), *command], cwd=tmp_path, check=True, capture_output=True)
    (folder_out,) = yaml.safe_load((tmp_path / "folder.dvc").read_text())["outs"]
    (file_out,) = yaml.safe_load((tmp_path / "single.bin.dvc").read_text())["outs"]
    assert directory_md5(folder) == folder_out["md5"]
    assert file_md5(tmp_path / "single.bin") == file_out["md5"]


def model_run(client: MlflowClient, experiment: str, model_md5: str, exp_name: str | None = None) -> str:
    """A finished model run tagged as having made a model with `model_md5`."""
    tags = {"torchtrack.kind": "model", MODEL_TAG: model_md5} | (
        {"dvc.exp_name": exp_name} if exp_name else {}
    )
    run = client.create_run(client.create_experiment(experiment), tags=tags)
    client.set_terminated(run.info.run_id, "FINISHED")
    return run.info.run_id


def test_of_byte_identical_models_the_run_of_this_experiment_is_found(workdir):
    client = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    model = workdir / "model.pt"
    model.write_bytes(b"weights")
    ours = model_run(client, "one", file_md5(model), exp_name="ours")
    newer = model_run(client, "two", file_md5(model), exp_name="theirs")
    model_run(client, "three", file_md5(workdir / "model.pt") + "0")  # another model
    assert find_model_run(model, client).info.run_id == newer  # the newest, in any experiment
    assert find_model_run(model, client, dvc_experiment="ours").info.run_id == ours


def test_a_model_without_its_run_is_an_error_that_says_how_to_log_it(workdir):
    model = workdir / "model.pt"
    model.write_bytes(b"weights from DVC's cache")
    with pytest.raises(RunNotFoundError, match=f"{file_md5(model)}.*`{RELOG}`"):
        find_model_run(model, MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}"))


def run_cli(root: Path, store: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("DVC_ROOT", "DVC_EXP_NAME")}
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{store}"
    return subprocess.run(
        [sys.executable, "-m", "torchtrack", *args],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.slow
def test_commands_that_need_the_models_run_say_how_to_log_it_when_the_store_lacks_it(
    trained_project, tmp_path
):
    """As in a fresh clone whose outputs DVC restored from its cache: the model, no store."""
    empty = tmp_path / "empty.db"
    before = (trained_project.root / "metrics" / "evaluate.json").read_bytes()
    for command in (["serve", "--port", "5999"], ["evaluate"]):
        result = run_cli(trained_project.root, empty, *command)
        assert result.returncode == RunNotFoundError.exit_code, result.stderr
        (error,) = [line for line in result.stderr.splitlines() if line.startswith("torchtrack")]  # one line
        assert "Traceback" not in result.stderr, result.stderr
        assert f"`{RELOG}`" in error and "models/model.pt" in error
    assert (trained_project.root / "metrics" / "evaluate.json").read_bytes() == before  # nothing rewritten
    rows = tmp_path / "rows.csv"
    trained_project.raw_rows(5).to_csv(rows, index=False)
    predicted = run_cli(
        trained_project.root, empty, "predict", "--input", str(rows), "--output", str(tmp_path / "p.csv")
    )
    assert predicted.returncode == 0, predicted.stderr  # the checkpoint is all that predict needs
    compared = run_cli(trained_project.root, empty, "compare")
    assert compared.returncode == 2 and f"`{RELOG}`" in compared.stderr, compared.stderr
