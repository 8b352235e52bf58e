"""The package's layout: no stage imports another, the tools that use a trained model load no
training code, and nothing reaches into MLflow's private API."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

SOURCES = Path(__file__).resolve().parents[1] / "src" / "torchtrack"


def imported_names(path: Path) -> set[str]:
    """The module names every import statement in `path` names (`from a import b`: a and a.b)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    return names


@pytest.mark.parametrize("stage", sorted(p.stem for p in (SOURCES / "stages").glob("[!_]*.py")))
def test_no_stage_imports_another_stage(stage):
    others = {f"torchtrack.stages.{p.stem}" for p in (SOURCES / "stages").glob("[!_]*.py")} - {
        f"torchtrack.stages.{stage}"
    }
    assert imported_names(SOURCES / "stages" / f"{stage}.py") & others == set()


def modules_loaded_by(module: str) -> list[str]:
    """Every module that importing `module` loads, as `python -X importtime` reports them."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", f"import {module}"],
        capture_output=True,
        text=True,
        check=True,
    )
    return [
        line.rsplit("|", 1)[1].strip()
        for line in result.stderr.splitlines()
        if line.startswith("import time:")
    ]


@pytest.mark.parametrize("module", ["torchtrack.serve", "torchtrack.predict", "torchtrack.compare"])
def test_tools_that_use_a_trained_model_load_no_training_code(module):
    loaded = modules_loaded_by(module)
    assert module in loaded  # the report is read right
    assert [name for name in loaded if name.startswith(("torchtrack.training", "torchtrack.stages"))] == []


def test_prepare_loads_neither_torch_nor_mlflow():
    """Over a second of CPU each, for a stage that trains nothing (its store calls go through the
    store daemon, its TensorBoard events through TensorBoard's own writer)."""
    loaded = modules_loaded_by("torchtrack.stages.prepare")
    assert "torchtrack.stages.prepare" in loaded
    assert [name for name in loaded if name.split(".")[0] in ("torch", "mlflow")] == []


def test_the_tensorboard_writer_loads_no_remote_file_layer_and_leaves_it_importable():
    """TensorBoard's file layer imports boto3 and fsspec for remote log folders (a fifth of a second
    per stage); a stage writes to a local folder, and its MLflow store may still need boto3 after."""
    from torchtrack.tracking.event_writer import REMOTE_FILE_MODULES

    remote = set(REMOTE_FILE_MODULES)
    probe = f"import sys, torchtrack.tracking.event_writer; print(sorted({remote!r} & set(sys.modules)))"
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert loaded.split() == ["[]"]
    importable = "import torchtrack.tracking.event_writer, boto3, fsspec"
    assert subprocess.run([sys.executable, "-c", importable], capture_output=True).returncode == 0


def test_no_private_mlflow_api():
    """`mlflow.x._private` changes without notice between MLflow releases."""
    private = re.compile(r"mlflow.*\._")
    found = [
        f"{path.relative_to(SOURCES)}:{number}: {line.strip()}"
        for path in sorted(SOURCES.rglob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if private.search(line)
    ]
    assert found == []


def test_the_tracking_layer_neither_unpickles_nor_changes_the_processs_environment_or_folder():
    """What comes off the store daemon's socket is plain JSON (wire.py), and a call carries what it
    needs: nothing in tracking/ imports pickle, sets os.environ or changes the working folder."""
    found = []
    for path in sorted((SOURCES / "tracking").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            where = f"{path.relative_to(SOURCES)}:{getattr(node, 'lineno', 0)}"
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [alias.name for alias in node.names] + [getattr(node, "module", None) or ""]
                if any(name.split(".")[0] in ("pickle", "cPickle", "dill", "cloudpickle") for name in names):
                    found.append(f"{where}: imports pickle")
            elif isinstance(node, (ast.Assign, ast.AugAssign, ast.Delete)):
                targets = node.targets if isinstance(node, (ast.Assign, ast.Delete)) else [node.target]
                if any(isinstance(t, ast.Subscript) and "environ" in ast.unparse(t.value) for t in targets):
                    found.append(f"{where}: sets os.environ")
            elif isinstance(node, ast.Call):
                called = ast.unparse(node.func)
                mutators = ("update", "clear", "pop", "popitem", "setdefault", "__setitem__", "__delitem__")
                if called.endswith(("putenv", "unsetenv", "chdir", "fchdir")) or any(
                    called.endswith(f"environ.{name}") for name in mutators
                ):
                    found.append(f"{where}: calls {called}")
    assert found == []
