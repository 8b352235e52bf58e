"""The store daemon: a stage on the local SQLite store logs through it without importing MLflow;
concurrent stages are all answered; a killed daemon is replaced; MLflow's refusals arrive as
one-line errors. The tests that need only a working daemon share one store (`shared_workdir`,
the first of them starting its daemon from a stage); those that start, count, kill, damage or
inspect a daemon each have their own (`workdir`)."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import yaml
from mlflow import MlflowClient

from helpers import isolated_env, wait_until
from torchtrack.errors import TrackingStoreError
from torchtrack.predict import Predictor
from torchtrack.synthetic import make_synthetic
from torchtrack.tracking import client as store_daemon
from torchtrack.tracking.backend import registry
from torchtrack.tracking.backend.lineage import find_model_run
from torchtrack.tracking.backend.model_logging import fluent_tracking_uri
from torchtrack.tracking.client import DAEMON_ENV, DaemonClient, open_run_store, start_daemon_ahead
from torchtrack.tracking.hashes import MODEL_URI_TAG
from torchtrack.tracking.location import tracking_uri
from torchtrack.tracking.wire import receive, send
from trained_project import TINY_PARAMS


def test_a_stage_on_the_local_store_logs_through_the_daemon_without_importing_mlflow_or_torch(shared_workdir):
    probe = textwrap.dedent(
        """
        import sys
        from torchtrack.config import TrackingConfig
        from torchtrack.tracking.tracker import Tracker

        with Tracker(TrackingConfig(experiment="probe"), "prepare", params={"seed": 1}) as tracker:
            tracker.log_metrics({"rows": 10.0})
            tracker.set_tags({"probe": "yes"})
        print(tracker.run_id, "mlflow" in sys.modules, "torch" in sys.modules)
        """
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    run_id, mlflow_imported, torch_imported = out.split()
    assert (mlflow_imported, torch_imported) == ("False", "False")  # TensorBoard's events need no torch
    run = MlflowClient(tracking_uri()).get_run(run_id)
    assert (run.info.status, run.data.metrics, run.data.params) == ("FINISHED", {"rows": 10.0}, {"seed": "1"})
    assert run.data.tags["probe"] == "yes"


def test_train_on_the_local_store_logs_its_model_system_metrics_and_figure_without_mlflow_or_matplotlib(
    shared_workdir,
):
    import mlflow.pyfunc

    (shared_workdir / "params.yaml").write_text(yaml.safe_dump(TINY_PARAMS))
    probe = textwrap.dedent(
        """
        import sys
        from torchtrack.cli import main

        assert main(["prepare"]) == 0 and main(["train"]) == 0
        print("mlflow" in sys.modules, "matplotlib" in sys.modules)
        """
    )
    env = isolated_env() | {"MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL": "0.1"}  # MLflow's own override
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split()[-2:] == ["False", "False"]  # the loss figure is rendered by the daemon
    assert (shared_workdir / "plots" / "loss.png").stat().st_size > 0
    client = MlflowClient(tracking_uri())
    model_run = find_model_run(shared_workdir / "models" / "model.pt", client)
    (train,) = client.search_runs(
        [model_run.info.experiment_id], f"tags.`mlflow.parentRunId` = '{model_run.info.run_id}'"
    )
    assert "system/cpu_utilization_percentage" in train.data.metrics  # sampled by the daemon
    assert registry.version_of_run(client, "tiny", model_run.info.run_id) == "1"  # registered by the daemon
    rows = make_synthetic(6, TINY_PARAMS["data"]["n_features"], noise_std=0.3, seed=7)[0].drop(columns="y")
    with fluent_tracking_uri(tracking_uri()):
        logged = mlflow.pyfunc.load_model(model_run.data.tags[MODEL_URI_TAG])
    served = np.asarray(logged.predict(rows)).reshape(-1)
    np.testing.assert_allclose(
        served, Predictor.load(shared_workdir / "models" / "model.pt")(rows), rtol=1e-6
    )


def test_a_stage_that_hangs_up_stops_the_system_metrics_it_started(shared_workdir):
    client = DaemonClient(tracking_uri())
    run_id = client.create_run(client.experiment_id("monitored"), "train", {})
    client.start_system_metrics(run_id, 0.1)
    mlflow = MlflowClient(tracking_uri())
    wait_until(lambda: mlflow.get_metric_history(run_id, "system/cpu_utilization_percentage"), "a sample")
    client.close()  # as a killed stage does: its run is still RUNNING
    time.sleep(0.5)  # the hang-up reaches the daemon
    samples = len(mlflow.get_metric_history(run_id, "system/cpu_utilization_percentage"))
    time.sleep(1.0)  # ten intervals: a monitor still running would have sampled again
    assert samples > 0
    assert len(mlflow.get_metric_history(run_id, "system/cpu_utilization_percentage")) == samples


def test_concurrent_stages_each_get_their_own_answers(shared_workdir):
    experiment = open_run_store().experiment_id("concurrent")

    def stage(index: int) -> str:
        client = DaemonClient(tracking_uri())
        run_id = client.create_run(experiment, f"stage-{index}", {"index": str(index)})
        client.log_batch(run_id, metrics=[("index", float(index), 0, step) for step in range(50)])
        client.set_terminated(run_id, "FINISHED")
        client.close()
        return run_id

    with ThreadPoolExecutor(8) as pool:
        run_ids = list(pool.map(stage, range(16)))
    mlflow = MlflowClient(tracking_uri())
    for index, run_id in enumerate(run_ids):
        run = mlflow.get_run(run_id)
        assert (run.data.tags["index"], run.data.metrics["index"]) == (str(index), index)
        assert len(mlflow.get_metric_history(run_id, "index")) == 50


def test_a_killed_daemon_is_replaced_by_the_next_stage(workdir):
    first = DaemonClient(tracking_uri())
    experiment = first.experiment_id("replaced")
    daemon = store_daemon._started[-1]
    daemon.send_signal(signal.SIGKILL)
    daemon.wait(timeout=30)
    with pytest.raises(TrackingStoreError, match="stopped answering"):
        first.experiment_id("replaced")
    assert DaemonClient(tracking_uri()).experiment_id("replaced") == experiment
    assert store_daemon._started[-1].pid != daemon.pid


def test_mlflows_refusal_arrives_as_a_one_line_error(shared_workdir):
    with pytest.raises(TrackingStoreError, match="the MLflow store refused a call: MlflowException"):
        DaemonClient(tracking_uri()).set_terminated("no-such-run", "FINISHED")


def test_the_daemon_exits_once_its_store_is_deleted(workdir):
    client = DaemonClient(tracking_uri())
    client.experiment_id("deleted")
    client.close()
    (workdir / "mlflow.db").unlink()
    daemon = store_daemon._started[-1]
    deadline = time.monotonic() + 30
    while daemon.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert daemon.returncode == 0


def test_a_remote_store_or_the_switch_keeps_the_store_in_process(shared_workdir, monkeypatch):
    monkeypatch.setenv(DAEMON_ENV, "0")
    assert not isinstance(open_run_store(), DaemonClient)


def test_a_store_deleted_and_made_again_gets_the_records_of_the_next_stage(workdir):
    client = DaemonClient(tracking_uri())
    client.experiment_id("before")
    client.close()
    (workdir / "mlflow.db").unlink()  # a cleaned store: the next stage starts a new one at once
    DaemonClient(tracking_uri()).experiment_id("after")
    mlflow = MlflowClient(tracking_uri())
    assert mlflow.get_experiment_by_name("after") is not None
    assert mlflow.get_experiment_by_name("before") is None


def test_the_daemon_answers_an_unknown_call_with_an_error_and_runs_nothing(shared_workdir):
    client = DaemonClient(tracking_uri())
    client.experiment_id("known")
    connection = client._connection()
    send(connection, {"call": "__init__", "args": {"client": None}})
    assert receive(connection) == {
        "error": {"kind": "TrackingStoreError", "message": "the store daemon has no call '__init__'"}
    }
    send(connection, {"call": "set_tag", "args": {"run_id": 1, "key": "k", "value": "v"}})
    assert receive(connection)["error"]["message"] == "set_tag: run_id is a int, not str"
    assert client.experiment_id("known")  # the connection is still in step


def test_a_corrupted_store_ends_the_call_in_one_line_naming_the_file_and_sqlites_reason(workdir):
    MlflowClient(tracking_uri()).create_experiment("e")
    store = workdir / "mlflow.db"
    store.write_bytes(store.read_bytes()[: store.stat().st_size // 2])
    with pytest.raises(TrackingStoreError) as refused:
        DaemonClient(tracking_uri()).experiment_id("e")
    message = str(refused.value)
    assert str(store) in message and "malformed" in message and "\n" not in message


def test_no_daemon_is_started_ahead_for_a_store_not_made_yet(workdir):
    started = len(store_daemon._started)
    start_daemon_ahead()  # a stage whose input turns out bad leaves no store behind
    assert len(store_daemon._started) == started
    assert not (workdir / "mlflow.db").exists()


def test_a_daemon_started_ahead_answers_the_first_call_and_no_second_one_starts(workdir):
    MlflowClient(tracking_uri()).create_experiment("made")
    started = len(store_daemon._started)
    start_daemon_ahead()
    start_daemon_ahead()  # another stage starting meanwhile: the starting daemon holds the lock
    assert len(store_daemon._started) == started + 1
    assert DaemonClient(tracking_uri()).experiment_id("ahead")
    assert len(store_daemon._started) == started + 1  # the first call waited for it
    assert store_daemon._started[-1].poll() is None


@pytest.mark.skipif(sys.platform != "linux", reason="reads the daemon's memory map from /proc")
def test_a_model_stage_starting_has_the_listening_daemon_import_torch_in_the_background(workdir):
    client = DaemonClient(tracking_uri())
    client.experiment_id("listening")
    maps = Path(f"/proc/{store_daemon._started[-1].pid}/maps")
    assert "libtorch" not in maps.read_text()
    start_daemon_ahead(logs_model=True)
    wait_until(lambda: "libtorch" in maps.read_text(), "torch in the daemon")
    client.close()


def test_validate_starts_the_daemon_that_the_next_stage_finds(workdir):
    (workdir / "params.yaml").write_text(yaml.safe_dump(TINY_PARAMS))
    MlflowClient(tracking_uri()).create_experiment("made")
    subprocess.run([sys.executable, "-m", "torchtrack", "validate"], capture_output=True, check=True)
    started = len(store_daemon._started)
    assert DaemonClient(tracking_uri()).experiment_id("found")
    assert len(store_daemon._started) == started


def test_a_store_that_a_daemon_started_ahead_cannot_open_is_named_by_the_first_call(workdir):
    MlflowClient(tracking_uri()).create_experiment("e")
    store = workdir / "mlflow.db"
    store.write_bytes(store.read_bytes()[: store.stat().st_size // 2])
    start_daemon_ahead()  # it fails, and says nothing here
    with pytest.raises(TrackingStoreError) as refused:
        DaemonClient(tracking_uri()).experiment_id("e")
    message = str(refused.value)
    assert str(store) in message and "malformed" in message and "\n" not in message


def test_a_daemon_crossing_runs_no_environment_and_no_folder(workdir, monkeypatch):
    """The experiment's artifacts lie beside the store the stage named, not where the daemon runs."""
    other = workdir / "elsewhere" / "other.db"
    other.parent.mkdir()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{other}")
    from torchtrack.config import TrackingConfig
    from torchtrack.tracking.tracker import Tracker

    with Tracker(TrackingConfig(experiment="beside"), "prepare", params={}):
        pass
    location = MlflowClient(f"sqlite:///{other}").get_experiment_by_name("beside-prepare").artifact_location
    assert location == (other.parent / "mlartifacts").as_uri()


def test_the_daemon_keeps_the_users_telemetry_opt_out_and_gets_no_secret(workdir, monkeypatch):
    import psutil

    monkeypatch.setenv("DO_NOT_TRACK", "1")
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-for-the-daemon")
    open_run_store().experiment_id("telemetry")  # starts the store's daemon
    uri = tracking_uri()
    (daemon,) = [
        process
        for process in psutil.process_iter(["cmdline"])
        if store_daemon.DAEMON_MODULE in (process.info["cmdline"] or []) and uri in process.info["cmdline"]
    ]
    environment = daemon.environ()
    assert environment["DO_NOT_TRACK"] == "1" and environment["MLFLOW_DISABLE_TELEMETRY"] == "true"
    assert "AWS_SECRET_ACCESS_KEY" not in environment
