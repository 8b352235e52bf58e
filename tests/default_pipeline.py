"""pytest plugin: `default_pipeline`, a copy of the repository after one real `dvc repro` of the
default params, run once per session (every pytest-xdist worker shares it), and `prepared_60k`,
one with only prepare run on 60,000 rows; tests copy them (`copy_project`) and never change them.

Load it with `pytest_plugins = ["default_pipeline"]`. The run is the one a fresh clone's
`make run` makes (the pinned CPU kernels, no store override), so its dvc.lock is comparable with
the committed one; its output is in `repro_log(repo)`, beside the copy, not inside its tree.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import built_once
from pipeline_copy import copy_repo, dvc, update_params
from torchtrack.cpu_kernels import NATIVE_ENV


def repro_log(repo: Path) -> str:
    """What the session's default `dvc repro` printed, stdout and stderr."""
    return (repo.parent / "repro.log").read_text()


@pytest.fixture(scope="session")
def default_pipeline(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The repository copied as a fresh clone, after `dvc repro` on the default params."""

    def build(folder: Path) -> None:
        with pytest.MonkeyPatch.context() as patch:
            patch.delenv(NATIVE_ENV, raising=False)  # the pinned kernels, as a new user gets them
            repo = copy_repo(folder / "repo")
            (folder / "repro.log").write_text(dvc(repo, "repro", stderr=True))

    return built_once(tmp_path_factory, "default_pipeline", build) / "repo"


@pytest.fixture(scope="session")
def prepared_60k(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The repository copied as a fresh clone, with `dvc repro prepare` run on 60,000 rows: epochs
    long enough for a signal to land mid-training. Tests copy it and set their own train params."""

    def build(folder: Path) -> None:
        repo = copy_repo(folder / "repo")
        update_params(repo, data={"n_samples": 60000})
        dvc(repo, "repro", "prepare")

    return built_once(tmp_path_factory, "prepared_60k", build) / "repo"
