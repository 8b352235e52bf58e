"""Which process owns an MLflow run, and whether that process still exists.

A run records its owner when it starts. A run still RUNNING whose owner is gone was ended
without a chance to say so (SIGKILL, the OOM killer, a power cut), and can be marked KILLED.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass

import psutil

HOST_TAG = "torchtrack.host"
PID_TAG = "torchtrack.pid"
STARTED_TAG = "torchtrack.process_started"  # tells a reused pid from the original process


@dataclass(frozen=True)
class ProcessIdentity:
    """A process on a host: its pid and creation time (seconds since the epoch)."""

    host: str
    pid: int
    started: float

    @classmethod
    def current(cls) -> ProcessIdentity:
        """This process."""
        process = psutil.Process()
        return cls(socket.gethostname(), process.pid, process.create_time())

    def as_tags(self) -> dict[str, str]:
        """The identity as MLflow run tags."""
        return {HOST_TAG: self.host, PID_TAG: str(self.pid), STARTED_TAG: f"{self.started:.3f}"}

    @classmethod
    def from_tags(cls, tags: dict[str, str]) -> ProcessIdentity | None:
        """The identity `as_tags` wrote, or None when the tags do not hold one."""
        try:
            return cls(tags[HOST_TAG], int(tags[PID_TAG]), float(tags[STARTED_TAG]))
        except (KeyError, ValueError):
            return None

    def is_gone(self) -> bool:
        """True when this is a process of this host that no longer runs (False for other hosts)."""
        if self.host != socket.gethostname():
            return False
        try:
            process = psutil.Process(self.pid)
            # A pid reused by a newer process has another creation time; a zombie has exited.
            return abs(process.create_time() - self.started) > 1.0 or process.status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return True
        except psutil.AccessDenied:  # exists, owned by someone else
            return False
