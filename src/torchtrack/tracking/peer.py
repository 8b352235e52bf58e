"""Who is on the other end of a Unix socket: the kernel's word for the peer's user id.

Both ends of the store daemon's socket ask before anything crosses: the daemon serves only its
own user, and a stage talks only to a daemon of its own user (private_dir.py keeps other
accounts out of the folder; this holds even where that folder was got wrong).
"""

from __future__ import annotations

import os
import socket
import struct
import sys

from torchtrack.errors import UnsafePlaceError

UCRED = struct.Struct("3i")  # Linux's struct ucred: pid, uid, gid
XUCRED = struct.Struct("2I")  # the start of macOS's struct xucred: cr_version, cr_uid
SOL_LOCAL, LOCAL_PEERCRED = 0, 1  # macOS's <sys/un.h>; Python's socket module lacks them


def peer_uid(connection: socket.socket) -> int:
    """The effective user id of the process at the other end of the Unix socket `connection`."""
    if sys.platform.startswith("linux"):
        _, uid, _ = UCRED.unpack(connection.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, UCRED.size))
        return uid
    if sys.platform == "darwin":
        raw = connection.getsockopt(SOL_LOCAL, LOCAL_PEERCRED, 76)  # sizeof(struct xucred)
        return XUCRED.unpack(raw[: XUCRED.size])[1]
    raise UnsafePlaceError(
        f"cannot tell who is on a Unix socket on {sys.platform}: set TORCHTRACK_STORE_DAEMON=0"
    )


def check_peer(connection: socket.socket, what: str) -> None:
    """Raise UnsafePlaceError unless the peer of `connection` (`what`, for the message) runs as this user."""
    uid = peer_uid(connection)
    if uid != os.geteuid():
        raise UnsafePlaceError(f"{what} runs as uid {uid}, not you: refused, nothing sent")
