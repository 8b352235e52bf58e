"""serve: the model train logged to MLflow loads with pyfunc and, served over HTTP by
`mlflow models serve --env-manager local`, answers exactly as `torchtrack predict` does."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from helpers import isolated_env
from pipeline_copy import pipeline_env
from torchtrack.cli import main
from torchtrack.errors import DataError
from torchtrack.predict import PREDICTION_COLUMN, Predictor
from torchtrack.serve import serve_command
from torchtrack.tables import read_csv
from torchtrack.tracking.backend.lineage import logged_model_uri, registered_model_uri

pytest_plugins = ["trained_project", "table_projects"]

SERVER_START_TIMEOUT_S = 180  # a cold start on a busy 2-core machine takes tens of seconds


def test_the_checkpoint_leads_to_the_model_its_run_logged(trained_project, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", trained_project.tracking_uri)
    uri = logged_model_uri(trained_project.model_path)
    assert uri.startswith("models:/m-")
    assert uri == trained_project.model_run().data.tags["torchtrack.model_uri"]


def test_the_checkpoint_is_served_as_its_registered_name_and_version(trained_project, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", trained_project.tracking_uri)
    assert registered_model_uri(trained_project.model_path) == "models:/tiny/1"


def test_without_a_checkpoint_the_error_says_to_train(tmp_path):
    with pytest.raises(DataError, match="run the train stage first"):
        logged_model_uri(tmp_path / "model.pt")


def test_the_server_loads_the_model_on_the_cpu_unless_told_otherwise(monkeypatch):
    """The logged pt2 export is the CPU's; MLflow would otherwise load it on CUDA where present."""
    from torchtrack.serve import serve_environment

    monkeypatch.delenv("MLFLOW_DEFAULT_PREDICTION_DEVICE", raising=False)
    assert serve_environment()["MLFLOW_DEFAULT_PREDICTION_DEVICE"] == "cpu"
    monkeypatch.setenv("MLFLOW_DEFAULT_PREDICTION_DEVICE", "cuda:1")
    assert serve_environment()["MLFLOW_DEFAULT_PREDICTION_DEVICE"] == "cuda:1"


def test_the_server_binds_loopback_in_this_environment_by_default():
    command = serve_command("models:/m-1", port=5123)
    assert Path(command[0]).parent == Path(sys.executable).parent
    assert command[1:] == ["models", "serve", "-m", "models:/m-1", "--env-manager", "local",
                           "-h", "127.0.0.1", "-p", "5123"]  # fmt: skip


def test_logged_model_loads_with_pyfunc_and_takes_raw_rows(trained_project, monkeypatch):
    import mlflow.pyfunc

    monkeypatch.setenv("MLFLOW_TRACKING_URI", trained_project.tracking_uri)
    model = mlflow.pyfunc.load_model(logged_model_uri(trained_project.model_path))
    predictor = Predictor.load(trained_project.model_path)
    rows = trained_project.raw_rows(20)
    served = model.predict(rows.assign(id=range(len(rows))))  # raw rows by name; an extra column is let be
    np.testing.assert_allclose(np.asarray(served).reshape(-1), predictor(rows), rtol=1e-5, atol=1e-5)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def post_json(url: str, payload: dict) -> dict:
    request = urllib.request.Request(url, json.dumps(payload).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def wait_for_ping(url: str, server: subprocess.Popen, log: Path) -> None:
    """Return once GET `url` answers 200; fail with the server's log if it exits or takes too long."""
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"the server exited with {server.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.5)
    pytest.fail(f"no answer on {url} after {SERVER_START_TIMEOUT_S} s:\n{log.read_text()[-3000:]}")


@pytest.mark.slow
@pytest.mark.parametrize("model", [[], ["--model", "models:/tiny/1"]], ids=["train's", "by registry version"])
def test_served_model_answers_like_predict(trained_project, tmp_path, model):
    rows = trained_project.raw_rows(25)
    rows.to_csv(tmp_path / "new.csv", index=False)
    argv = ["predict", "--input", str(tmp_path / "new.csv"), "--output", str(tmp_path / "out.csv")]
    assert main([*argv, "--model", str(trained_project.model_path)]) == 0
    expected = pd.read_csv(tmp_path / "out.csv")[PREDICTION_COLUMN].to_numpy()
    columns = [*rows.columns[::-1], "id"]  # by name, in any order, an extra column let be
    values = rows.assign(id=range(len(rows)))[columns].to_numpy().tolist()

    port = free_port()
    log = tmp_path / "server.log"
    env = isolated_env()
    with log.open("w") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "torchtrack", "serve", "--host", "127.0.0.1", "--port", str(port), *model],
            cwd=trained_project.root, env=env, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: the server and its uvicorn worker
        )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for_ping(f"{url}/ping", server, log)
        for payload in (
            {"dataframe_split": {"columns": columns, "data": values}},
            {"dataframe_records": [dict(zip(columns, row, strict=True)) for row in values]},
        ):
            answer = post_json(f"{url}/invocations", payload)
            served = np.asarray(answer["predictions"], dtype=np.float64).reshape(-1)
            np.testing.assert_allclose(served, expected, rtol=1e-5, atol=1e-5, err_msg=str(list(payload)))
    finally:
        stop_process_group(server)
    said = log.read_text()
    assert said.startswith(f"Serving models:/tiny/1 at {url}/invocations"), said[:300]  # the registered name
    assert " INFO mlflow" not in said and "Downloading artifacts" not in said, said


def stop_process_group(leader: subprocess.Popen) -> None:
    """SIGTERM the group `leader` heads (started with start_new_session), SIGKILL if it lingers."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(leader.pid, signal.SIGTERM)
    try:
        leader.wait(timeout=30)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(leader.pid, signal.SIGKILL)
        leader.wait(timeout=30)


@pytest.mark.slow
def test_predict_and_the_served_model_agree_on_raw_rows_with_text_gaps_and_an_unseen_category(
    table_project, tmp_path
):
    project = table_project("houses")
    rows = read_csv(project.table).drop(columns=project.target).head(20)
    rows.loc[0, "neighbourhood"] = "atlantis"  # never seen in training
    rows.loc[1, "area_m2"] = None
    rows.loc[2, "sold_on"] = None
    rows.loc[3, "garage"] = None
    rows.to_csv(tmp_path / "new.csv", index=False)
    argv = ["predict", "--input", str(tmp_path / "new.csv"), "--output", str(tmp_path / "out.csv")]
    assert main([*argv, "--model", str(project.root / "models" / "model.pt")]) == 0
    expected = pd.read_csv(tmp_path / "out.csv")[PREDICTION_COLUMN].to_numpy()
    assert np.isfinite(expected).all()

    port = free_port()
    log = tmp_path / "server.log"
    with log.open("w") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "torchtrack", "serve", "--host", "127.0.0.1", "--port", str(port)],
            cwd=project.root, env=pipeline_env(project.root), stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for_ping(f"{url}/ping", server, log)
        values = rows.astype(object).where(rows.notna(), None)  # gaps as JSON null
        payload = {"dataframe_split": {"columns": list(rows.columns), "data": values.to_numpy().tolist()}}
        served = np.asarray(post_json(f"{url}/invocations", payload)["predictions"], np.float64).reshape(-1)
        np.testing.assert_allclose(served, expected, rtol=1e-5, atol=1e-5)
    finally:
        stop_process_group(server)
