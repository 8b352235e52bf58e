"""The recipe tags: DVC's own hash of a folder, the commit, and what makes a work tree dirty."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from pipeline_copy import BIN, GIT_IDENTITY
from torchtrack.tracking.hashes import directory_md5
from torchtrack.tracking.recipe import (
    CODE_TAG,
    COMMIT_TAG,
    DIRTY_TAG,
    EXP_BASELINE_TAG,
    EXP_NAME_TAG,
    NOTE_TAG,
    recipe_tags,
)

DVC_YAML = {
    "stages": {
        "train": {
            "cmd": "true",
            "outs": ["models/model.pt"],
            "metrics": [{"metrics/train.json": {"cache": False}}],
        }
    }
}


def run(cwd: Path, *command: str) -> str:
    env = {"PATH": f"{BIN}:/usr/bin:/bin", "HOME": str(cwd), **GIT_IDENTITY}
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, check=True).stdout


def test_directory_md5_is_the_hash_dvc_records(tmp_path):
    data = tmp_path / "data"
    (data / "nested").mkdir(parents=True)
    (data / "b.parquet").write_bytes(bytes(range(256)) * 10)
    (data / "a.json").write_text('{"mean": [1.0]}\r\n')  # DVC 3 hashes bytes as they are, no dos2unix
    (data / "nested" / "c.txt").write_text("c")
    run(tmp_path, str(BIN / "dvc"), "init", "--no-scm", "-q")
    run(tmp_path, str(BIN / "dvc"), "add", "-q", "data")
    recorded = yaml.safe_load((tmp_path / "data.dvc").read_text())["outs"][0]["md5"]
    assert directory_md5(data) == recorded
    (data / "nested" / "c.txt").write_text("changed")
    assert directory_md5(data) != recorded


@pytest.fixture
def repo(tmp_path, monkeypatch):
    """A committed git work tree with a dvc.yaml, params.yaml, dvc.lock and some code."""
    for name in ("DVC_EXP_NAME", "DVC_EXP_BASELINE_REV"):
        monkeypatch.delenv(name, raising=False)
    files = {
        "dvc.yaml": yaml.safe_dump(DVC_YAML),
        "params.yaml": "seed: 1\n",
        "dvc.lock": "schema: '2.0'\n",
        "src/pkg/train.py": "LR = 0.1\n",
        "metrics/train.json": "{}\n",
        "models/.gitignore": "/model.pt\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    for command in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "recipe"]):
        run(tmp_path, *command)
    return tmp_path


def test_a_clean_tree_names_its_commit_and_code(repo):
    tags = recipe_tags(repo)
    assert tags[COMMIT_TAG] == run(repo, "git", "rev-parse", "HEAD").strip()
    assert tags[CODE_TAG] == run(repo, "git", "rev-parse", "HEAD:src").strip()
    assert tags[DIRTY_TAG] == "false" and NOTE_TAG not in tags


def test_what_the_pipeline_writes_or_the_run_records_does_not_make_it_dirty(repo):
    (repo / "params.yaml").write_text("seed: 2\n")  # logged in full as the run's params
    (repo / "dvc.lock").write_text("schema: '2.0'\nstages: {}\n")  # DVC writes it
    (repo / "metrics" / "train.json").write_text('{"loss": 1}\n')  # a stage output in dvc.yaml
    (repo / "models" / ".gitignore").write_text("/model.pt\n/other.pt\n")  # DVC writes these too
    assert recipe_tags(repo)[DIRTY_TAG] == "false"


@pytest.mark.parametrize("change", ["edit", "untracked"])
def test_a_code_change_makes_it_dirty_and_the_note_says_so(repo, change):
    if change == "edit":
        (repo / "src" / "pkg" / "train.py").write_text("LR = 0.2\n")
        changed = "src/pkg/train.py"
    else:
        (repo / "src" / "pkg" / "new.py").write_text("")
        changed = "src/pkg/new.py"
    tags = recipe_tags(repo)
    assert tags[DIRTY_TAG] == "true"
    assert changed in tags[NOTE_TAG] and "Made from a dirty work tree" in tags[NOTE_TAG]


def test_a_dvc_experiment_names_itself_and_its_baseline(repo, monkeypatch):
    monkeypatch.setenv("DVC_EXP_NAME", "brave-lr")
    monkeypatch.setenv("DVC_EXP_BASELINE_REV", "0" * 40)
    tags = recipe_tags(repo)
    assert (tags[EXP_NAME_TAG], tags[EXP_BASELINE_TAG]) == ("brave-lr", "0" * 40)


def test_outside_git_there_is_no_commit_to_claim(tmp_path):
    tags = recipe_tags(tmp_path)
    assert COMMIT_TAG not in tags and DIRTY_TAG not in tags
