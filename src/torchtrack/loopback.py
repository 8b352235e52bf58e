"""Whether an address to listen on is this machine's alone: `torchtrack ui` and `serve` ask no
login, so on any other address they say so, in one line, before they start.
"""

from __future__ import annotations

import ipaddress

LOCAL_NAMES = ("localhost",)


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and localhost; False for any other address or name."""
    if host.lower() in LOCAL_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to an address others reach


def no_login_warning(host: str, command: str) -> str | None:
    """The one-line warning for `command` listening on `host`, or None on loopback."""
    if is_loopback(host):
        return None
    return (
        f"torchtrack {command}: warning: listening on {host}, not loopback only: anyone who can reach "
        f"this machine can use it, with no login (a team's server with logins: docs/team.md)"
    )
