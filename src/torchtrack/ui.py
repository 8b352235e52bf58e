"""`torchtrack ui`: the MLflow UI and TensorBoard side by side, on loopback by default.

MLflow 3's UI opens every experiment on its GenAI overview (traces, token usage): the kind
it shows comes from a `workflowType` query parameter, else a "GenAI / Model training" toggle
kept in the browser's local storage (default GenAI), not from the experiment's
`mlflow.experimentKind` tag. So the address printed here is the experiment's runs table with
`workflowType=machine_learning`, the model-training view.

Which columns the runs table shows is the browser's own state, kept in its local storage; the
one thing an address can carry is a shared view (what the UI's Share button makes): an
experiment tag `mlflow.sharedViewState.<key>` holding the view as JSON, opened by
`?viewStateShareKey=<key>`. So `ui` writes one naming the params `torchtrack compare` shows and
the test metrics, and prints its address.
"""

from __future__ import annotations

import hashlib
import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from torchtrack.compare import KEY_METRICS, MODEL_RUNS, compared_params
from torchtrack.config import TrackingConfig
from torchtrack.errors import PipelineError
from torchtrack.loopback import no_login_warning
from torchtrack.tracking.backend.store import connect
from torchtrack.tracking.location import repo_root, tracking_uri

RUNS_TABLE = "#/experiments/{id}/runs?workflowType=machine_learning"  # the UI's runs tab, model-training view
SHARED_VIEW = "mlflow.sharedViewState."  # + key: the experiment tag that `&viewStateShareKey=<key>` opens
START_TIMEOUT_S = 120.0  # MLflow's first answer can take tens of seconds (imports, store migrations)
POLL_INTERVAL_S = 0.5
NO_PROXY = urllib.request.build_opener(
    urllib.request.ProxyHandler({})
)  # an http_proxy must not answer for them


def runs_table_url(base: str, experiment: str) -> str:
    """The MLflow UI address of `experiment`'s runs table, opening on `runs_view`'s columns (the
    experiments list if there is no such experiment yet)."""
    from mlflow.exceptions import MlflowException

    client = connect()
    found = client.get_experiment_by_name(experiment)  # a server that does not answer: one line
    if found is None:
        return f"{base}/#/experiments?workflowType=machine_learning"
    table = f"{base}/{RUNS_TABLE.format(id=found.experiment_id)}"
    view = json.dumps(runs_view(client.search_runs([found.experiment_id], MODEL_RUNS)), sort_keys=True)
    key = hashlib.sha256(view.encode()).hexdigest()  # the same view, the same tag
    try:
        client.set_experiment_tag(found.experiment_id, SHARED_VIEW + key, view)
    except MlflowException:  # a team server that lets this login read only: the table as the browser keeps it
        return table
    return f"{table}&viewStateShareKey={key}"


def runs_view(runs: list) -> dict:
    """The runs table as MLflow's UI keeps a shared view: the columns of the params that
    `torchtrack compare` shows for `runs` and of the test metrics. Its order stays the UI's
    default, newest first: sorted by a metric, the UI no longer nests stage runs under their model run."""
    params = [f"params.`{name}`" for name in compared_params(runs)]
    return {"selectedColumns": params + [f"metrics.`{name}`" for name in KEY_METRICS]}


def check_port_free(host: str, port: int, server: str, option: str) -> None:
    """PipelineError naming the server, the port and the option to change it when something
    already listens there (before the server starts, so the reason is not buried in its log)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers do: TIME_WAIT is free
        try:
            probe.bind((host, port))
        except OSError:
            raise PipelineError(
                f"port {port} on {host} is already in use, so the {server} cannot start: "
                f"stop what listens there, or choose another port with {option}"
            ) from None


def answers(url: str) -> bool:
    """Whether a server answers an HTTP request at `url` (any status: it is up)."""
    try:
        with NO_PROXY.open(url, timeout=2):
            return True
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False


def local_url(host: str, port: int) -> str:
    """The address this machine reaches a server bound to `host` at (every interface: loopback)."""
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


def wait_until_answering(
    servers: dict[str, tuple[subprocess.Popen, str]], timeout_s: float = START_TIMEOUT_S
) -> None:
    """Return once every server (name -> its process and URL) answers HTTP; PipelineError in one
    line when one exits first or `timeout_s` passes, so no address is printed that refuses."""
    pending = dict(servers)
    deadline = time.monotonic() + timeout_s
    while pending:
        for name, (process, url) in list(pending.items()):
            if process.poll() is not None:
                code = process.returncode
                raise PipelineError(
                    f"the {name} exited (code {code}) before it answered; its log above says why"
                )
            if answers(url):
                del pending[name]
        if pending and time.monotonic() > deadline:
            names = " and ".join(pending)
            raise PipelineError(
                f"the {names} did not answer within {timeout_s:g} s; both servers are stopped"
            )
        if pending:
            time.sleep(POLL_INTERVAL_S)


def server_commands(
    config: TrackingConfig, host: str, mlflow_port: int, tensorboard_port: int
) -> dict[str, list[str]]:
    """The command line of each server, by name."""
    bin_dir = Path(sys.executable).parent
    logdir = repo_root() / config.tensorboard_dir
    logdir.mkdir(parents=True, exist_ok=True)
    return {
        "MLflow UI": [
            str(bin_dir / "mlflow"),
            "ui",
            "--backend-store-uri",
            tracking_uri(),
            "--host",
            host,
            "--port",
            str(mlflow_port),
        ],
        "TensorBoard": [
            str(bin_dir / "tensorboard"),
            "--logdir",
            str(logdir),
            "--host",
            host,
            "--port",
            str(tensorboard_port),
        ],
    }


def serve(config: TrackingConfig, host: str, mlflow_port: int, tensorboard_port: int) -> int:
    """Start both servers, print their addresses, and stop both on Ctrl-C or when one exits."""
    commands = server_commands(config, host, mlflow_port, tensorboard_port)
    check_port_free(host, mlflow_port, "MLflow UI", "--mlflow-port")
    check_port_free(host, tensorboard_port, "TensorBoard", "--tensorboard-port")
    warning = no_login_warning(host, "ui")
    if warning is not None:
        print(warning, file=sys.stderr, flush=True)
    runs = runs_table_url(f"http://{host}:{mlflow_port}", config.experiment)
    # Their own output goes to stderr: stdout carries only the addresses, once they answer.
    processes = {
        name: subprocess.Popen(cmd, stdout=sys.__stderr__.fileno()) for name, cmd in commands.items()
    }
    try:
        print("torchtrack ui: starting the MLflow UI and TensorBoard...", file=sys.stderr, flush=True)
        ports = {"MLflow UI": mlflow_port, "TensorBoard": tensorboard_port}
        wait_until_answering(
            {name: (p, local_url(host, ports[name])) for name, p in processes.items()}, START_TIMEOUT_S
        )
        print(f"MLflow UI:   {runs}", flush=True)
        print(f"TensorBoard: http://{host}:{tensorboard_port}", flush=True)
        print("Ctrl-C stops both.", flush=True)
        while all(p.poll() is None for p in processes.values()):
            time.sleep(0.5)
        failed = [name for name, p in processes.items() if p.poll() not in (None, 0)]
        if failed:
            print(f"torchtrack ui: {', '.join(failed)} exited; is the port already in use?", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        for process in processes.values():
            process.terminate()
        for process in processes.values():
            process.wait(timeout=30)
