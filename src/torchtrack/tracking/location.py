"""Where tracking records go: the repository, the MLflow tracking URI, the git commit.

Plain paths and strings, no MLflow: the stage side (tracker.py, client.py) and the MLflow side
(backend/) both read them.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

from torchtrack.tracking.private_dir import locked, private_dir

STORE_FILE = "mlflow.db"  # default SQLite store at the repository root
ARTIFACT_DIR = "mlartifacts"  # default artifact root beside it


def repo_root() -> Path:
    """The repository the pipeline belongs to.

    DVC sets DVC_ROOT to the parent repo even when a queued experiment runs in a temporary
    copy, so every run lands in the same store; otherwise the nearest folder holding dvc.yaml.
    """
    if os.environ.get("DVC_ROOT"):
        return Path(os.environ["DVC_ROOT"]).resolve()
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if (folder / "dvc.yaml").is_file():
            return folder
    return here


def tracking_uri() -> str:
    """MLFLOW_TRACKING_URI if set, else the SQLite store at the repository root."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{repo_root() / STORE_FILE}"


def artifact_location(uri: str) -> str | None:
    """Where a new experiment of the store `uri` keeps its artifacts: beside a SQLite store's file
    (ARTIFACT_DIR); None, the server's own choice, for any other store.

    Named here, not left to MLflow, whose default for SQLite (`./mlruns`) depends on the folder
    the process opening the store runs in.
    """
    if not uri.startswith("sqlite:///"):
        return None
    return (Path(uri.removeprefix("sqlite:///")).resolve().parent / ARTIFACT_DIR).as_uri()


def git_commit(root: Path) -> str | None:
    """HEAD's commit hash, or None outside a git work tree."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def sqlite_creation_lock(uri: str) -> AbstractContextManager:
    """A lock across processes on the SQLite database `uri` names (a no-op for other URIs).

    SQLAlchemy-based stores (MLflow's, Optuna's) create a new database's tables without one,
    so two processes opening the same new file at once fail ("duplicate column name", "table
    studies already exists"); opened under this lock, the second finds the tables made.
    """
    if not uri.startswith("sqlite:///"):
        return nullcontext()
    database = Path(uri.removeprefix("sqlite:///")).resolve()
    return locked(private_dir() / f"store-{hashlib.sha256(str(database).encode()).hexdigest()[:16]}.lock")
