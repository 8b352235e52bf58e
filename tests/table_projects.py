"""pytest plugin: `table_project(name)`, a copy of the repository run through `dvc repro` on
one of real_tables.py's tables with only data.source, data.path and data.target set, as a new
user would. Each is built once per session, with its own MLflow store.

Load it with `pytest_plugins = ["table_projects"]`.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from pipeline_copy import BIN, LIMIT_S, copy_repo, pipeline_env, update_params
from real_tables import write_table


@dataclass(frozen=True)
class TableProject:
    """A repository that has trained on one table."""

    root: Path
    table: Path
    target: str
    output: str  # what `dvc repro` printed, stderr included

    def json(self, relative: str) -> dict:
        return json.loads((self.root / relative).read_text())


@pytest.fixture(scope="session")
def table_project(tmp_path_factory) -> Callable[[str], TableProject]:
    made: dict[str, TableProject] = {}

    def project(name: str) -> TableProject:
        if name not in made:
            root = copy_repo(tmp_path_factory.mktemp(name))
            table, target = write_table(name, root / "data" / "raw")
            relative = str(table.relative_to(root))
            update_params(root, data={"source": "csv", "path": relative, "target": target})
            result = subprocess.run(
                [str(BIN / "dvc"), "repro"], cwd=root, env=pipeline_env(root), capture_output=True, text=True,
                timeout=3 * LIMIT_S,
            )  # fmt: skip
            assert result.returncode == 0, f"dvc repro failed:\n{result.stdout}\n{result.stderr}"
            made[name] = TableProject(root, table, target, result.stdout + result.stderr)
        return made[name]

    return project
