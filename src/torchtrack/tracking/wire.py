"""The store daemon's message format, both ends: a length, then one JSON value of bounded size.

Plain values only (strings, numbers, lists, dicts, None), and a small DataFrame (a model's input
example) as its columns' values and dtypes: nothing that a stage or the daemon decodes can run
code, and a message over MAX_FRAME is refused before it is read. Errors cross as {kind, message}
and become one of the classes in ERRORS again, any other as a TrackingStoreError.
"""

from __future__ import annotations

import builtins
import json
import socket
import struct
from typing import Any

from torchtrack import errors
from torchtrack.errors import TrackingStoreError

HELLO = "hello"  # the first message on a connection, answered in kind by the daemon of the store
GONE = "gone"  # the answer of a daemon whose store file was deleted or replaced since it opened it
HEADER = struct.Struct("!I")  # each message: its length in bytes, then its JSON
MAX_FRAME = 64 << 20  # bytes: every call's values are ids, numbers and paths, or a few rows
FRAME_TAG = "$frame"  # {"$frame": {"columns", "dtypes", "data"}}: a DataFrame
# The errors that cross as themselves: torchtrack's own and Python's usual ones.
ERRORS = {
    cls.__name__: cls
    for cls in [*vars(errors).values(), *vars(builtins).values()]
    if isinstance(cls, type)
    and issubclass(cls, Exception)
    and cls.__module__ in ("torchtrack.errors", "builtins")
}


class FrameTooLarge(TrackingStoreError):
    """A message over MAX_FRAME: refused, not read."""


def send(connection: socket.socket, value: Any) -> None:
    """One message."""
    data = json.dumps(_plain(value), separators=(",", ":"), default=_scalar).encode()
    if len(data) > MAX_FRAME:
        raise FrameTooLarge(f"a store daemon message of {len(data)} bytes is over the {MAX_FRAME}-byte limit")
    connection.sendall(HEADER.pack(len(data)) + data)


def receive(connection: socket.socket) -> Any:
    """One message; EOFError when the other side has hung up, FrameTooLarge (unread) past MAX_FRAME."""
    (size,) = HEADER.unpack(_exactly(connection, HEADER.size))
    if size > MAX_FRAME:
        raise FrameTooLarge(f"a store daemon message of {size} bytes is over the {MAX_FRAME}-byte limit")
    return json.loads(_exactly(connection, size), object_hook=_frame)


def error_value(exc: BaseException) -> dict[str, str]:
    """`exc` as it crosses: its class name where ERRORS has it, else a TrackingStoreError's message."""
    kind = type(exc).__name__
    if ERRORS.get(kind) is type(exc):
        return {"kind": kind, "message": str(exc)}
    return {"kind": "TrackingStoreError", "message": f"the MLflow store refused a call: {kind}: {exc}"}


def error_from(value: dict[str, str]) -> Exception:
    """The error that `error_value` sent; an unknown kind as a TrackingStoreError."""
    message = str(value.get("message"))
    try:
        return ERRORS.get(value.get("kind"), TrackingStoreError)(message)
    except TypeError:  # a class that takes more than a message (UnicodeDecodeError)
        return TrackingStoreError(message)


def _plain(value: Any) -> Any:
    if type(value).__name__ == "DataFrame":  # pandas, known without importing it
        columns = list(value.columns)
        return {
            FRAME_TAG: {
                "columns": columns,
                "dtypes": [str(dtype) for dtype in value.dtypes],
                "data": [value[column].tolist() for column in columns],  # floats as repr: exact
            }
        }
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value


def _scalar(value: Any) -> Any:
    if hasattr(value, "item"):  # a NumPy scalar
        return value.item()
    raise TypeError(f"{type(value).__name__} cannot cross to the store daemon")


def _frame(value: dict) -> Any:
    if set(value) != {FRAME_TAG}:
        return value
    import pandas as pd

    table = value[FRAME_TAG]
    series = {
        column: pd.Series(data, dtype=dtype)
        for column, dtype, data in zip(table["columns"], table["dtypes"], table["data"], strict=True)
    }
    return pd.DataFrame(series, columns=table["columns"])


def _exactly(connection: socket.socket, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = connection.recv(min(size - len(data), 1 << 20))
        if not chunk:
            raise EOFError("connection closed")
        data += chunk
    return bytes(data)
