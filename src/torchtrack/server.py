"""`torchtrack server`: the team's MLflow tracking server, `mlflow server` on a PostgreSQL store
with the artifacts on S3-compatible storage served through it, optionally behind logins.

    torchtrack server --backend-store-uri postgresql://USER:PASSWORD@HOST/DB \
        --artifacts-destination s3://BUCKET/mlartifacts [--host 127.0.0.1] [--port 5000] [--auth]

The two locations fall back to MLFLOW_BACKEND_STORE_URI and MLFLOW_ARTIFACTS_DESTINATION (the
variables `mlflow server` reads itself); S3 credentials and endpoint come from the usual
AWS_* variables and MLFLOW_S3_ENDPOINT_URL. The command line is printed with every password
masked, and the server binds to loopback unless told otherwise.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from torchtrack.errors import ConfigError

MASK = "***"
SECRET_QUERY_KEYS = {"password", "sslpassword"}  # libpq takes these in the query string too
# Team members log into one another's experiments, so a login may edit every experiment by
# default; MLflow's own default (READ) would make an experiment read-only to all but its creator.
AUTH_CONFIG = """\
[mlflow]
default_permission = {default_permission}
database_uri = {database_uri}
admin_username = {admin_username}
authorization_function = mlflow.server.auth:authenticate_request_basic_auth
"""


def masked(text: str) -> str:
    """`text` with the password of a URI in it replaced by ***; any other text unchanged."""
    parts = urlsplit(text)
    if not parts.scheme or not parts.netloc:
        return text
    netloc = parts.netloc
    credentials, at, host = netloc.rpartition("@")
    if at and ":" in credentials:
        netloc = f"{credentials.split(':', 1)[0]}:{MASK}@{host}"
    query = parts.query
    if query:
        pairs = [(k, MASK if k.lower() in SECRET_QUERY_KEYS else v) for k, v in parse_qsl(query)]
        query = urlencode(pairs, safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def server_command(
    backend_store_uri: str,
    artifacts_destination: str,
    host: str = "127.0.0.1",
    port: int = 5000,
    workers: int | None = None,
    auth: bool = False,
    extra: list[str] | None = None,
) -> list[str]:
    """The `mlflow server` command line, run from this environment's bin/."""
    command = [
        str(Path(sys.executable).parent / "mlflow"),
        "server",
        "--backend-store-uri",
        backend_store_uri,
        "--artifacts-destination",
        artifacts_destination,
        "--host",
        host,
        "--port",
        str(port),
    ]
    if workers is not None:
        command += ["--workers", str(workers)]
    if auth:
        command += ["--app-name", "basic-auth"]
    return command + list(extra or [])


def auth_config(database_uri: str, admin_username: str = "admin", default_permission: str = "EDIT") -> str:
    """The basic-auth app's configuration file; the admin password stays in MLFLOW_AUTH_ADMIN_PASSWORD."""
    return AUTH_CONFIG.format(
        database_uri=database_uri, admin_username=admin_username, default_permission=default_permission
    )


def run_server(
    backend_store_uri: str | None,
    artifacts_destination: str | None,
    host: str,
    port: int,
    workers: int | None = None,
    auth: bool = False,
    auth_database_uri: str | None = None,
    extra: list[str] | None = None,
) -> int:
    """Run `mlflow server` until it exits or Ctrl-C; return its exit code.

    With `auth`, the user store is `auth_database_uri` (default: the backend store; MLflow keeps
    its user tables and their migrations apart from the tracking tables), unless
    MLFLOW_AUTH_CONFIG_PATH names a configuration file of the operator's own.
    """
    if not backend_store_uri:
        raise ConfigError("no backend store: pass --backend-store-uri or set MLFLOW_BACKEND_STORE_URI")
    if not artifacts_destination:
        raise ConfigError(
            "no artifact store: pass --artifacts-destination or set MLFLOW_ARTIFACTS_DESTINATION"
        )
    env = dict(os.environ)
    if auth and not env.get("MLFLOW_FLASK_SERVER_SECRET_KEY"):
        raise ConfigError(
            "--auth needs MLFLOW_FLASK_SERVER_SECRET_KEY (any long random string, the same on every "
            "restart) and, on the first start, MLFLOW_AUTH_ADMIN_PASSWORD (at least 12 characters)"
        )
    command = server_command(backend_store_uri, artifacts_destination, host, port, workers, auth, extra)
    with tempfile.TemporaryDirectory(prefix="torchtrack-server-") as folder:
        if auth and not env.get("MLFLOW_AUTH_CONFIG_PATH"):
            config_file = Path(folder) / "basic_auth.ini"  # holds the database password: owner only
            config_file.touch(mode=0o600)
            config_file.write_text(
                auth_config(
                    auth_database_uri or backend_store_uri, env.get("MLFLOW_AUTH_ADMIN_USERNAME") or "admin"
                )
            )
            env["MLFLOW_AUTH_CONFIG_PATH"] = str(config_file)
        print(f"torchtrack server: {' '.join(masked(arg) for arg in command)}", flush=True)
        print(f"MLflow tracking server: http://{host}:{port} (Ctrl-C stops it)", flush=True)
        # Its own process group: `mlflow server` runs its workers as children, and a stop
        # signal must reach all of them, not orphan them.
        process = subprocess.Popen(command, env=env, start_new_session=True)
        try:
            return process.wait()
        finally:
            stop_group(process)


def stop_group(process: subprocess.Popen, timeout: float = 30) -> None:
    """SIGTERM to `process`'s process group, SIGKILL after `timeout` seconds; wait for it."""
    for signum in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, signum)
        except ProcessLookupError:
            break
        try:
            process.wait(timeout=timeout)
            break
        except subprocess.TimeoutExpired:
            continue
    process.wait()
