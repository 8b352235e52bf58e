"""From an MLflow run back to its data and code, end to end in a copy of the repository: the
datasets carry the hash dvc.lock records for data/prepared, the model run names its commit,
DVC experiment and output hashes, and `torchtrack reproduce` regenerates the model byte for
byte, or says what differs, or refuses a run from a dirty tree."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from mlflow import MlflowClient
from mlflow.entities import Run

from pipeline_copy import copy_repo, dvc, pipeline_env, store, update_params
from torchtrack.cli import main
from torchtrack.tracking.recipe import COMMIT_TAG, DIRTY_TAG, EXP_BASELINE_TAG, EXP_NAME_TAG, NOTE_TAG

pytestmark = pytest.mark.slow

# Two epochs leave a curve that the least-squares line would replace, whatever the training
# code: the trained weights are kept, so a change to that code shows in model.pt.
TINY = {
    "data": {"n_samples": 600, "n_features": 3},
    "train": {"epochs": 2, "batch_size": 64, "least_squares_line": False},
}


def lock_md5(repo: Path, stage: str, path: str) -> str:
    """The md5 dvc.lock records for output `path` of `stage`."""
    outs = yaml.safe_load((repo / "dvc.lock").read_text())["stages"][stage]["outs"]
    return next(out["md5"] for out in outs if out["path"] == path)


def newest_model_run(client: MlflowClient):
    experiment = client.get_experiment_by_name("torchtrack")
    (run,) = client.search_runs(
        [experiment.experiment_id],
        "tags.`torchtrack.kind` = 'model'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    return run


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=repo, env=pipeline_env(repo), capture_output=True, text=True, check=True
    ).stdout.strip()


@dataclass
class Project:
    """The repository copy, and each model run made in it with dvc.lock's data hash right after."""

    root: Path
    runs: dict[str, tuple[Run, str]]


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Project:
    """A copy of the repo with tiny params committed: one `dvc repro`, then two DVC experiments,
    one on the same data (another lr) and one on other data (fewer rows). Records each model
    run and what dvc.lock said right after it."""
    path = copy_repo(tmp_path_factory.mktemp("lineage"))
    update_params(path, **TINY)
    git(path, "commit", "-qam", "tiny params")
    client = store(path)
    runs = {}
    for name, command in (
        ("default", ["repro"]),
        ("same-data", ["exp", "run", "-n", "lr-exp", "-S", "train.lr=0.02"]),
        ("other-data", ["exp", "run", "-n", "less-data", "-S", "data.n_samples=500"]),
    ):
        dvc(path, *command)
        runs[name] = (newest_model_run(client), lock_md5(path, "prepare", "data/prepared"))
    return Project(path, runs)


def datasets(client: MlflowClient, run_id: str) -> dict[str, tuple[str, str, int]]:
    """context -> (name, digest, rows) of the run's dataset inputs."""
    import json

    run = client.get_run(run_id)
    return {
        {t.key: t.value for t in d.tags}["mlflow.data.context"]: (
            d.dataset.name,
            d.dataset.digest,
            json.loads(d.dataset.profile)["num_rows"],
        )
        for d in run.inputs.dataset_inputs
    }


def test_the_splits_are_datasets_whose_digest_is_dvc_locks_data_hash(project):
    repo = project.root
    client = store(repo)
    run, locked = project.runs["default"]
    inputs = datasets(client, run.info.run_id)
    assert set(inputs) == {"training", "validation", "testing"}
    assert {digest for _, digest, _ in inputs.values()} == {locked}
    assert sum(rows for _, _, rows in inputs.values()) == TINY["data"]["n_samples"]
    train_run = client.search_runs(
        [run.info.experiment_id],
        f"tags.`mlflow.parentRunId` = '{run.info.run_id}' AND tags.`dvc.stage` = 'train'",
    )[0]
    assert set(datasets(client, train_run.info.run_id)) == {"training", "validation"}


def test_same_data_same_digest_other_data_another(project):
    repo = project.root
    client = store(repo)
    digests = {
        name: {d for _, d, _ in datasets(client, run.info.run_id).values()}
        for name, (run, _) in project.runs.items()
    }
    locked = {name: {lock} for name, (_, lock) in project.runs.items()}
    assert digests["default"] == digests["same-data"] == locked["default"] == locked["same-data"]
    assert digests["other-data"] == locked["other-data"] != locked["default"]


