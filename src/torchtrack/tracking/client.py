"""A stage's end of the store daemon (backend/daemon.py): one process per local SQLite store,
holding MLflow imported and the store open, so that a stage talking to it over a Unix socket
never imports MLflow (about two seconds of CPU per stage, `make bench`).

`open_run_store()` is a stage's way to the store: for the local SQLite store a `DaemonClient`,
which starts the daemon when none answers; for a remote tracking URI (a team server) or with
TORCHTRACK_STORE_DAEMON=0, a `RunStore` in the stage's own process. Both answer the calls of
calls.py, model logging and the system metrics monitor included, so no stage imports MLflow on
the daemon's path. A monitor runs until its stage stops it or hangs up (is killed).
`start_daemon_ahead()`, called as a stage starts, starts a missing daemon without waiting for
it, so that it imports MLflow while the stage imports its own libraries.

Every call waits for the daemon's answer, sent once the store has the record, so a stage that
returned from a call may be killed without losing it. A call carries its arguments and nothing
else (no environment, no working folder: paths are absolute), as JSON (wire.py), to a daemon of
this user's in this user's private folder (private_dir.py, peer.py). The daemon exits after
IDLE_EXIT_S seconds with no stage connected; it is keyed by the store, the interpreter and this
package's files, so a changed torchtrack never runs in a daemon started before.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import select
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from torchtrack.environment import PREDICTION_DEVICE
from torchtrack.errors import PipelineError, TrackingStoreError
from torchtrack.profiling import timed
from torchtrack.tracking.backend.run_store import RunStore
from torchtrack.tracking.calls import CALLS, bind
from torchtrack.tracking.location import tracking_uri
from torchtrack.tracking.peer import check_peer
from torchtrack.tracking.private_dir import lock, locked, open_private, private_dir
from torchtrack.tracking.wire import HELLO, error_from, receive, send

DAEMON_ENV = "TORCHTRACK_STORE_DAEMON"  # "0": every stage opens the store itself
DAEMON_MODULE = "torchtrack.tracking.backend.daemon"
IDLE_EXIT_S = 300  # seconds with no stage connected before the daemon exits: an edit-and-rerun loop
START_TIMEOUT_S = 120  # for a new daemon to import MLflow and open the store, on a busy machine
# What the daemon's process inherits of the stage's environment: where to find programs and
# temporary folders, the locale, and the user's opt-out of MLflow's usage telemetry. No
# credential: the daemon serves a local file.
INHERITED_ENV = (
    *("PATH", "PYTHONPATH", "VIRTUAL_ENV", "HOME", "USER", "LOGNAME"),
    *("LANG", "LC_ALL", "LC_CTYPE", "TMPDIR", "XDG_RUNTIME_DIR"),
    *("DO_NOT_TRACK", "MLFLOW_DISABLE_TELEMETRY"),
)
_started: list[subprocess.Popen] = []  # daemons this process started, kept so none is reaped as garbage


def open_run_store() -> RunStore | DaemonClient:
    """The store of `store.tracking_uri()`: through its daemon when it is a local SQLite file."""
    uri = tracking_uri()
    if served_by_daemon(uri):
        return DaemonClient(uri)
    from torchtrack.tracking.backend.store import connect

    return RunStore(connect(uri))


def served_by_daemon(uri: str) -> bool:
    """Whether stages reach the store `uri` through its daemon: a local SQLite file, unless
    TORCHTRACK_STORE_DAEMON=0."""
    return uri.startswith("sqlite:///") and os.environ.get(DAEMON_ENV) != "0"


@timed("store open")
def start_daemon_ahead(logs_model: bool = False) -> None:
    """Start the daemon of this stage's store when it has one and none answers, and return at
    once: the daemon imports MLflow and opens the store while the stage imports its own
    libraries. It holds the lock that `connect_daemon` takes until it listens, so the stage's
    first call waits for it there, and no other stage starts a second one. A stage that
    `logs_model` and finds the daemon listening has it prepare model logging while the stage
    imports, when it makes no call that would wait for that work.

    Only a head start: a store not made yet is left for the stage's first call to make (a stage
    whose input is bad leaves none), and what stops the daemon (an unsafe private folder, a
    store that cannot be opened) for that call to say, in its one line.
    """
    uri = tracking_uri()
    if not served_by_daemon(uri) or not Path(uri.removeprefix("sqlite:///")).is_file():
        return
    try:
        address = daemon_address(uri)
        held = lock(address.with_suffix(".lock"), wait=False)
        if held is None:  # a stage is connecting, or a daemon is starting
            return
        try:
            connection = hello(address)
        except (OSError, EOFError):  # none started, or the socket file of one that was killed
            address.with_suffix(".sock").unlink(missing_ok=True)
            spawn_daemon(uri, address, lock_fd=held)
            return
        finally:
            os.close(held)  # a new daemon holds its own copy until it listens
        with connection:
            if logs_model:
                send(connection, {"call": "prepare_model_logging", "args": {}})
                receive(connection)
    except (PipelineError, OSError, EOFError):
        return


def daemon_address(uri: str) -> Path:
    """Where the daemon of `uri` listens (ADDRESS.sock), locks (ADDRESS.lock) and logs (ADDRESS.log)."""
    package = Path(__file__).resolve().parents[1]  # torchtrack/
    code = max(path.stat().st_mtime_ns for path in package.rglob("*.py"))
    key = hashlib.sha256(f"{uri}\0{sys.executable}\0{package}\0{code}".encode()).hexdigest()[:16]
    return private_dir() / f"daemon-{key}"


class DaemonClient:
    """The calls of calls.CALLS, each one made by the store daemon of `uri` and answered when done."""

    def __init__(self, uri: str):
        self.uri = uri
        self.address = daemon_address(uri)
        self._socket: socket.socket | None = None

    def __getattr__(self, name: str) -> Any:
        if name not in CALLS:
            raise AttributeError(name)
        return functools.partial(self._call, name)

    def _call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        request = {"call": name, "args": bind(name, args, kwargs)}
        connection = self._connection()
        try:
            send(connection, request)
            answer = receive(connection)
        except (OSError, EOFError) as exc:
            self.close()
            raise TrackingStoreError(
                f"the store daemon of {self.uri} stopped answering ({type(exc).__name__}); "
                f"its log: {self.address.with_suffix('.log')}"
            ) from None
        except BaseException:  # a second Ctrl-C mid-call: the answer would arrive out of step
            self.close()
            raise
        if "error" in answer:
            raise error_from(answer["error"])
        return answer["value"]

    @timed("store open")
    def _connection(self) -> socket.socket:
        if self._socket is None:
            self._socket = connect_daemon(self.uri, self.address)
        return self._socket

    def close(self) -> None:
        """Hang up (the daemon counts this stage gone); the next call connects again."""
        if self._socket is not None:
            self._socket.close()
            self._socket = None


def connect_daemon(uri: str, address: Path) -> socket.socket:
    """A connection to the daemon of `uri`, started first when none answers.

    Under the daemon's lock, which it takes to exit, so a daemon never exits between this
    connection's start and the daemon counting it.
    """
    with locked(address.with_suffix(".lock")):
        try:
            return hello(address)
        except (OSError, EOFError):  # none started, or the socket file of one that was killed
            address.with_suffix(".sock").unlink(missing_ok=True)
        start_daemon(uri, address)
        return hello(address)


def hello(address: Path) -> socket.socket:
    """A connection to the daemon listening at `address`, of this user's, which has answered HELLO."""
    connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        connection.settimeout(START_TIMEOUT_S)
        connection.connect(str(address.with_suffix(".sock")))
        check_peer(connection, f"the process listening at {address.with_suffix('.sock')}")
        send(connection, HELLO)
        if receive(connection) != HELLO:  # GONE: the next stage must open the new file
            raise EOFError("not the daemon of the store's current file")
        connection.settimeout(None)  # a call may take long: a folder of artifacts
    except BaseException:
        connection.close()
        raise
    return connection


