"""Where a stage's time goes: exclusive wall and CPU time per phase (imports, data, training, ...).

Phases nest: time spent in an inner phase (tracking calls made while training) counts
for the inner phase only. CPU time (`time.process_time`, all threads of this process) is
the figure that a busy machine does not distort. When TORCHTRACK_PROFILE names a file, each
stage appends one JSON line with its phases there (`make bench` reads them); otherwise
nothing is written.
"""

from __future__ import annotations

import functools
import json
import os
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

PROFILE_ENV = "TORCHTRACK_PROFILE"
_seconds: dict[str, float] = defaultdict(float)
_cpu_seconds: dict[str, float] = defaultdict(float)
_stack: list[str] = []


@contextmanager
def phase(name: str) -> Iterator[None]:
    """Attribute the enclosed wall and CPU time to `name`, minus any phases nested inside it."""
    start, start_cpu = time.perf_counter(), time.process_time()
    _stack.append(name)
    try:
        yield
    finally:
        _stack.pop()
        elapsed, elapsed_cpu = time.perf_counter() - start, time.process_time() - start_cpu
        _seconds[name] += elapsed
        _cpu_seconds[name] += elapsed_cpu
        if _stack:
            _seconds[_stack[-1]] -= elapsed
            _cpu_seconds[_stack[-1]] -= elapsed_cpu


def timed(name: str) -> Callable:
    """Decorator form of `phase`."""

    def decorate(function: Callable) -> Callable:
        @functools.wraps(function)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with phase(name):
                return function(*args, **kwargs)

        return wrapper

    return decorate


def seconds() -> dict[str, float]:
    """Exclusive wall seconds per phase so far in this process."""
    return dict(_seconds)


def cpu_seconds() -> dict[str, float]:
    """Exclusive CPU seconds per phase so far in this process."""
    return dict(_cpu_seconds)


def report(stage: str, started: float, started_cpu: float = 0.0) -> None:
    """Append this process's phases to $TORCHTRACK_PROFILE: wall time since `started`, CPU time
    so far, and the CPU time spent before `started_cpu` (interpreter start, the CLI's import)."""
    path = os.environ.get(PROFILE_ENV)
    if not path:
        return
    record = {
        "stage": stage,
        "wall": time.perf_counter() - started,
        "cpu": time.process_time(),
        "cpu_before_main": started_cpu,
        "phases": seconds(),
        "cpu_phases": cpu_seconds(),
    }
    with open(path, "a") as out:
        out.write(json.dumps(record) + "\n")
