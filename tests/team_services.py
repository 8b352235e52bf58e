"""The team's services for end-to-end tests, each a real server on a free loopback port in a
temporary folder, stopped and removed afterwards: PostgreSQL (Debian's package, run as the
`postgres` user when the tests run as root, since PostgreSQL refuses root), an S3 stand-in
(moto's server mode) and `mlflow server` on both, started by `torchtrack server`.

Where PostgreSQL is missing and cannot be installed, or does not start, the tests that need
it skip with the reason; under CI (CI=true) they fail instead, so CI never skips them.
"""

from __future__ import annotations

import glob
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from pipeline_copy import BIN

S3_ENV = {  # moto accepts any credentials; real ones never reach a test
    "AWS_ACCESS_KEY_ID": "testing-key-id",
    "AWS_SECRET_ACCESS_KEY": "testing-secret-key",
    "AWS_DEFAULT_REGION": "us-east-1",
}
ADMIN = "admin"
START_S = 120  # a server that is not up by then has failed


def unavailable(reason: str) -> None:
    """Skip the test with `reason`, or fail it under CI, where every test must run."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI=true: the team-server tests must run, not skip)")
    pytest.skip(reason)


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(ready, what: str, process: subprocess.Popen | None = None, log: Path | None = None) -> None:
    """Poll `ready()` until true; fail naming `what` (with its log) if it exits or times out."""
    deadline = time.monotonic() + START_S
    while not ready():
        if process is not None and process.poll() is not None or time.monotonic() > deadline:
            detail = log.read_text()[-4000:] if log and log.exists() else ""
            raise AssertionError(f"{what} did not start:\n{detail}")
        time.sleep(0.3)


def answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code < 500
    except requests.RequestException:
        return False


# -- PostgreSQL -----------------------------------------------------------------------------
def postgres_bin() -> Path | None:
    """The folder of PostgreSQL's server programs (initdb, pg_ctl), newest version first."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(p.split("/")[4]))
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("pg_ctl")
    return Path(on_path).parent if on_path else None


def install_postgres() -> str | None:
    """Install Debian's postgresql package (as .ci/run does); None on success, else why not."""
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return "PostgreSQL is not installed, and apt-get cannot install it here (not root, or not Debian)"
    env = os.environ | {"DEBIAN_FRONTEND": "noninteractive"}
    steps = (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", "postgresql"])
    results = [subprocess.run(step, env=env, capture_output=True, text=True, timeout=900) for step in steps]
    if postgres_bin() is None:
        return f"apt-get install postgresql failed: {results[-1].stderr[-500:]}"
    return None


@contextmanager
def postgres_server() -> Iterator[str]:
    """A PostgreSQL server on a free loopback port; yields the URI of its `mlflow` database,
    owned by a `mlflow` role that logs in with a password."""
    if postgres_bin() is None and (reason := install_postgres()):
        unavailable(reason)
    bin_dir = postgres_bin()
    # PostgreSQL refuses to run as root: as root, its commands run as `postgres`, through
    # runuser (util-linux), which lives in an sbin folder that a PATH may leave out.
    runuser = shutil.which("runuser") or shutil.which("runuser", path="/usr/sbin:/sbin") or "runuser"
    as_postgres = [runuser, "-u", "postgres", "--"] if os.geteuid() == 0 else []
    folder = Path(tempfile.mkdtemp(prefix="torchtrack-pg-"))  # not under pytest's 0700 tmp_path
    if as_postgres:
        shutil.chown(folder, "postgres", "postgres")
    data, port, password = folder / "data", free_port(), secrets.token_urlsafe(16)

    def run(*command: str) -> subprocess.CompletedProcess:
        return subprocess.run([*as_postgres, *command], capture_output=True, text=True, timeout=120)

    try:
        steps = [
            run(str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust", "-E", "UTF8"),
            run(
                str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(folder / "log"), "-w", "-t", "60",
                "-o", f"-p {port} -h 127.0.0.1 -k {folder}", "start",
            ),
        ]  # fmt: skip
        failed = next((step for step in steps if step.returncode != 0), None)
        if failed is not None:
            unavailable(f"PostgreSQL does not start: {' '.join(failed.args)}: {failed.stderr[-800:]}")
        psql = [
            str(bin_dir / "psql"),
            "-h",
            str(folder),
            "-p",
            str(port),
            "-U",
            "postgres",
            "-v",
            "ON_ERROR_STOP=1",
        ]
        for sql in (f"CREATE ROLE mlflow LOGIN PASSWORD '{password}'", "CREATE DATABASE mlflow OWNER mlflow"):
            created = run(*psql, "-c", sql)
            assert created.returncode == 0, created.stderr
        yield f"postgresql://mlflow:{password}@127.0.0.1:{port}/mlflow"
    finally:
        if (data / "postmaster.pid").exists():
            run(str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(folder, ignore_errors=True)


# -- S3 ---------------------------------------------------------------------------------------
@contextmanager
def s3_server(folder: Path) -> Iterator[str]:
    """moto's S3 on a free loopback port, as its own process; yields the endpoint URL."""
    port = free_port()
    log = folder / "moto.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=os.environ | S3_ENV,
            start_new_session=True,
        )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: answers(endpoint), "moto_server", process, log)
        yield endpoint
    finally:
        stop(process)


def s3_client(endpoint: str):
    """A boto3 S3 client for the stand-in."""
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        **{k.lower(): v for k, v in S3_ENV.items() if k != "AWS_DEFAULT_REGION"},
        region_name=S3_ENV["AWS_DEFAULT_REGION"],
    )


def bucket_keys(endpoint: str, bucket: str, prefix: str = "") -> list[str]:
    """Every object key in `bucket` under `prefix`."""
    pages = s3_client(endpoint).get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return [item["Key"] for page in pages for item in page.get("Contents", [])]


# -- the tracking server ----------------------------------------------------------------------
@dataclass
class TrackingServer:
    """A running `torchtrack server --auth`: its address, admin password and output so far."""

    url: str
    admin_password: str
    log: Path
    s3_endpoint: str
    bucket: str

    def output(self) -> str:
        return self.log.read_text()


@contextmanager
def tracking_server(
    store_uri: str, s3_endpoint: str, folder: Path, bucket: str = "team"
) -> Iterator[TrackingServer]:
    """`torchtrack server --auth` on `store_uri` with artifacts in s3://`bucket`/mlartifacts."""
    s3_client(s3_endpoint).create_bucket(Bucket=bucket)
    port, admin_password = free_port(), secrets.token_urlsafe(18)
    env = (
        os.environ
        | S3_ENV
        | {
            "MLFLOW_S3_ENDPOINT_URL": s3_endpoint,
            "MLFLOW_AUTH_ADMIN_PASSWORD": admin_password,
            "MLFLOW_FLASK_SERVER_SECRET_KEY": secrets.token_hex(16),
        }
    )
    env.pop("MLFLOW_AUTH_CONFIG_PATH", None)
    command = [str(BIN / "torchtrack"), "server", "--backend-store-uri", store_uri, "--auth"]
    command += [
        "--artifacts-destination",
        f"s3://{bucket}/mlartifacts",
        "--port",
        str(port),
        "--workers",
        "2",
    ]
    log = folder / "mlflow-server.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: answers(f"{url}/health"), "torchtrack server", process, log)
        yield TrackingServer(url, admin_password, log, s3_endpoint, bucket)
    finally:
        stop(process)


def stop(process: subprocess.Popen) -> None:
    """SIGTERM to `process`'s group (it was started in its own session), SIGKILL if it lingers."""
    for signum in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, signum)
            process.wait(timeout=30)
            return
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            continue
