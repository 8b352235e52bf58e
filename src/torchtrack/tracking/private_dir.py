"""The folder only this user can enter, where the store daemon's socket, locks and log live.

`$XDG_RUNTIME_DIR/torchtrack/` where that variable names a folder, else `torchtrack-<uid>/` in
the temporary folder: created 0700 and, before every use, checked (without following a link)
to be a folder of this user's with mode 0700. Another account that made it first, or a link in
its place, is refused in one line; nothing is then sent to it, read from it or written in it.
Files inside are created 0600 and never through a link.
"""

from __future__ import annotations

import fcntl
import os
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from torchtrack.errors import UnsafePlaceError

MODE = 0o700  # this user only: as ssh-agent's and PostgreSQL's socket folders
ELSEWHERE = "set TMPDIR to a folder of yours"


def private_dir() -> Path:
    """This user's private folder, made if missing and checked."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isdir(runtime):
        folder = Path(runtime) / "torchtrack"
    else:
        folder = Path(tempfile.gettempdir()) / f"torchtrack-{os.geteuid()}"
    return ensure_private(folder)


def ensure_private(folder: Path) -> Path:
    """`folder`, made 0700 if missing, once `check_private` holds for it."""
    try:
        folder.mkdir(mode=MODE)
    except FileExistsError:
        pass
    except OSError as exc:
        raise UnsafePlaceError(f"cannot make {folder} ({exc.strerror}): {ELSEWHERE}") from None
    check_private(folder)
    return folder


def check_private(folder: Path) -> None:
    """Raise UnsafePlaceError unless `folder` is a folder (not a link) of this user's, mode 0700."""
    try:
        info = os.lstat(folder)
    except OSError as exc:
        raise UnsafePlaceError(f"cannot check {folder} ({exc.strerror}): {ELSEWHERE}") from None
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        raise UnsafePlaceError(f"{folder} is not a folder (a link or a file): remove it or set TMPDIR")
    if info.st_uid != os.geteuid():
        raise UnsafePlaceError(f"{folder} is owned by uid {info.st_uid}, not you: remove it or set TMPDIR")
    mode = stat.S_IMODE(info.st_mode)
    if mode != MODE:
        raise UnsafePlaceError(f"{folder} has mode {mode:o}, not {MODE:o}: chmod it {MODE:o} or remove it")


def open_private(path: Path, flags: int = os.O_WRONLY | os.O_APPEND) -> int:
    """A descriptor of `path` in a checked private folder, created 0600, never through a link."""
    check_private(path.parent)
    try:
        fd = os.open(path, flags | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise UnsafePlaceError(f"cannot open {path} ({exc.strerror}): remove it") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid():
        os.close(fd)
        raise UnsafePlaceError(f"{path} is not a file of yours: remove it")
    return fd


def lock(path: Path, wait: bool = True) -> int | None:
    """A descriptor holding an exclusive lock on the file `path` (see open_private), or None at
    once, with `wait=False`, when another process holds it. The lock is held until every copy
    of the descriptor is closed: a child process that inherits one holds it after this one's."""
    fd = open_private(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    return fd


@contextmanager
def locked(path: Path, wait: bool = True) -> Iterator[bool]:
    """Hold `lock(path, wait)` for the duration; yields whether it is held (False only with
    `wait=False`, when another process holds it)."""
    fd = lock(path, wait)
    try:
        yield fd is not None
    finally:
        if fd is not None:
            os.close(fd)  # releases the lock
