"""The store daemon's message format, both ends: a length, then the value."""

from __future__ import annotations

import pickle
import socket
import struct
from typing import Any

HELLO = "hello"  # the first message on a connection, answered in kind by the daemon of the store
GONE = "gone"  # the answer of a daemon whose store file was deleted or replaced since it opened it
HEADER = struct.Struct("!Q")  # each message: its length, then the pickled value


def send(connection: socket.socket, value: Any) -> None:
    """One message."""
    data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    connection.sendall(HEADER.pack(len(data)) + data)


def receive(connection: socket.socket) -> Any:
    """One message; EOFError when the other side has hung up."""
    (size,) = HEADER.unpack(_exactly(connection, HEADER.size))
    return pickle.loads(_exactly(connection, size))


def _exactly(connection: socket.socket, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = connection.recv(min(size - len(data), 1 << 20))
        if not chunk:
            raise EOFError("connection closed")
        data += chunk
    return bytes(data)
