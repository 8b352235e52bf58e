"""A copy of the repository for end-to-end tests: made as a fresh clone would be, driven with
`dvc`, its params changed, its stages run as real `python -m torchtrack` processes that can be
signalled mid-way, its MLflow store read back."""

from __future__ import annotations

import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import yaml
from mlflow import MlflowClient
from mlflow.entities import Run

from helpers import isolated_env

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "test",
    "GIT_AUTHOR_EMAIL": "test@example.invalid",
    "GIT_COMMITTER_NAME": "test",
    "GIT_COMMITTER_EMAIL": "test@example.invalid",
}


def copy_repo(dest: Path) -> Path:
    """What a fresh clone would hold (tracked and unignored files), committed in a new git repo."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for name in filter(None, (n.decode() for n in listed)):
        if (ROOT / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, dest / name)
    for command in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "copy"]):
        subprocess.run(command, cwd=dest, env=pipeline_env(dest), check=True)
    return dest


def copy_project(project: Path, dest: Path) -> Path:
    """`project` (a copy that has run) copied whole to `dest`, as if it had run there: the
    absolute paths its MLflow store records (artifact locations, dataset sources) moved along."""
    shutil.copytree(project, dest, symlinks=True)
    if (dest / "mlflow.db").is_file():
        relocate_store(dest / "mlflow.db", f"{project.resolve()}/", f"{dest.resolve()}/")
    return dest


def relocate_store(db: Path, old: str, new: str) -> None:
    """Replace the folder `old` by `new` in every text value of the SQLite store `db`."""
    import sqlite3

    with sqlite3.connect(db) as connection:
        tables = [row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        for table in tables:
            for _, column, kind, *_ in connection.execute(f'PRAGMA table_info("{table}")').fetchall():
                if any(text in kind.upper() for text in ("CHAR", "TEXT", "CLOB")):
                    moved = f'"{column}" = replace("{column}", ?, ?) WHERE instr("{column}", ?)'
                    connection.execute(f'UPDATE "{table}" SET {moved}', (old, new, old))
    connection.close()


def pipeline_env(repo: Path) -> dict[str, str]:
    """The venv first on PATH, the copy's own sources importable, no store override."""
    env = isolated_env()
    env.update(GIT_IDENTITY, PATH=f"{BIN}{os.pathsep}{env['PATH']}", PYTHONPATH=str(repo / "src"))
    return env


def dvc(repo: Path, *args: str, stderr: bool = False) -> str:
    """What `dvc *args` printed on stdout (and stderr, interleaved, with `stderr`); it must succeed."""
    result = subprocess.run(
        [str(BIN / "dvc"), *args],
        cwd=repo,
        env=pipeline_env(repo),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT if stderr else subprocess.PIPE,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, f"dvc {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def stages_run(output: str) -> list[str]:
    return [line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage")]


LIMIT_S = 300  # no stage in these tests runs longer; a hung one is killed and the test fails


def update_params(repo: Path, **sections: dict) -> None:
    """Change some keys of `repo`'s params.yaml, section by section."""
    path = repo / "params.yaml"
    params = yaml.safe_load(path.read_text())
    for section, values in sections.items():
        params[section].update(values)
    path.write_text(yaml.safe_dump(params, sort_keys=False))


def store(repo: Path) -> MlflowClient:
    """A client for `repo`'s default MLflow store."""
    return MlflowClient(f"sqlite:///{repo / 'mlflow.db'}")


def runs_of_process(client: MlflowClient, pid: int, experiment: str = "torchtrack") -> dict[str, Run]:
    """The runs a torchtrack process started, by kind: "model" and/or "stage"."""
    experiment_id = client.get_experiment_by_name(experiment).experiment_id
    runs = client.search_runs([experiment_id], f"tags.`torchtrack.pid` = '{pid}'")
    return {run.data.tags["torchtrack.kind"]: run for run in runs}


def temporary_files(repo: Path) -> list[Path]:
    """write_atomic's temporary files anywhere in `repo` (none after a clean or interrupted stage)."""
    return [path for path in repo.rglob(".*.tmp") if ".git" not in path.parts and ".dvc" not in path.parts]


class StageProcess:
    """`python -m torchtrack <stage>` in `repo`, its stdout read line by line as it comes."""

    def __init__(self, repo: Path, stage: str, env: dict[str, str] | None = None):
        self.process = subprocess.Popen(
            [sys.executable, "-m", "torchtrack", stage],
            cwd=repo,
            env=env or pipeline_env(repo),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.stdout: list[str] = []  # every line so far
        self.stderr_lines: list[str] = []
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._readers = [
            threading.Thread(target=self._read_stdout, daemon=True),
            threading.Thread(target=lambda: self.stderr_lines.extend(self.process.stderr), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _read_stdout(self) -> None:
        for line in self.process.stdout:
            self.stdout.append(line)
            self._lines.put(line)
        self._lines.put(None)

    def wait_for_line(self, prefix: str) -> str:
        """Block until the process prints a line starting with `prefix`; return it."""
        deadline = time.monotonic() + LIMIT_S
        while True:
            line = self._lines.get(timeout=max(deadline - time.monotonic(), 0.1))
            if line is None:
                self.wait()
                raise AssertionError(f"exited before printing {prefix!r}:\n{self.stderr}")
            if line.startswith(prefix):
                return line

    def stop(self, signum: int = signal.SIGTERM) -> int:
        """Send `signum`, wait for the process to end, return its exit code."""
        self.process.send_signal(signum)
        return self.wait()

    def wait(self) -> int:
        """Wait for the process to end and its output to be read; return its exit code."""
        try:
            self.process.wait(timeout=LIMIT_S)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
        for reader in self._readers:
            reader.join(timeout=30)
        return self.process.returncode

    @property
    def stderr(self) -> str:
        """What the process wrote to stderr (all of it once `wait` has returned)."""
        return "".join(self.stderr_lines)