def start_daemon(uri: str, address: Path) -> subprocess.Popen:
    """The daemon of `uri` (spawn_daemon), listening once this returns. It says on a pipe that it
    is ready, or why it could not open the store (one line, raised here as its error)."""
    ready, ready_w = os.pipe()
    try:
        try:
            process = spawn_daemon(uri, address, ready_fd=ready_w)
        finally:
            os.close(ready_w)
        said = _read_until_closed(ready, START_TIMEOUT_S)
    finally:
        os.close(ready)
    answer = json.loads(said) if said.strip() else {}
    if "error" in answer:
        process.wait()
        raise error_from(answer["error"])
    if answer.get("ready") is not True:
        process.kill()
        log = address.with_suffix(".log")
        raise TrackingStoreError(f"the store daemon of {uri} did not start; its log: {log}")
    return process


def spawn_daemon(uri: str, address: Path, ready_fd: int = -1, lock_fd: int = -1) -> subprocess.Popen:
    """A new daemon process of `uri`, in its own session (no signal to the stage's process group
    reaches it) and with no stream of the stage's (dvc waits for those to close). It writes on
    `ready_fd` whether it listens, and holds its copy of `lock_fd` (a descriptor of `lock`) until
    then; -1: none."""
    log = open_private(address.with_suffix(".log"))
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", DAEMON_MODULE, uri, str(address), str(ready_fd), str(lock_fd)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=log,
            pass_fds=tuple(fd for fd in (ready_fd, lock_fd) if fd >= 0),
            start_new_session=True,
            cwd="/",
            env=daemon_environment(uri),
        )
    finally:
        os.close(log)
    _started.append(process)
    return process


