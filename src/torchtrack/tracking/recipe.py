"""The recipe of a model run: what it was made from, as tags MLflow shows and `torchtrack
reproduce` reads back.

The git commit and whether the work tree was dirty (a tag, and a note in the run's
Description), the code tree, the DVC experiment and its baseline, the platform, and the
hashes DVC records in dvc.lock for the data it was trained on and the files it wrote.
"""

from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path

from torchtrack.tracking.hashes import file_md5
from torchtrack.tracking.location import git_commit

# Tags on the model run (the ones MLflow itself defines keep their mlflow.* names).
COMMIT_TAG = "mlflow.source.git.commit"
NOTE_TAG = "mlflow.note.content"  # the run's Description in the UI
DIRTY_TAG = "torchtrack.git_dirty"  # "true" / "false"
CODE_TAG = "torchtrack.code_tree"  # git tree hash of src/ at the commit
EXP_NAME_TAG = "dvc.exp_name"
EXP_BASELINE_TAG = "dvc.exp_baseline"
PLATFORM_TAG = "torchtrack.platform"
OUTPUT_TAG_PREFIX = "torchtrack.md5."  # + an output's path: its md5, as dvc.lock records it
CODE_DIR = "src"
# Not a sign of a dirty recipe: the params are recorded in full on the run, DVC writes dvc.lock
# and the .gitignore files beside its outputs, and the stages write dvc.yaml's outputs.
NOT_RECIPE = (":(exclude)params.yaml", ":(exclude)dvc.lock", ":(exclude,glob)**/.gitignore")  # git pathspecs


def output_tags(paths: list[Path]) -> dict[str, str]:
    """`torchtrack.md5.<path>` -> the file's md5, for each output that exists."""
    return {f"{OUTPUT_TAG_PREFIX}{Path(p).as_posix()}": file_md5(Path(p)) for p in paths if Path(p).is_file()}


def _git(root: Path, *args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=30, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout


def code_tree(root: Path, rev: str = "HEAD") -> str | None:
    """The git tree hash of src/ at `rev`: equal trees, equal code."""
    out = _git(root, "rev-parse", f"{rev}:{CODE_DIR}")
    return out.strip() if out else None


def pipeline_outputs(root: Path) -> list[str]:
    """Every path dvc.yaml declares as an output, metric or plot of a stage."""
    import yaml

    dvc_yaml = Path(root) / "dvc.yaml"
    if not dvc_yaml.is_file():
        return []
    stages = (yaml.safe_load(dvc_yaml.read_text()) or {}).get("stages", {})
    paths = []
    for stage in stages.values():
        for kind in ("outs", "metrics", "plots"):
            for entry in stage.get(kind, []):
                paths.append(next(iter(entry)) if isinstance(entry, dict) else entry)
    return paths


def dirty_paths(root: Path) -> list[str] | None:
    """Files that differ from the commit (changed, staged or untracked, not ignored), leaving out
    what the pipeline writes itself and what the run records in full; None outside git."""
    outputs = [f":(exclude){path}" for path in pipeline_outputs(root)]
    out = _git(root, "status", "--porcelain=v1", "--untracked-files=all", "--", ".", *NOT_RECIPE, *outputs)
    if out is None:
        return None
    return [line[3:] for line in out.splitlines() if line.strip()]


def platform_description() -> str:
    """OS, machine, Python and torch versions: what a bit-for-bit result may depend on."""
    try:
        torch_version = metadata.version("torch")
    except metadata.PackageNotFoundError:
        torch_version = "none"
    return (
        f"{platform.system()} {platform.machine()}, Python {platform.python_version()}, torch {torch_version}"
    )


def recipe_tags(root: Path) -> dict[str, str]:
    """The model run's recipe: commit, dirty flag (and a note saying so), DVC experiment, code, platform.

    `root` is the work tree the stage runs in (a queued DVC experiment runs in a copy whose
    HEAD is its baseline, with the experiment's params applied).
    """
    tags = {PLATFORM_TAG: platform_description()}
    commit = git_commit(root)
    if commit:
        tags[COMMIT_TAG] = commit
        tree = code_tree(root)
        if tree:
            tags[CODE_TAG] = tree
        dirty = dirty_paths(root) or []
        tags[DIRTY_TAG] = "true" if dirty else "false"
        if dirty:
            shown = ", ".join(dirty[:10]) + (f" and {len(dirty) - 10} more" if len(dirty) > 10 else "")
            tags[NOTE_TAG] = (
                f"**Made from a dirty work tree**: uncommitted changes to {shown} at commit {commit[:12]}. "
                "This run cannot be reproduced from its commit (`torchtrack reproduce` refuses it)."
            )
    if os.environ.get("DVC_EXP_NAME"):
        tags[EXP_NAME_TAG] = os.environ["DVC_EXP_NAME"]
    if os.environ.get("DVC_EXP_BASELINE_REV"):
        tags[EXP_BASELINE_TAG] = os.environ["DVC_EXP_BASELINE_REV"]
    return tags
