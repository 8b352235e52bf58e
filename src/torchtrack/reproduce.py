"""`torchtrack reproduce RUN_ID`: regenerate a model run's model from its recipe, compare the bytes.

1. Read the run's recipe (tracking/recipe.py tags). A run made from a dirty work tree, or outside git,
   has no commit that holds its code: it is refused with the reason.
2. Clone the repository into a temporary folder (`git clone --shared`, so nothing is copied
   but the work tree) at the run's DVC experiment commit when that ref still exists, else
   at its commit, and write the run's params into that clone's params.yaml.
3. Run `dvc repro --force` there, with the clone's own sources first on PYTHONPATH and a
   throwaway MLflow store, so the reproduction neither uses the current code nor adds runs
   (or registry versions) to the real store.
4. Compare the new models/model.pt's md5 with the one the run recorded. When they differ, say
   which of params, code, data and platform differ between the run and the reproduction.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torchtrack.errors import InputError, PipelineError
from torchtrack.tracking.backend.store import open_store
from torchtrack.tracking.hashes import MODEL_TAG, PREPARED_TAG, directory_md5, file_md5
from torchtrack.tracking.location import repo_root, tracking_uri
from torchtrack.tracking.recipe import (
    CODE_TAG,
    COMMIT_TAG,
    DIRTY_TAG,
    EXP_BASELINE_TAG,
    EXP_NAME_TAG,
    PLATFORM_TAG,
    code_tree,
    platform_description,
)

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run

MODEL_FILE = Path("models/model.pt")
PREPARED_DIR = Path("data/prepared")
EXPERIMENT_REFS = "refs/exps"  # where DVC keeps experiment commits: refs/exps/<ba>/<seline>/<name>
REPRO_TIMEOUT_S = 3600
ISOLATED = ("DVC_ROOT", "DVC_EXP_NAME", "DVC_EXP_BASELINE_REV", "MLFLOW_TRACKING_URI", "MLFLOW_RUN_ID")


@dataclass
class Reproduction:
    """A reproduction's outcome: the model hashes and, when they differ, what else differed."""

    run_id: str
    rev: str  # the commit it was regenerated from
    recorded: str  # the model md5 the run recorded
    regenerated: str
    differences: list[str] = field(default_factory=list)

    @property
    def identical(self) -> bool:
        """Whether the regenerated models/model.pt has the recorded bytes."""
        return self.recorded == self.regenerated

    def __str__(self) -> str:
        if self.identical:
            return (
                f"reproduced: model.pt identical (md5 {self.recorded}), "
                f"run {self.run_id} from commit {self.rev[:12]}"
            )
        lines = [
            f"not reproduced: model.pt differs for run {self.run_id} from commit {self.rev[:12]} "
            f"(recorded md5 {self.recorded}, regenerated {self.regenerated})"
        ]
        lines += [f"  {difference}" for difference in self.differences]
        return "\n".join(lines)


def model_run(client: MlflowClient, run_id: str) -> Run:
    """The model run `run_id` names, or the model run a train/evaluate run is nested under."""
    from mlflow.exceptions import MlflowException

    try:
        run = client.get_run(run_id)
    except MlflowException:
        raise InputError(f"no MLflow run {run_id!r} in {tracking_uri()}") from None
    parent = run.data.tags.get("mlflow.parentRunId")
    if run.data.tags.get("torchtrack.kind") != "model" and parent:
        run = client.get_run(parent)
    if run.data.tags.get("torchtrack.kind") != "model":
        raise InputError(f"run {run_id} is not a model run (a prepare run? pick a model run's id)")
    return run


def check_reproducible(run: Run) -> str:
    """The run's commit; InputError saying why when the run cannot be regenerated from one."""
    tags, run_id = run.data.tags, run.info.run_id
    if MODEL_TAG not in tags:
        raise InputError(
            f"run {run_id} recorded no model hash (train did not finish, or it predates reproduce)"
        )
    if COMMIT_TAG not in tags or DIRTY_TAG not in tags:
        raise InputError(f"run {run_id} recorded no git commit: it was not made in a git work tree")
    if tags[DIRTY_TAG] == "true":
        raise InputError(
            f"run {run_id} was made from a dirty work tree (uncommitted changes; see its Description), "
            f"so commit {tags[COMMIT_TAG][:12]} does not hold its code: commit the changes and train again"
        )
    return tags[COMMIT_TAG]


def git(repo: Path, *args: str) -> str:
    """`git args` in `repo`; PipelineError with git's message when it fails."""
    result = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        raise PipelineError(f"git {' '.join(args)} failed: {result.stderr.strip().splitlines()[-1:]}")
    return result.stdout.strip()


def source_rev(repo: Path, run: Run, commit: str) -> str:
    """The DVC experiment's commit when the run was one and its ref still exists, else `commit`."""
    tags = run.data.tags
    name, baseline = tags.get(EXP_NAME_TAG), tags.get(EXP_BASELINE_TAG)
    if name and baseline:
        ref = f"{EXPERIMENT_REFS}/{baseline[:2]}/{baseline[2:]}/{name}"
        found = subprocess.run(
            ["git", "rev-parse", "--verify", "--quiet", ref], cwd=repo, capture_output=True, text=True
        )
        if found.returncode == 0:
            return found.stdout.strip()
    if subprocess.run(
        ["git", "cat-file", "-e", f"{commit}^{{commit}}"], cwd=repo, capture_output=True
    ).returncode:
        raise InputError(f"commit {commit[:12]} of run {run.info.run_id} is not in the repository at {repo}")
    return commit


