"""A stage's end of the store daemon (backend/daemon.py): one process per local SQLite store,
holding MLflow imported and the store open, so that a stage talking to it over a Unix socket
never imports MLflow (about two seconds of CPU per stage, `make bench`).

`open_run_store()` is a stage's way to the store: for the local SQLite store a `DaemonClient`,
which starts the daemon when none answers; for a remote tracking URI (a team server) or with
TORCHTRACK_STORE_DAEMON=0, a `RunStore` in the stage's own process. Both have RunStore's methods,
model logging and the system metrics monitor included, so no stage imports MLflow on the daemon's
path. A monitor runs until its stage stops it or hangs up (is killed).

Every call waits for the daemon's answer, sent once the store has the record, so a stage that
returned from a call may be killed without losing it. Calls from all stages run one at a time,
each in its caller's environment and working directory, and what a call prints to stderr goes
to its caller's stderr: a call behaves as it would in the stage's process. The daemon exits
after IDLE_EXIT_S seconds with no stage connected; it is keyed by the store, the interpreter
and this package's files, so a changed torchtrack never runs in a daemon started before.
"""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from torchtrack.errors import TrackingStoreError
from torchtrack.profiling import timed
from torchtrack.tracking.backend.run_store import RunStore
from torchtrack.tracking.location import tracking_uri
from torchtrack.tracking.wire import HELLO, receive, send

DAEMON_ENV = "TORCHTRACK_STORE_DAEMON"  # "0": every stage opens the store itself
IDLE_EXIT_S = 300  # seconds with no stage connected before the daemon exits: an edit-and-rerun loop
START_TIMEOUT_S = 120  # for a new daemon to import MLflow and open the store, on a busy machine
_started: list[subprocess.Popen] = []  # daemons this process started, kept so none is reaped as garbage


def open_run_store() -> RunStore | DaemonClient:
    """The store of `store.tracking_uri()`: through its daemon when it is a local SQLite file."""
    uri = tracking_uri()
    if uri.startswith("sqlite:///") and os.environ.get(DAEMON_ENV) != "0":
        return DaemonClient(uri)
    from torchtrack.tracking.backend.store import connect

    return RunStore(connect(uri))


def daemon_address(uri: str) -> Path:
    """Where the daemon of `uri` listens (ADDRESS.sock), locks (ADDRESS.lock) and logs (ADDRESS.log)."""
    package = Path(__file__).resolve().parents[1]  # torchtrack/
    code = max(path.stat().st_mtime_ns for path in package.rglob("*.py"))
    key = hashlib.sha256(f"{uri}\0{sys.executable}\0{package}\0{code}".encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"torchtrack-daemon-{key}"


class DaemonClient:
    """RunStore's methods, each one made by the store daemon of `uri` and answered when done."""

    def __init__(self, uri: str):
        self.uri = uri
        self.address = daemon_address(uri)
        self._socket: socket.socket | None = None

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or not callable(getattr(RunStore, name, None)):
            raise AttributeError(name)
        return lambda *args, **kwargs: self._call(name, args, kwargs)

    def _call(self, name: str, args: tuple, kwargs: dict) -> Any:
        connection = self._connection()
        try:
            send(connection, (name, args, kwargs, dict(os.environ), os.getcwd()))
            ok, value, printed = receive(connection)
        except (OSError, EOFError) as exc:
            self.close()
            raise TrackingStoreError(
                f"the store daemon of {self.uri} stopped answering ({type(exc).__name__}); "
                f"its log: {self.address.with_suffix('.log')}"
            ) from None
        except BaseException:  # a second Ctrl-C mid-call: the answer would arrive out of step
            self.close()
            raise
        sys.stderr.write(printed)
        if not ok:
            raise value
        return value

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
    from filelock import FileLock

    with FileLock(address.with_suffix(".lock")):
        try:
            return hello(address)
        except (OSError, EOFError):  # none started, or the socket file of one that was killed
            address.with_suffix(".sock").unlink(missing_ok=True)
        process = start_daemon(uri, address)
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                return hello(address)
            except (OSError, EOFError):
                if process.poll() is not None or time.monotonic() > deadline:
                    process.kill()
                    raise TrackingStoreError(
                        f"the store daemon of {uri} did not start; its log: {address.with_suffix('.log')}"
                    ) from None
                time.sleep(0.02)


def hello(address: Path) -> socket.socket:
    """A connection to the daemon listening at `address`, which has answered HELLO."""
    connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        connection.settimeout(START_TIMEOUT_S)
        connection.connect(str(address.with_suffix(".sock")))
        send(connection, HELLO)
        if receive(connection) != HELLO:  # GONE: the next stage must open the new file
            raise EOFError("not the daemon of the store's current file")
        connection.settimeout(None)  # a call may take long: a folder of artifacts
    except BaseException:
        connection.close()
        raise
    return connection


def start_daemon(uri: str, address: Path) -> subprocess.Popen:
    """The daemon of `uri`, in its own session (no signal to the stage's process group reaches
    it) and with no stream of the stage's (dvc waits for those to close)."""
    with address.with_suffix(".log").open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "torchtrack.tracking.backend.daemon", uri, str(address)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=log,
            start_new_session=True,
            cwd="/",
        )
    _started.append(process)
    return process


def stop_daemons(folder: Path) -> None:
    """End the daemons of every store under `folder` (a benchmark's or a test suite's temporary
    repositories) without waiting IDLE_EXIT_S, and wait for them to go."""
    import psutil

    prefix = f"sqlite:///{Path(folder).resolve()}/"
    daemons = []
    for process in psutil.process_iter(["cmdline"]):
        cmdline = process.info["cmdline"] or []
        if cmdline[-3:-2] == ["torchtrack.tracking.backend.daemon"] and cmdline[-2].startswith(prefix):
            daemons.append(process)
            process.terminate()
    psutil.wait_procs(daemons, timeout=30)


def prepare_run_id(prepared_md5: str) -> str | None:
    """backend/lineage.find_prepare_run through the stage's way to the store, so that train need
    not import MLflow."""
    return _ask_store("prepare_run_id", prepared_md5)


def model_run_id(model_file: Path) -> str:
    """The id of backend/lineage.find_model_run's run, found through the stage's way to the store,
    so that evaluate need not import MLflow."""
    return _ask_store("model_run_id", str(model_file))


def _ask_store(method: str, *args: str) -> str | None:
    """RunStore.`method`(*args) through open_run_store."""
    store = open_run_store()
    try:
        return getattr(store, method)(*args)
    finally:
        store.close()
