"""Where a stage's wall time goes: exclusive time per phase (imports, data, training, ...).

Phases nest: time spent in an inner phase (tracking calls made while training) counts
for the inner phase only. When TORCHTRACK_PROFILE names a file, each stage appends one
JSON line with its phases there (`make bench` reads them); otherwise nothing is written.
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
_stack: list[str] = []


@contextmanager
def phase(name: str) -> Iterator[None]:
    """Attribute the enclosed wall time to `name`, minus any phases nested inside it."""
    start = time.perf_counter()
    _stack.append(name)
    try:
        yield
    finally:
        _stack.pop()
        elapsed = time.perf_counter() - start
        _seconds[name] += elapsed
        if _stack:
            _seconds[_stack[-1]] -= elapsed


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
    """Exclusive seconds per phase so far in this process."""
    return dict(_seconds)


def report(stage: str, started: float) -> None:
    """Append this process's phases (and its wall time since `started`) to $TORCHTRACK_PROFILE."""
    path = os.environ.get(PROFILE_ENV)
    if not path:
        return
    record = {"stage": stage, "wall": time.perf_counter() - started, "phases": seconds()}
    with open(path, "a") as out:
        out.write(json.dumps(record) + "\n")