def daemon_environment(uri: str) -> dict[str, str]:
    """The daemon's environment: INHERITED_ENV, the store as MLflow's tracking URI (the one its
    model logging reads), and PREDICTION_DEVICE. Set once here; the daemon never changes it."""
    inherited = {name: os.environ[name] for name in INHERITED_ENV if name in os.environ}
    return inherited | PREDICTION_DEVICE | {"MLFLOW_TRACKING_URI": uri}


def _read_until_closed(fd: int, timeout: float) -> str:
    """What the daemon writes on its ready pipe before it closes it (or dies)."""
    data, deadline = b"", time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        if select.select([fd], [], [], left)[0]:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            data += chunk
    return data.decode(errors="replace")


def stop_daemons(folder: Path) -> None:
    """End the daemons of every store under `folder` (a benchmark's or a test suite's temporary
    repositories) without waiting IDLE_EXIT_S, and wait for them to go."""
    import psutil

    prefix = f"sqlite:///{Path(folder).resolve()}/"
    daemons = []
    for process in psutil.process_iter(["cmdline"]):
        cmdline = process.info["cmdline"] or []
        if DAEMON_MODULE in cmdline[:-1] and cmdline[cmdline.index(DAEMON_MODULE) + 1].startswith(prefix):
            daemons.append(process)
            process.terminate()
    psutil.wait_procs(daemons, timeout=30)


def prepare_run_id(prepared_md5: str) -> str | None:
    """backend/lineage.find_prepare_run through the stage's way to the store, so that train need
    not import MLflow."""
    return _ask_store("prepare_run_id", prepared_md5)


def model_run_id(model_file: Path) -> str:
    """The id of backend/lineage.find_model_run's run (this DVC experiment's, if any), found
    through the stage's way to the store, so that evaluate need not import MLflow."""
    return _ask_store("model_run_id", str(Path(model_file).resolve()), os.environ.get("DVC_EXP_NAME"))


def _ask_store(method: str, *args: str | None) -> str | None:
    """RunStore.`method`(*args) through open_run_store."""
    store = open_run_store()
    try:
        return getattr(store, method)(*args)
    finally:
        store.close()
