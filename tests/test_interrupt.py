"""Stopping training part-way, with real signals sent to a real `python -m torchtrack train`.

SIGINT or SIGTERM: the MLflow runs end KILLED, buffered metrics and TensorBoard events are
written, no model file is left, the exit code says which signal. SIGKILL: no output is left
half-written, only the last seconds of metrics are lost, and the next run marks the runs the
killed process left RUNNING as KILLED. Afterwards `dvc repro` runs cleanly. The Tracker
behaviour this rests on is tested first, in-process and fast.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time

import pytest
from mlflow import MlflowClient

from helpers import read_scalars
from pipeline_copy import (
    StageProcess,
    copy_project,
    dvc,
    runs_of_process,
    stages_run,
    store,
    temporary_files,
    update_params,
)
from torchtrack.config import TrackingConfig
from torchtrack.tracking.location import tracking_uri
from torchtrack.tracking.tracker import Tracker

pytest_plugins = ["default_pipeline"]

FLUSH_EVERY_SECONDS = 1
# A few seconds per epoch on a small CPU (well past FLUSH_EVERY_SECONDS), so a signal sent after
# epoch 1 lands mid-training and timed flushes have happened by then.
PARAMS = {
    "data": {"n_samples": 60000},
    "train": {"epochs": 3, "max_steps": 10**6, "batch_size": 8},  # 3 epochs, whatever the step budget
    "tracking": {"log_every_n_steps": 5, "flush_every_seconds": FLUSH_EVERY_SECONDS},
}


# -- the Tracker, in-process ---------------------------------------------------------------


def test_buffered_metrics_are_written_once_flush_every_seconds_has_passed(workdir):
    config = TrackingConfig(experiment="test", flush_every_n_metrics=1000, flush_every_seconds=0.5)
    client = MlflowClient(tracking_uri())
    with Tracker(config, "train", params={}, model_run="new") as tracker:
        tracker.log_metrics({"loss": 1.0}, 1)
        assert client.get_metric_history(tracker.run_id, "loss") == []  # buffered
        time.sleep(config.flush_every_seconds)
        tracker.log_metrics({"loss": 0.5}, 2)
        assert [m.step for m in client.get_metric_history(tracker.run_id, "loss")] == [1, 2]


def test_a_tracker_marks_runs_left_running_by_a_killed_process_killed(workdir, tracking_config):
    killed_child = textwrap.dedent(
        f"""
        import os, signal
        from torchtrack.config import TrackingConfig
        from torchtrack.tracking.tracker import Tracker
        tracker = Tracker(TrackingConfig(experiment={tracking_config.experiment!r}), "train",
                          params={{}}, model_run="new")
        print(tracker.model_run_id, tracker.run_id, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    child = subprocess.run([sys.executable, "-c", killed_child], capture_output=True, text=True)
    assert child.returncode == -signal.SIGKILL, child.stderr
    orphans = child.stdout.split()
    client = MlflowClient(tracking_uri())
    assert [client.get_run(run_id).info.status for run_id in orphans] == ["RUNNING", "RUNNING"]
    with Tracker(tracking_config, "train", params={}, model_run="new") as alive:
        with Tracker(tracking_config, "evaluate", params={}, model_run=alive.model_run_id) as second:
            assert client.get_run(alive.run_id).info.status == "RUNNING"  # its process lives: untouched
    assert [client.get_run(run_id).info.status for run_id in orphans] == ["KILLED", "KILLED"]
    assert client.get_run(second.run_id).info.status == "FINISHED"


def test_a_tracker_that_fails_while_starting_leaves_no_run_running(workdir, tracking_config):
    (workdir / tracking_config.tensorboard_dir).write_text("a file where the log folder should go")
    with pytest.raises(OSError):
        Tracker(tracking_config, "train", params={}, model_run="new")
    client = MlflowClient(tracking_uri())
    experiment = client.get_experiment_by_name(tracking_config.experiment)
    runs = client.search_runs([experiment.experiment_id])
    assert sorted(run.data.tags["torchtrack.kind"] for run in runs) == ["model", "stage"]
    assert {run.info.status for run in runs} == {"FAILED"}


# -- a real training process, signalled ------------------------------------------------------


@pytest.fixture(scope="module")
def repo(prepared_60k, tmp_path_factory):
    """A copy of the repo with the splits prepared; the tests below train in it in turn."""
    path = copy_project(prepared_60k, tmp_path_factory.mktemp("interrupt") / "repo")
    update_params(path, **PARAMS)  # the same data params: prepare stays up to date
    return path


def no_model_left_behind(repo) -> bool:
    return not (repo / "models" / "model.pt").exists() and temporary_files(repo) == []


@pytest.mark.slow
@pytest.mark.parametrize(
    ("signum", "exit_code", "said"),
    [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")],
    ids=["SIGINT", "SIGTERM"],
)
def test_a_signal_mid_training_ends_the_runs_killed_with_every_metric_written(repo, signum, exit_code, said):
    train = StageProcess(repo, "train")
    train.wait_for_line("epoch   1/")
    assert train.stop(signum) == exit_code
    assert train.stderr.splitlines()[-1] == f"torchtrack train: {said}", train.stderr
    client = store(repo)
    runs = runs_of_process(client, train.process.pid)
    assert {kind: run.info.status for kind, run in runs.items()} == {"model": "KILLED", "stage": "KILLED"}
    run_id = runs["stage"].info.run_id
    (log_dir,) = (repo / "runs" / "train").glob(f"*-{run_id[:8]}")
    tensorboard = read_scalars(log_dir)
    for key, tag in (("train_loss_step", "loss/train_step"), ("val_loss", "loss/val")):  # reached MLflow too
        steps = [m.step for m in client.get_metric_history(run_id, key)]
        assert steps == [step for step, _ in tensorboard[tag]]
    assert [m.step for m in client.get_metric_history(run_id, "val_loss")] == [1]
    assert no_model_left_behind(repo)


@pytest.mark.slow
def test_a_hard_kill_loses_at_most_the_last_seconds_of_metrics_and_leaves_no_output(repo):
    train = StageProcess(repo, "train")
    train.wait_for_line("epoch   2/")  # by now over a thousand step metrics were logged
    killed_at_ms = time.time() * 1000
    assert train.stop(signal.SIGKILL) == -signal.SIGKILL
    client = store(repo)
    runs = runs_of_process(client, train.process.pid)
    assert {kind: run.info.status for kind, run in runs.items()} == {"model": "RUNNING", "stage": "RUNNING"}
    run_id = runs["stage"].info.run_id
    written = client.get_metric_history(run_id, "train_loss_step")
    slack_s = 2  # a flush's own duration, and a loaded machine's scheduling
    assert killed_at_ms - max(m.timestamp for m in written) <= (FLUSH_EVERY_SECONDS + slack_s) * 1000
    assert no_model_left_behind(repo)


@pytest.mark.slow
def test_the_next_repro_runs_cleanly_and_marks_the_hard_killed_runs_killed(repo):
    # validate too: this copy's params differ from those dvc.lock records
    assert stages_run(dvc(repo, "repro")) == ["validate", "train", "evaluate"]
    assert (repo / "models" / "model.pt").is_file() and temporary_files(repo) == []
    client = store(repo)
    experiment_ids = [e.experiment_id for e in client.search_experiments()]
    model_runs = client.search_runs(experiment_ids, "tags.`torchtrack.kind` = 'model'")
    assert sorted(run.info.status for run in model_runs) == ["FINISHED", "KILLED", "KILLED", "KILLED"]
    assert client.search_runs(experiment_ids, "attributes.status = 'RUNNING'") == []