def param_value(text: str) -> Any:
    """A param as MLflow stored it (str(value)) back as the YAML value it was: 0.01, None, (64, 64), adam."""
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text
    return list(value) if isinstance(value, tuple) else value


def write_params(path: Path, params: dict[str, str]) -> None:
    """Set the run's dotted params (section.key, or a top-level key) in the params file at `path`."""
    import yaml

    values = yaml.safe_load(path.read_text()) or {}
    for dotted, text in params.items():
        section, _, key = dotted.rpartition(".")
        (values.setdefault(section, {}) if section else values)[key] = param_value(text)
    path.write_text(yaml.safe_dump(values, sort_keys=False))


def repro_environment(clone: Path, store: str) -> dict[str, str]:
    """os.environ for `dvc repro` in `clone`: this Python's bin first, the clone's sources first,
    a throwaway store, and none of the parent run's DVC experiment variables."""
    env = {name: value for name, value in os.environ.items() if name not in ISOLATED}
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["PYTHONPATH"] = os.pathsep.join([str(clone / "src"), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["MLFLOW_TRACKING_URI"] = store
    return env


def differences(run: Run, clone: Path, rev: str, new_run: Run | None) -> list[str]:
    """What differs between the run and its reproduction: params, code, data, platform."""
    tags, found = run.data.tags, []
    if new_run is not None:
        changed = sorted(
            key
            for key in set(run.data.params) | set(new_run.data.params)
            if run.data.params.get(key) != new_run.data.params.get(key)
        )
        if changed:
            shown = ", ".join(
                f"{k}: {run.data.params.get(k)} -> {new_run.data.params.get(k)}" for k in changed
            )
            found.append(f"params differ: {shown}")
    tree = code_tree(clone, rev)
    if tags.get(CODE_TAG) and tree != tags[CODE_TAG]:
        found.append(
            f"code differs: src/ at {rev[:12]} is git tree {tree}, the run's code was tree {tags[CODE_TAG]}"
        )
    data = directory_md5(clone / PREPARED_DIR) if (clone / PREPARED_DIR).is_dir() else None
    if tags.get(PREPARED_TAG) and data != tags[PREPARED_TAG]:
        found.append(f"data differs: data/prepared is {data}, the run's was {tags[PREPARED_TAG]}")
    here = platform_description()
    if tags.get(PLATFORM_TAG) and here != tags[PLATFORM_TAG]:
        found.append(f"platform differs: {here} here, the run had {tags[PLATFORM_TAG]}")
    if new_run is not None and tags.get("device") != new_run.data.tags.get("device"):
        found.append(
            f"device differs: {new_run.data.tags.get('device')} here, the run had {tags.get('device')}"
        )
    if not found:
        found.append("params, code, data and platform match: training is not bit-for-bit deterministic here")
    return found


def reproduce(run_id: str, keep: Path | None = None) -> Reproduction:
    """Regenerate run `run_id`'s model in a temporary clone and compare it with the recorded hash.

    `keep`: a folder to make the clone in and leave behind (for a look at what differs).
    """
    client = open_store(tracking_uri())
    run = model_run(client, run_id)
    commit = check_reproducible(run)
    repo = repo_root()
    rev = source_rev(repo, run, commit)
    work = Path(keep) if keep else Path(tempfile.mkdtemp(prefix="torchtrack-reproduce-"))
    try:
        clone = work / "repo"
        git(work, "clone", "--quiet", "--shared", "--no-checkout", str(repo), str(clone))
        git(clone, "checkout", "--quiet", "--detach", rev)
        write_params(clone / "params.yaml", run.data.params)
        store = f"sqlite:///{work / 'mlflow.db'}"
        print(f"torchtrack reproduce: dvc repro in {clone} at {rev[:12]} ...", file=sys.stderr, flush=True)
        result = subprocess.run(
            [str(Path(sys.executable).parent / "dvc"), "repro", "--force"],
            cwd=clone,
            env=repro_environment(clone, store),
            capture_output=True,
            text=True,
            timeout=REPRO_TIMEOUT_S,
        )
        if result.returncode != 0 or not (clone / MODEL_FILE).is_file():
            tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-5:])
            raise PipelineError(f"dvc repro failed in the reproduction at {rev[:12]}:\n{tail}")
        reproduction = Reproduction(
            run.info.run_id, rev, run.data.tags[MODEL_TAG], file_md5(clone / MODEL_FILE)
        )
        if not reproduction.identical:
            reproduction.differences = differences(run, clone, rev, newest_model_run(open_store(store)))
        return reproduction
    finally:
        if keep is None:
            shutil.rmtree(work, ignore_errors=True)


def newest_model_run(client: MlflowClient) -> Run | None:
    """The model run the reproduction logged to its throwaway store."""
    runs = client.search_runs(
        [e.experiment_id for e in client.search_experiments()],
        "tags.`torchtrack.kind` = 'model'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    return runs[0] if runs else None
