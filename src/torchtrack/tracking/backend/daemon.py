"""The store daemon: one process per local SQLite store, holding MLflow imported and the store
open, serving the calls (calls.py) of every stage of this user's (client.py is a stage's end).

    python -m torchtrack.tracking.backend.daemon URI ADDRESS READY_FD LOCK_FD    (started by client.py)

Each connection is a `Session`: its calls, checked against calls.CALLS, and the system metrics
monitors it started, stopped when it hangs up. A call gets its arguments and nothing else; the
process's environment and working folder are set once, when it is started, and never changed.
A stage that opens a model run has the daemon make ready, in the background, what its first
model logging needs, and warms up matplotlib for its figures: the daemon renders the stages'
figures (figures.py) and sends back their bytes for the stage to write.
"""

from __future__ import annotations

import base64
import io
import json
import os
import signal
import socket
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

from torchtrack import figures
from torchtrack.errors import PipelineError, TrackingStoreError, UnsafePlaceError
from torchtrack.tracking.backend.run_store import RunStore
from torchtrack.tracking.calls import bind
from torchtrack.tracking.client import IDLE_EXIT_S, START_TIMEOUT_S
from torchtrack.tracking.peer import peer_uid
from torchtrack.tracking.private_dir import check_private, locked
from torchtrack.tracking.wire import GONE, HELLO, error_value, receive, send


