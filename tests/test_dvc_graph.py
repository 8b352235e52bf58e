"""dvc.yaml reruns exactly what changed: each stage depends on every torchtrack module whose
code shapes its outputs (derived from the stage's import graph), on the params that shape
them and no others, and names the files paths.py names."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

from torchtrack import paths
from torchtrack.config import Config
from torchtrack.stages.train import TRAINING_CODE, UNSHAPING_PARAMS

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ROOT / "src"
STAGES = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]

# Modules a stage imports whose code cannot change its outputs, so that no stage depends on
# them (editing one reruns nothing). Each entry says why; anything else a stage imports is a
# dependency of that stage. A package of WHOLE_PACKAGES covers every module in it.
CANNOT_CHANGE_OUTPUTS = {
    "torchtrack.tracking": "the tracking layer (TensorBoard, MLflow, the store daemon): records only",
    "torchtrack.baseline": "warns when the model is worse than least squares, and tags the run; records only",
    "torchtrack.environment": "variables MLflow reads, set as the store daemon starts; records only",
    "torchtrack.errors": "messages and exit codes of failures; a failed stage writes no output",
    "torchtrack.paths": "names the files; dvc.yaml names the same ones (test below)",
    "torchtrack.profiling": "times phases for `make bench`",
    "torchtrack.progress": "the progress bar on the terminal",
    "torchtrack.signals": "when Ctrl-C and SIGTERM take effect; an interrupted stage writes no output",
    "torchtrack.stages": "the stages' package: a docstring",
}
WHOLE_PACKAGES = {"torchtrack.tracking"}


def cannot_change_outputs(module: str) -> bool:
    """Whether `module` is one of CANNOT_CHANGE_OUTPUTS, or lies in one of WHOLE_PACKAGES."""
    return module in CANNOT_CHANGE_OUTPUTS or any(module.startswith(f"{name}.") for name in WHOLE_PACKAGES)


def module_file(module: str) -> Path:
    path = SOURCES / Path(*module.split("."))
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def with_packages(module: str) -> list[str]:
    """`module` and the packages Python runs first to import it: a.b.c -> a, a.b, a.b.c."""
    parts = module.split(".")
    return [".".join(parts[:end]) for end in range(1, len(parts) + 1)]


def torchtrack_imports(module: str) -> set[str]:
    """Every torchtrack module (and package) that importing `module` runs, directly or through
    others (any import statement, in functions too), read from the source without running it."""
    seen: set[str] = set()
    todo = with_packages(module)
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        for node in ast.walk(ast.parse(module_file(current).read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                # `from torchtrack import losses` imports a module; `from torchtrack.x import y` a name
                names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            else:
                continue
            for name in names:
                if name.split(".")[0] == "torchtrack" and module_file(name).is_file():
                    todo.extend(with_packages(name))
    return seen


def code_deps(stage: str) -> set[str]:
    """The torchtrack modules that are `stage`'s deps in dvc.yaml."""
    return {
        module_name(Path(dep).relative_to("src")) for dep in STAGES[stage]["deps"] if dep.startswith("src/")
    }


def module_name(path: Path) -> str:
    """torchtrack/data.py -> torchtrack.data; torchtrack/__init__.py -> torchtrack."""
    parts = path.with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@pytest.mark.parametrize("stage", list(STAGES))
def test_each_stage_depends_on_every_module_that_shapes_its_outputs(stage):
    imported = torchtrack_imports(f"torchtrack.stages.{stage}")
    assert {module for module in imported if not cannot_change_outputs(module)} == code_deps(stage), (
        "dvc.yaml must list exactly the modules that shape the outputs "
        "(add a module to the stage's deps, or to CANNOT_CHANGE_OUTPUTS with the reason)"
    )


def test_the_import_graph_sees_modules_imported_as_names_and_inside_functions():
    """The derivation itself: train reaches losses only through training, the store client only
    inside the tracker, and the package's __init__ (which pins the CPU kernels) because Python
    runs it first."""
    imported = torchtrack_imports("torchtrack.stages.train")
    assert {
        "torchtrack.losses",
        "torchtrack.tracking.client",
        "torchtrack",
        "torchtrack.cpu_kernels",
    } <= imported
    assert "torchtrack.stages.prepare" not in imported and "torchtrack.cli" not in imported


def test_every_module_allowed_to_be_no_dependency_exists():
    assert [name for name in CANNOT_CHANGE_OUTPUTS if not module_file(name).is_file()] == []


def test_trains_resume_fingerprint_covers_the_code_dvc_watches():
    fingerprinted = {module_name(path.relative_to(SOURCES)) for path in TRAINING_CODE}
    assert fingerprinted == code_deps("train")


def stage_params(stage: str) -> set[str]:
    """`stage`'s params in dvc.yaml as dotted keys, a whole section expanded to its keys."""
    every = Config().flat()
    keys = set()
    for entry in STAGES[stage].get("params", []):
        if entry == {"params.yaml": None}:  # the whole file
            keys |= set(every)
            continue
        section = {key for key in every if key == entry or key.startswith(f"{entry}.")}
        assert section, f"{stage}: params entry {entry!r} names no key of params.yaml"
        keys |= section
    return keys


def test_validate_depends_on_the_whole_params_file_and_writes_nothing():
    """A key no stage reads (a typo) makes validate stale, and so stops there; nothing that
    validate writes can make another stage stale."""
    assert STAGES["validate"]["params"] == [{"params.yaml": None}]
    assert not {"outs", "metrics", "plots"} & set(STAGES["validate"])


def test_no_stage_that_writes_depends_on_a_tracking_setting():
    """Where records go does not change what a stage makes."""
    for stage in set(STAGES) - {"validate"}:
        assert {key for key in stage_params(stage) if key.startswith("tracking.")} == set(), stage


def test_prepare_depends_on_the_seed_and_every_data_key():
    assert stage_params("prepare") == set(Config().flat("seed", "data"))


def test_train_depends_on_every_key_that_shapes_the_model():
    """All of seed, model and train but resume: a new train key cannot be forgotten."""
    assert UNSHAPING_PARAMS == ("train.resume",)
    assert stage_params("train") == set(Config().flat("seed", "model", "train")) - set(UNSHAPING_PARAMS)


def test_evaluate_depends_only_on_the_seed_that_samples_its_plot_rows():
    assert stage_params("evaluate") == {"seed"}


def declared_outputs(stage: str) -> set[Path]:
    entries = [entry for kind in ("outs", "metrics", "plots") for entry in STAGES[stage].get(kind, [])]
    return {Path(next(iter(entry)) if isinstance(entry, dict) else entry) for entry in entries}


@pytest.mark.parametrize("stage", list(STAGES))
def test_dvc_yaml_names_the_files_paths_py_names(stage):
    assert declared_outputs(stage) == set(paths.STAGE_OUTPUTS[stage])
    data_deps = {Path(dep) for dep in STAGES[stage]["deps"] if not dep.startswith("src/")}
    expected = set(paths.STAGE_INPUTS[stage]) | ({Path("${data.path}")} if stage == "prepare" else set())
    assert data_deps == expected
