"""Stop signals, handled so that a stage stopped part-way cleans up and writes nothing by halves.

SIGTERM (from `kill`, a scheduler, a container runtime) is handled like Ctrl-C: it raises
`Terminated`, a KeyboardInterrupt, so the same cleanup runs (runs end KILLED, buffered
metrics are written); by default SIGTERM ends the process with no cleanup at all.

A signal raises where the main thread happens to be, which can be half-way through a
library's bookkeeping: a Ctrl-C inside TensorBoard's writer once left its queue waiting two
minutes for an event it never announced. Code that must not be cut in half runs inside
`uninterrupted()`: a first signal there waits for the block to end; a second raises at once.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived; a KeyboardInterrupt, so every cleanup written for Ctrl-C runs for it too."""


_depth = 0  # how many uninterrupted() blocks the main thread is in
_pending: KeyboardInterrupt | None = None  # a signal that arrived inside one, raised at its end


def _raise_stop(signum: int, frame: object) -> None:
    global _pending
    stop = Terminated(f"signal {signum}") if signum == signal.SIGTERM else KeyboardInterrupt()
    if _depth and _pending is None:
        _pending = stop
        return
    raise stop


@contextmanager
def stop_signals_raise() -> Iterator[None]:
    """Within the block, SIGINT raises KeyboardInterrupt and SIGTERM raises `Terminated`.

    Both are deferred inside `uninterrupted()` blocks. The previous handlers come back after.
    """
    previous = {signum: signal.signal(signum, _raise_stop) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


@contextmanager
def uninterrupted() -> Iterator[None]:
    """A block that a first stop signal does not cut in half: it is raised when the block ends."""
    global _depth, _pending
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1
        if not _depth and _pending is not None:
            stop, _pending = _pending, None
            raise stop