class Daemon:
    """Serves the calls of every stage of one store, until idle for IDLE_EXIT_S seconds.

    Calls of different stages run at once: SQLite's busy timeout orders their writes. Only model
    logging and registering, which go through MLflow's process-wide fluent state (the active run),
    take `fluent`, one at a time.
    """

    def __init__(self, uri: str, address: Path):
        from torchtrack.tracking.backend.store import open_store

        check_private(address.parent)
        self.address = address
        self.database = Path(uri.removeprefix("sqlite:///"))
        self.store = RunStore(open_store(uri))
        self.opened = identity(self.database)  # the file open_store opened (or created)
        self.fluent = threading.Lock()
        self.drawing = threading.Lock()  # one figure at a time: matplotlib's font and text caches are shared
        self.counting = threading.Lock()
        self.connected = 0
        self.preparing: threading.Thread | None = None  # prepare_model_logging's work, once
        self.last_seen = time.monotonic()
        os.umask(0o077)
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(str(address.with_suffix(".sock")))
        self.listening = identity(address.with_suffix(".sock"))  # the socket file this daemon bound
        self.listener.listen(64)

    def serve(self) -> None:
        """Answer each connection of this user's in a thread; refuse any other's unread."""
        threading.Thread(target=self.exit_when_idle, daemon=True).start()
        while True:
            connection, _ = self.listener.accept()
            uid = peer_uid(connection)
            if uid != os.geteuid():
                print(f"refused a connection from uid {uid}", file=sys.stderr, flush=True)
                connection.close()
                continue
            with self.counting:
                self.connected += 1
            threading.Thread(target=self.answer, args=(connection,), daemon=True).start()

    def answer(self, connection: socket.socket) -> None:
        """Answer one stage's calls until it hangs up (or is killed); then end its session."""
        session = Session(self)
        try:
            while True:
                request = receive(connection)
                if request == HELLO:
                    send(connection, HELLO if self.store_is_current() else GONE)
                else:
                    send(connection, session.call(request))
        except (OSError, EOFError):
            pass
        except (ValueError, TrackingStoreError) as exc:  # not JSON, or over MAX_FRAME: out of step
            print(f"hung up on a stage: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        finally:
            connection.close()
            session.end()
            with self.counting:
                self.connected -= 1
                self.last_seen = time.monotonic()

    def prepare_model_logging(self) -> None:
        """Start, the first time only, and return: its stage trains meanwhile. In the background,
        warm up the figures (figures.warm_up: matplotlib's import, a first render) and then
        RunStore.prepare_model_logging, each under the lock of the work it readies (`drawing`,
        `fluent`), so that the stage's figure and first model logging wait for it rather than do
        the same work at once. Done here, while a model run's stage trains, not as the daemon
        starts, when the stages before it wait for the daemon's first answers. A failure only
        goes to the log; the call that needed the work then says what is wrong."""
        with self.counting:
            if self.preparing is not None:
                return
            self.preparing = threading.Thread(target=self._prepare_model_run, daemon=True)
        self.preparing.start()

    def _prepare_model_run(self) -> None:
        for lock, work in ((self.drawing, figures.warm_up), (self.fluent, self.store.prepare_model_logging)):
            with lock:
                try:
                    work()
                except Exception:
                    traceback.print_exc()

    def store_is_current(self) -> bool:
        """Whether the store's file is the one this daemon opened: not deleted, nor replaced by a
        new store (whose records would otherwise go to the deleted file)."""
        return identity(self.database) == self.opened

    def exit_when_idle(self) -> None:
        """Exit once no stage has been connected for IDLE_EXIT_S seconds, or at once when the
        store's file is gone or replaced, under the lock that a stage connects under."""
        while True:
            time.sleep(1.0)
            with self.counting:
                idle = time.monotonic() - self.last_seen >= IDLE_EXIT_S or not self.store_is_current()
                if self.connected or not idle:
                    continue
            try:
                with locked(self.address.with_suffix(".lock"), wait=False) as acquired, self.counting:
                    if acquired and not self.connected:
                        if identity(self.address.with_suffix(".sock")) == self.listening:  # not a successor's
                            self.address.with_suffix(".sock").unlink()
                        os._exit(0)
            except UnsafePlaceError as exc:  # its folder was tampered with: serve no more
                print(exc, file=sys.stderr, flush=True)
                os._exit(1)


class Session:
    """One stage's connection: its calls, and the system metrics monitors it started, which
    `end` stops (a killed stage's monitor would sample on into its run)."""

    def __init__(self, daemon: Daemon):
        self.store = daemon.store
        self.fluent = daemon.fluent
        self.drawing = daemon.drawing
        self.monitored: set[str] = set()
        store = self.store
        # calls.CALLS's methods, each with its handler.
        self.handlers = {
            "experiment_id": store.experiment_id,
            "end_runs_of_gone_processes": store.end_runs_of_gone_processes,
            "create_run": store.create_run,
            "unfinished_model_run": store.unfinished_model_run,
            "reopen_run": store.reopen_run,
            "log_batch": store.log_batch,
            "log_text": store.log_text,
            "log_artifact": store.log_artifact,
            "log_artifacts": store.log_artifacts,
            "set_tag": store.set_tag,
            "set_terminated": store.set_terminated,
            "log_inputs": store.log_inputs,
            "prepare_run_id": store.prepare_run_id,
            "model_run_id": store.model_run_id,
            "record_test_metrics": store.record_test_metrics,
            "prepare_model_logging": daemon.prepare_model_logging,
            "log_model": self.log_model,
            "register_model": self.register_model,
            "start_system_metrics": self.start_system_metrics,
            "stop_system_metrics": self.stop_system_metrics,
            "render_figure": self.render_figure,
        }

    def call(self, request: Any) -> dict[str, Any]:
        """{"value": result} or {"error": {kind, message}} of the call `request` names."""
        try:
            if not isinstance(request, dict) or not isinstance(request.get("args"), dict):
                raise TrackingStoreError("the store daemon got a message that is not a call")
            method = request.get("call")
            arguments = bind(method, kwargs=request["args"])
            return {"value": self.handlers[method](**arguments)}
        except Exception as exc:
            return {"error": error_value(exc)}

    def log_model(self, **arguments: Any) -> str:
        """RunStore.log_model, one at a time (MLflow's active run is the process's)."""
        with self.fluent:
            return self.store.log_model(**arguments)

    def register_model(self, **arguments: Any) -> str:
        """RunStore.register_model, one at a time (see log_model)."""
        with self.fluent:
            return self.store.register_model(**arguments)

    def start_system_metrics(self, run_id: str, every_s: float) -> None:
        """RunStore.start_system_metrics, stopped by `end` if the stage does not stop it."""
        self.store.start_system_metrics(run_id, every_s)
        self.monitored.add(run_id)

    def stop_system_metrics(self, run_id: str) -> None:
        """RunStore.stop_system_metrics."""
        self.monitored.discard(run_id)
        self.store.stop_system_metrics(run_id)

    def render_figure(self, kind: str, table: Any, image_format: str) -> str:
        """figures.render's bytes of the figure `kind` of `table`, in base64, one figure at a time."""
        figures.check_table(kind, table)
        image = io.BytesIO()
        with self.drawing:
            figures.render(kind, table, image, image_format)
        return base64.b64encode(image.getvalue()).decode("ascii")

    def end(self) -> None:
        """Stop the monitors this session started and did not stop."""
        for run_id in list(self.monitored):
            self.stop_system_metrics(run_id)


def identity(path: Path) -> tuple[int, int] | None:
    """(device, inode) of the file at `path`, None when there is none."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return stat.st_dev, stat.st_ino


def startup_error(exc: Exception, database: Path) -> dict[str, str]:
    """Why the daemon could not start, as it crosses to the stage that started it: the error's own
    one line when it is torchtrack's, else the store's file and the deepest cause's first line
    (SQLite's reason, "database disk image is malformed", under SQLAlchemy's and MLflow's)."""
    if isinstance(exc, PipelineError):
        return error_value(exc)
    cause: BaseException = exc
    while (cause.__cause__ or cause.__context__) is not None:
        cause = cause.__cause__ or cause.__context__
    reason = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
    message = f"the MLflow store {database} cannot be opened: {reason}"
    return {"kind": "TrackingStoreError", "message": message}


def main(uri: str, address: Path, ready_fd: int, lock_fd: int) -> None:
    """Open the store and listen, say so (or why not) on `ready_fd` and let go of `lock_fd` (the
    lock a stage that did not wait took on `address`), then serve; -1: no such descriptor.
    A start that takes over START_TIMEOUT_S ends the process, and so lets go of the lock too."""
    signal.alarm(START_TIMEOUT_S)
    try:
        daemon = Daemon(uri, address)
    except Exception as exc:
        traceback.print_exc()  # the whole story to the log; the stage gets one line
        say(ready_fd, {"error": startup_error(exc, Path(uri.removeprefix("sqlite:///")))})
        sys.exit(1)
    signal.alarm(0)
    say(ready_fd, {"ready": True})
    if lock_fd >= 0:
        os.close(lock_fd)
    daemon.serve()


def say(fd: int, message: dict[str, Any]) -> None:
    """`message` as JSON on the descriptor `fd`, which is then closed (-1: nobody listens)."""
    if fd >= 0:
        with os.fdopen(fd, "w") as out:
            out.write(json.dumps(message))


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))
