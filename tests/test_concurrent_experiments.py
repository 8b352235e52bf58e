"""Concurrent experiments: four experiments queued with `dvc exp run --queue -S ...` and run by
`dvc queue start -j 2` all complete, and all four land in the default MLflow store (created by
the first of them) with their params and metrics: no "database is locked", nothing lost."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import pytest

from pipeline_copy import BIN, copy_repo, dvc, pipeline_env, store, update_params

RATES = ("0.005", "0.01", "0.02", "0.04")


def test_processes_opening_one_new_store_at_once_all_succeed(tmp_path):
    """MLflow creates a new SQLite store's tables with no lock across processes; open_store has one."""
    go = tmp_path / "go"
    child = textwrap.dedent(
        f"""
        import time
        from pathlib import Path
        import mlflow.store.tracking.sqlalchemy_store
        from torchtrack.tracking.backend.store import open_store
        print("ready", flush=True)
        while not Path({str(go)!r}).exists():
            time.sleep(0.005)
        open_store({f"sqlite:///{tmp_path / 'mlflow.db'}"!r})
        """
    )
    children = [
        subprocess.Popen(
            [sys.executable, "-c", child], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(3)
    ]
    assert [c.stdout.readline() for c in children] == ["ready\n"] * 3
    go.touch()
    failures = [c.communicate(timeout=120)[1] for c in children if c.wait(timeout=120) != 0]
    assert failures == []


def queue_tasks(repo) -> dict[str, str]:
    """`dvc queue status` as experiment name -> status."""
    lines = dvc(repo, "queue", "status").splitlines()
    rows = lines[1 : lines.index("")] if "" in lines else lines[1:]
    return {row.split()[1]: row.split()[-1] for row in rows if row.strip()}


@pytest.mark.slow
@pytest.mark.full
def test_four_queued_experiments_on_two_workers_all_land_in_one_store(tmp_path):
    repo = copy_repo(tmp_path)
    update_params(repo, data={"n_samples": 2000}, train={"epochs": 2})
    subprocess.run(["git", "commit", "-qam", "small data"], cwd=repo, env=pipeline_env(repo), check=True)
    assert not (repo / "mlflow.db").exists()
    for lr in RATES:
        dvc(repo, "exp", "run", "--queue", "-S", f"train.lr={lr}")
    try:
        dvc(repo, "queue", "start", "-j", "2")
        deadline = time.monotonic() + 600
        while (tasks := queue_tasks(repo)) and {"Queued", "Running"} & set(tasks.values()):
            assert time.monotonic() < deadline, tasks
            time.sleep(3)
    finally:
        subprocess.run(
            [str(BIN / "dvc"), "queue", "stop"], cwd=repo, env=pipeline_env(repo), capture_output=True
        )
    failed = {name: dvc(repo, "queue", "logs", name) for name, status in tasks.items() if status != "Success"}
    assert len(tasks) == 4 and not failed, failed

    client = store(repo)
    experiment = client.get_experiment_by_name("torchtrack")
    model_runs = client.search_runs([experiment.experiment_id], "tags.`torchtrack.kind` = 'model'")
    assert sorted(run.data.params["train.lr"] for run in model_runs) == sorted(RATES)
    assert {run.info.run_name for run in model_runs} == set(tasks)  # named after the experiments
    for run in model_runs:
        assert {"train_loss", "val_loss", "test_mse", "test_r2"} <= set(run.data.metrics), run.info.run_name
    versions = client.search_model_versions("name = 'torchtrack'")  # registered two at a time
    assert sorted(v.run_id for v in versions) == sorted(run.info.run_id for run in model_runs)
    every_experiment = [e.experiment_id for e in client.search_experiments()]
    assert {run.info.status for run in client.search_runs(every_experiment)} == {"FINISHED"}
