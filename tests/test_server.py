"""`torchtrack server`: the `mlflow server` command line it builds from flags and environment,
printed with every password masked; the auth app's configuration keeps the admin password out.
The launcher running for real, on PostgreSQL and S3, is tests/test_team_server.py."""

from __future__ import annotations

import subprocess
import sys

import pytest

from torchtrack.cli import build_parser
from torchtrack.errors import ConfigError
from torchtrack.server import auth_config, masked, run_server, server_command

STORE = "postgresql://mlflow:s3cr3t-pw@db.example:5432/mlflow"


def test_masked_hides_the_password_of_a_uri_and_keeps_the_rest():
    assert masked(STORE) == "postgresql://mlflow:***@db.example:5432/mlflow"
    assert masked("postgresql://db/mlflow?user=u&password=pw&sslmode=require") == (
        "postgresql://db/mlflow?user=u&password=***&sslmode=require"
    )
    assert masked("s3://bucket/mlartifacts") == "s3://bucket/mlartifacts"
    assert masked("--port") == "--port"


def test_the_command_serves_artifacts_from_the_destination_on_loopback_by_default():
    command = server_command(STORE, "s3://team/mlartifacts")
    assert command[0].endswith("/mlflow") and command[1] == "server"
    options = dict(zip(command[2::2], command[3::2], strict=True))
    assert options == {
        "--backend-store-uri": STORE,
        "--artifacts-destination": "s3://team/mlartifacts",
        "--host": "127.0.0.1",
        "--port": "5000",
    }


def test_auth_adds_the_basic_auth_app_and_extra_arguments_go_last():
    command = server_command(STORE, "s3://b/a", auth=True, workers=2, extra=["--allowed-hosts", "x"])
    assert command[-6:] == ["--workers", "2", "--app-name", "basic-auth", "--allowed-hosts", "x"]


def test_flags_fall_back_to_the_variables_mlflow_server_reads(monkeypatch):
    monkeypatch.setenv("MLFLOW_BACKEND_STORE_URI", STORE)
    monkeypatch.setenv("MLFLOW_ARTIFACTS_DESTINATION", "s3://team/a")
    args = build_parser().parse_args(["server", "--", "--allowed-hosts", "team.example"])
    assert (args.backend_store_uri, args.artifacts_destination, args.host) == (
        STORE,
        "s3://team/a",
        "127.0.0.1",
    )
    assert args.mlflow_args[-2:] == ["--allowed-hosts", "team.example"]


def test_the_auth_config_names_the_store_but_never_the_admin_password(monkeypatch):
    monkeypatch.setenv("MLFLOW_AUTH_ADMIN_PASSWORD", "admin-password-42")
    text = auth_config(STORE)
    assert f"database_uri = {STORE}" in text and "admin_username = admin" in text
    assert "admin-password-42" not in text and "admin_password" not in text
    assert "default_permission = EDIT" in text


@pytest.mark.parametrize(
    ("store", "artifacts", "auth", "needs"),
    [
        (None, "s3://b/a", False, "--backend-store-uri"),
        (STORE, None, False, "--artifacts-destination"),
        (STORE, "s3://b/a", True, "MLFLOW_FLASK_SERVER_SECRET_KEY"),
    ],
)
def test_what_is_missing_is_named_before_anything_starts(monkeypatch, store, artifacts, auth, needs):
    monkeypatch.delenv("MLFLOW_FLASK_SERVER_SECRET_KEY", raising=False)
    with pytest.raises(ConfigError, match=needs):
        run_server(store, artifacts, "127.0.0.1", 5000, auth=auth)


def test_the_cli_prints_one_line_and_exit_code_2_when_the_store_is_missing():
    env = {"PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [sys.executable, "-m", "torchtrack", "server"], capture_output=True, text=True, env=env, timeout=60
    )
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "torchtrack server: error: no backend store: pass --backend-store-uri or set MLFLOW_BACKEND_STORE_URI"
    ]
