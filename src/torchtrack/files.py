"""Atomic output writes: a temporary file beside the target, then a rename.

A crash mid-write leaves the previous file (or none), never a half-written one.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any


def write_atomic(path: Path, write: Callable[[Path], Any], shared: bool = False) -> None:
    """Call `write(tmp)` for a temporary path beside `path`, then rename it into place.

    `shared`: other processes may write the same file at once (the nodes of a training run
    sharing one folder), so the temporary file is named after this process. Otherwise its name
    is fixed, since torch.save records it inside the file: a model's bytes must not vary.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp" if shared else f".{path.name}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Indented JSON with a trailing newline, written atomically."""
    write_atomic(path, lambda tmp: tmp.write_text(json.dumps(data, indent=2) + "\n"))


def read_json(path: Path) -> dict[str, Any]:
    """JSON from `path`."""
    return json.loads(Path(path).read_text())
