"""Tracking store unreachable: with MLFLOW_TRACKING_URI at a closed port, a stage fails within
seconds (MLflow's own retries take minutes) with one line naming the address, exit code 1. A
damaged SQLite store ends a stage the same way, in one line naming the file and SQLite's reason,
and the file is left as it was."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
import yaml

from helpers import isolated_env
from torchtrack.errors import TrackingStoreError
from torchtrack.tracking.backend.store import check_reachable


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_stage_fails_within_30_seconds_naming_the_address(tmp_path):
    address = f"http://127.0.0.1:{closed_port()}"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"data": {"n_samples": 100}}))
    # MLflow's retry settings stay at their defaults
    env = {k: v for k, v in isolated_env().items() if not k.startswith("MLFLOW_HTTP_REQUEST")}
    env["MLFLOW_TRACKING_URI"] = address
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "torchtrack", "prepare"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert time.monotonic() - started < 30
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"torchtrack prepare: error: cannot reach the MLflow tracking server at {address} "
        "(MLFLOW_TRACKING_URI): ConnectionError; start the server, or unset MLFLOW_TRACKING_URI "
        "to use the local store"
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]  # no outputs, no local store


def test_the_message_leaves_credentials_in_the_uri_out():
    port = closed_port()
    with pytest.raises(TrackingStoreError) as excinfo:
        check_reachable(f"http://user:s3cret@127.0.0.1:{port}/mlflow?token=t0ken")
    assert f"at http://127.0.0.1:{port}/mlflow " in str(excinfo.value)
    assert "s3cret" not in str(excinfo.value) and "t0ken" not in str(excinfo.value)


class NotFound(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_error(404)

    def log_message(self, *args):
        pass


def test_any_answer_even_an_error_status_counts_as_reachable():
    server = HTTPServer(("127.0.0.1", 0), NotFound)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        check_reachable(f"http://127.0.0.1:{server.server_port}")
    finally:
        server.shutdown()
        server.server_close()


def test_local_stores_are_not_probed():
    check_reachable("sqlite:////nowhere/mlflow.db")
    check_reachable("file:///nowhere/mlruns")


@pytest.mark.parametrize("damage", ["truncated", "random"])
def test_a_damaged_store_ends_a_stage_in_one_line_and_is_left_as_it_was(tmp_path, damage):
    from mlflow import MlflowClient

    store = tmp_path / "mlflow.db"
    if damage == "truncated":  # the first page of a real store: its tables' pages are gone
        whole = tmp_path / "whole.db"
        MlflowClient(f"sqlite:///{whole}").create_experiment("tiny")
        store.write_bytes(whole.read_bytes()[:4096])
        whole.unlink()
        reason = "database disk image is malformed (SQLITE_CORRUPT)"
    else:
        store.write_bytes(os.urandom(8192))
        reason = "file is not a database (SQLITE_NOTADB)"
    damaged = store.read_bytes()
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"data": {"n_samples": 100}}))
    result = subprocess.run(
        [sys.executable, "-m", "torchtrack", "prepare"],
        cwd=tmp_path,
        env=isolated_env() | {"TORCHTRACK_STORE_DAEMON": "0"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"torchtrack prepare: error: {store} is not a usable MLflow store: {reason}. "
        "Move it aside to start a new store"
    ]
    assert store.read_bytes() == damaged
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mlflow.db", "params.yaml"]  # no outputs