def test_the_model_run_names_its_commit_experiment_and_output_hashes(project):
    repo = project.root
    run, _ = project.runs["default"]
    tags = run.data.tags
    head = git(repo, "rev-parse", "HEAD")
    assert tags[COMMIT_TAG] == head and tags[DIRTY_TAG] == "false" and NOTE_TAG not in tags
    experiment, _ = project.runs["same-data"]
    assert experiment.data.tags[EXP_NAME_TAG] == "lr-exp"
    assert experiment.data.tags[EXP_BASELINE_TAG] == head
    assert any(
        "-lr-exp-" in d.name for d in (repo / "runs" / "train").iterdir()
    )  # TensorBoard finds it by name
    last, _ = project.runs["other-data"]  # dvc.lock is the last experiment's
    assert last.data.tags["torchtrack.model_md5"] == lock_md5(repo, "train", "models/model.pt")
    assert last.data.tags["torchtrack.md5.metrics/train.json"] == lock_md5(
        repo, "train", "metrics/train.json"
    )
    assert last.data.tags["torchtrack.md5.metrics/evaluate.json"] == lock_md5(
        repo, "evaluate", "metrics/evaluate.json"
    )


def reproduce(repo: Path, run_id: str, monkeypatch, capsys) -> tuple[int, str, str]:
    monkeypatch.chdir(repo)
    for name in ("MLFLOW_TRACKING_URI", "DVC_ROOT", "DVC_EXP_NAME", "DVC_EXP_BASELINE_REV"):
        monkeypatch.delenv(name, raising=False)
    code = main(["reproduce", run_id])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("which", ["default", "same-data"])
def test_reproduce_regenerates_the_model_byte_for_byte(project, which, monkeypatch, capsys):
    repo = project.root
    run, _ = project.runs[which]
    code, out, err = reproduce(repo, run.info.run_id, monkeypatch, capsys)
    assert code == 0, out + err
    assert out.startswith(f"reproduced: model.pt identical (md5 {run.data.tags['torchtrack.model_md5']}), ")


def test_reproduce_a_run_whose_commit_changed_says_what_differs_and_exits_1(project, monkeypatch, capsys):
    repo = project.root
    run, _ = project.runs["other-data"]
    models = repo / "src" / "torchtrack" / "models.py"
    halved = "RegressionModel.forward = lambda self, x: 0.5 * self.activation(self.linear(x))"
    models.write_text(f"{models.read_text()}\n{halved}\n")
    git(repo, "commit", "-qam", "halve the linear model's output")
    client = store(repo)
    client.set_tag(run.info.run_id, COMMIT_TAG, git(repo, "rev-parse", "HEAD"))  # changed after the fact
    client.delete_tag(run.info.run_id, EXP_NAME_TAG)  # so the commit, not the experiment's ref, is used
    code, out, err = reproduce(repo, run.info.run_id, monkeypatch, capsys)
    assert code == 1, err
    lines = out.splitlines()
    assert lines[0].startswith(f"not reproduced: model.pt differs for run {run.info.run_id}")
    assert [line.split(":")[0].strip() for line in lines[1:]] == ["code differs"]


def test_reproduce_refuses_a_run_from_a_dirty_tree_with_the_reason(project, monkeypatch, capsys):
    repo = project.root
    scratch = repo / "src" / "torchtrack" / "scratch.py"
    scratch.write_text("# not committed\n")
    try:
        dvc(repo, "repro", "--force", "--single-item", "train")
    finally:
        scratch.unlink()
    run = newest_model_run(store(repo))
    assert run.data.tags[DIRTY_TAG] == "true"
    assert "src/torchtrack/scratch.py" in run.data.tags[NOTE_TAG]
    code, out, err = reproduce(repo, run.info.run_id, monkeypatch, capsys)
    assert code == 2 and out == ""
    assert err.splitlines() == [
        f"torchtrack reproduce: error: run {run.info.run_id} was made from a dirty work tree "
        f"(uncommitted changes; see its Description), so commit {run.data.tags[COMMIT_TAG][:12]} does not "
        "hold its code: commit the changes and train again"
    ]
