"""SIGTERM handled like Ctrl-C, so a stage stopped by `kill`, a scheduler or a container
runtime cleans up the same way: runs end KILLED, buffered metrics are written, files are
closed. Without a handler SIGTERM ends the process at once and no `finally` runs.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived; a KeyboardInterrupt, so every cleanup written for Ctrl-C runs for it too."""


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated(f"signal {signum}")


@contextmanager
def sigterm_raises_terminated() -> Iterator[None]:
    """Within the block, SIGTERM raises `Terminated` where the main thread is; restored after."""
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
