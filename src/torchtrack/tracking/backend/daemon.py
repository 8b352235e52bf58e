"""The store daemon: one process per local SQLite store, holding MLflow imported and the store
open, serving the RunStore calls of every stage (client.py is a stage's end).

    python -m torchtrack.tracking.backend.daemon URI ADDRESS    (started by the first stage that needs it)
"""

from __future__ import annotations

import io
import os
import pickle
import socket
import sys
import threading
import time
from contextlib import redirect_stderr
from pathlib import Path

from torchtrack.errors import TrackingStoreError
from torchtrack.tracking.backend.run_store import RunStore
from torchtrack.tracking.client import IDLE_EXIT_S
from torchtrack.tracking.wire import GONE, HELLO, receive, send


class Daemon:
    """Serves RunStore calls for every stage of one store, until idle for IDLE_EXIT_S seconds."""

    def __init__(self, uri: str, address: Path):
        from torchtrack.tracking.backend.store import open_store

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
