"""The store daemon: one process per local SQLite store, holding MLflow imported and the store
open, so that a stage talking to it over a Unix socket never imports MLflow (about two seconds
of CPU per stage, `make bench`).

    python -m torchtrack.store_daemon URI ADDRESS    (started by the first stage that needs it)

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
import io
import os
import pickle
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import redirect_stderr
from pathlib import Path
from typing import Any

from torchtrack.errors import TrackingStoreError
from torchtrack.profiling import timed
from torchtrack.run_store import RunStore
from torchtrack.store import tracking_uri

DAEMON_ENV = "TORCHTRACK_STORE_DAEMON"  # "0": every stage opens the store itself
IDLE_EXIT_S = 300  # seconds with no stage connected before the daemon exits: an edit-and-rerun loop
START_TIMEOUT_S = 120  # for a new daemon to import MLflow and open the store, on a busy machine
HELLO = "hello"  # the first message on a connection, answered in kind by the daemon of the store
GONE = "gone"  # the answer of a daemon whose store file was deleted or replaced since it opened it
HEADER = struct.Struct("!Q")  # each message: its length, then the pickled value
_started: list[subprocess.Popen] = []  # daemons this process started, kept so none is reaped as garbage


def open_run_store() -> RunStore | DaemonClient:
    """The store of `store.tracking_uri()`: through its daemon when it is a local SQLite file."""
    uri = tracking_uri()
    if uri.startswith("sqlite:///") and os.environ.get(DAEMON_ENV) != "0":
        return DaemonClient(uri)
    from torchtrack.store import connect

    return RunStore(connect(uri))


def daemon_address(uri: str) -> Path:
    """Where the daemon of `uri` listens (ADDRESS.sock), locks (ADDRESS.lock) and logs (ADDRESS.log)."""
    package = Path(__file__).resolve().parent
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
            [sys.executable, "-m", "torchtrack.store_daemon", uri, str(address)],
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
        if cmdline[-3:-2] == ["torchtrack.store_daemon"] and cmdline[-2].startswith(prefix):
            daemons.append(process)
            process.terminate()
    psutil.wait_procs(daemons, timeout=30)


def send(connection: socket.socket, value: Any) -> None:
    """One message."""
    data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    connection.sendall(HEADER.pack(len(data)) + data)


def receive(connection: socket.socket) -> Any:
    """One message; EOFError when the other side has hung up."""
    (size,) = HEADER.unpack(_exactly(connection, HEADER.size))
    return pickle.loads(_exactly(connection, size))


def _exactly(connection: socket.socket, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = connection.recv(min(size - len(data), 1 << 20))
        if not chunk:
            raise EOFError("connection closed")
        data += chunk
    return bytes(data)


class Daemon:
    """Serves RunStore calls for every stage of one store, until idle for IDLE_EXIT_S seconds."""

    def __init__(self, uri: str, address: Path):
        from torchtrack.store import open_store

        self.address = address
        self.database = Path(uri.removeprefix("sqlite:///"))
        self.store = RunStore(open_store(uri))
        self.opened = identity(self.database)  # the file open_store opened (or created)
        self.listening: tuple[int, int] | None = None  # the socket file this daemon bound
        self.calling = threading.Lock()  # one call at a time: each sets the process's env and cwd
        self.counting = threading.Lock()
        self.connected = 0
        self.last_seen = time.monotonic()

    def serve(self) -> None:
        """Listen at ADDRESS.sock (this user only) and answer each connection in a thread."""
        os.umask(0o077)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(self.address.with_suffix(".sock")))
        self.listening = identity(self.address.with_suffix(".sock"))
        listener.listen(64)
        threading.Thread(target=self.exit_when_idle, daemon=True).start()
        while True:
            connection, _ = listener.accept()
            with self.counting:
                self.connected += 1
            threading.Thread(target=self.answer, args=(connection,), daemon=True).start()

    def answer(self, connection: socket.socket) -> None:
        """Answer one stage's calls until it hangs up (or is killed); then stop the system metrics
        monitors it started, so none samples on into the run of a killed stage."""
        monitored = []  # run ids: start_system_metrics(run_id, every_s)'s first argument
        try:
            while True:
                request = receive(connection)
                if request == HELLO:
                    send(connection, HELLO if self.store_is_current() else GONE)
                    continue
                if request[0] == "start_system_metrics":
                    monitored.append(request[1][0])
                send(connection, self.call(*request))
        except (OSError, EOFError):
            pass
        finally:
            connection.close()
            for run_id in monitored:  # a no-op for those the stage stopped itself
                self.store.stop_system_metrics(run_id)
            with self.counting:
                self.connected -= 1
                self.last_seen = time.monotonic()

    def call(self, name: str, args: tuple, kwargs: dict, env: dict[str, str], cwd: str) -> tuple:
        """(True, result, stderr) or (False, error, stderr) of RunStore.`name` in `env` and `cwd`."""
        printed = io.StringIO()
        with self.calling, redirect_stderr(printed):
            try:
                os.environ.clear()
                os.environ.update(env)
                os.chdir(cwd)
                return True, getattr(self.store, name)(*args, **kwargs), printed.getvalue()
            except Exception as exc:
                return False, portable(exc), printed.getvalue()

    def store_is_current(self) -> bool:
        """Whether the store's file is the one this daemon opened: not deleted, nor replaced by a
        new store (whose records would otherwise go to the deleted file)."""
        return identity(self.database) == self.opened

    def exit_when_idle(self) -> None:
        """Exit once no stage has been connected for IDLE_EXIT_S seconds, or at once when the
        store's file is gone or replaced, under the lock that a stage connects under."""
        from filelock import FileLock, Timeout

        lock = FileLock(self.address.with_suffix(".lock"))
        while True:
            time.sleep(1.0)
            with self.counting:
                idle = time.monotonic() - self.last_seen >= IDLE_EXIT_S or not self.store_is_current()
                if self.connected or not idle:
                    continue
            try:
                lock.acquire(timeout=0)
            except Timeout:
                continue
            with self.counting:
                if not self.connected:
                    if identity(self.address.with_suffix(".sock")) == self.listening:  # not a successor's
                        self.address.with_suffix(".sock").unlink()
                    os._exit(0)
            lock.release()


def identity(path: Path) -> tuple[int, int] | None:
    """(device, inode) of the file at `path`, None when there is none."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return stat.st_dev, stat.st_ino


def portable(exc: Exception) -> Exception:
    """`exc` as a stage can unpickle it without importing MLflow: torchtrack's errors and Python's
    own as they are, any other (MLflow's) as a TrackingStoreError with its message."""
    module = type(exc).__module__
    if module == "builtins" or module.startswith("torchtrack."):
        try:
            pickle.loads(pickle.dumps(exc))
            return exc
        except Exception:
            pass
    return TrackingStoreError(f"the MLflow store refused a call: {type(exc).__name__}: {exc}")


if __name__ == "__main__":
    Daemon(sys.argv[1], Path(sys.argv[2])).serve()
