"""Another account on the same machine: its folder or socket in the daemon's place is refused in
one line, with nothing sent to it and nothing read from it; its connection to a real daemon is
refused; a link planted for the daemon's log is not followed. Needs root, to make that account
(CI runs as root); skipped, saying so, elsewhere."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from pathlib import Path

import pytest
import yaml

from helpers import isolated_env
from torchtrack.errors import UnsafePlaceError
from torchtrack.tracking import client as daemon_client
from torchtrack.tracking.client import DaemonClient
from trained_project import TINY_PARAMS

SYSTEM_PYTHON = "/usr/bin/python3"  # the other account cannot enter root's virtual environment
SBIN = "/usr/sbin:/sbin"  # where useradd lives, on a PATH or not (root's has it, a pared-down one may not)
# Run as the other account: listen at argv[1] (mode 0777) and say what arrives.
SQUATTER = textwrap.dedent(
    """
    import os, socket, sys
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(sys.argv[1])
    os.chmod(sys.argv[1], 0o777)
    listener.listen(1)
    print("listening", flush=True)
    connection, _ = listener.accept()
    print("accepted", flush=True)
    received = b""
    while chunk := connection.recv(65536):
        received += chunk
    print("received", len(received), flush=True)
    """
)
# Run as the other account: connect to argv[1], send HELLO as wire.py frames it, say what comes back.
INTRUDER = textwrap.dedent(
    """
    import json, socket, struct, sys
    connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    connection.settimeout(30)
    connection.connect(sys.argv[1])
    body = json.dumps("hello").encode()
    try:
        connection.sendall(struct.pack("!I", len(body)) + body)
        print("answer", len(connection.recv(65536)), flush=True)
    except OSError as exc:
        print("answer", type(exc).__name__, flush=True)
    """
)


@pytest.fixture(scope="module")
def other_account():
    """(uid, gid) of a local account made for this module, removed after it."""
    if os.geteuid() != 0:
        pytest.skip("making a second local account takes root (CI runs as root)")
    useradd, userdel = (
        shutil.which(tool) or shutil.which(tool, path=SBIN) for tool in ("useradd", "userdel")
    )
    if not (useradd and userdel):
        pytest.skip(
            f"useradd and userdel are needed to make a second account, and are not on PATH or in {SBIN}"
        )
    name = f"tt{uuid.uuid4().hex[:8]}"
    made = subprocess.run([useradd, "--no-create-home", "--system", name], capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"useradd could not make a second account: {made.stderr.strip()}")
    if not Path(SYSTEM_PYTHON).is_file():
        pytest.skip(f"the second account needs a Python of its own at {SYSTEM_PYTHON}")
    account = pwd.getpwnam(name)
    yield account.pw_uid, account.pw_gid
    subprocess.run([userdel, name], capture_output=True)


@pytest.fixture
def shared_tmp(monkeypatch):
    """A temporary folder as /tmp is (sticky, open to all), as this process's and its children's."""
    base = Path(tempfile.mkdtemp(prefix="torchtrack-shared-", dir="/tmp"))
    base.chmod(0o1777)
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    monkeypatch.setenv("TMPDIR", str(base))
    monkeypatch.setattr(tempfile, "tempdir", str(base))
    yield base
    subprocess.run(["rm", "-rf", str(base)])


def as_other(account, script: str, *args: str) -> subprocess.Popen:
    """`script` run by the other account, its stdout read line by line."""
    uid, gid = account
    return subprocess.Popen(
        [SYSTEM_PYTHON, "-c", script, *args], user=uid, group=gid, extra_groups=[], cwd="/",
        stdout=subprocess.PIPE, text=True, env={"PATH": "/usr/bin:/bin"},
    )  # fmt: skip


def the_daemons_address(workdir: Path) -> Path:
    """Where a stage in `workdir` looks for its store's daemon (ADDRESS.sock and so on)."""
    return daemon_client.daemon_address(f"sqlite:///{workdir / 'mlflow.db'}")


def prepare(workdir: Path) -> subprocess.CompletedProcess:
    """`torchtrack prepare` in `workdir`, as this (root) account."""
    (workdir / "params.yaml").write_text(yaml.safe_dump(TINY_PARAMS))
    command = [sys.executable, "-m", "torchtrack", "prepare"]
    return subprocess.run(command, env=isolated_env(), capture_output=True, text=True)


def test_a_folder_squatted_by_another_account_is_refused_in_one_line_and_nothing_crosses(
    workdir, other_account, shared_tmp
):
    folder = shared_tmp / f"torchtrack-{os.geteuid()}"
    maker = f"import os; os.mkdir({str(folder)!r}, 0o700)"
    subprocess.run([SYSTEM_PYTHON, "-c", maker], user=other_account[0], group=other_account[1], check=True)
    squatter = as_other(other_account, SQUATTER, str(folder / "daemon-squatted.sock"))
    assert squatter.stdout.readline().strip() == "listening"
    done = prepare(workdir)
    squatter.kill()
    assert done.returncode == 1
    refusal = f"{folder} is owned by uid {other_account[0]}, not you: remove it or set TMPDIR"
    assert done.stderr.strip().splitlines() == [f"torchtrack prepare: error: {refusal}"]
    assert "accepted" not in squatter.stdout.read()


def test_a_socket_of_another_account_in_the_daemons_place_is_refused_with_nothing_sent(
    workdir, other_account, shared_tmp
):
    address = the_daemons_address(workdir)  # makes the private folder, 0700
    address.parent.chmod(0o777)  # as a mistake or an old bug might leave it, for the squatter to bind
    squatter = as_other(other_account, SQUATTER, str(address.with_suffix(".sock")))
    assert squatter.stdout.readline().strip() == "listening"
    address.parent.chmod(0o700)
    refusal = f"runs as uid {other_account[0]}, not you: refused, nothing sent"
    with pytest.raises(UnsafePlaceError, match=refusal):
        DaemonClient(f"sqlite:///{workdir / 'mlflow.db'}").experiment_id("x")
    said = squatter.communicate(timeout=30)[0].split("\n")
    assert said[:2] == ["accepted", "received 0"]  # it was asked nothing and heard nothing


def test_a_connection_from_another_account_to_a_real_daemon_is_refused(workdir, other_account, shared_tmp):
    client = DaemonClient(f"sqlite:///{workdir / 'mlflow.db'}")
    experiment = client.experiment_id("mine")
    address = client.address
    address.parent.chmod(0o711)  # let the other account reach the socket, as the folder alone stops it
    address.with_suffix(".sock").chmod(0o777)
    try:
        intruder = as_other(other_account, INTRUDER, str(address.with_suffix(".sock")))
        said = intruder.communicate(timeout=60)[0].split()
    finally:
        address.parent.chmod(0o700)
    assert said[0] == "answer" and said[1] in ("0", "ConnectionResetError", "BrokenPipeError")  # unread
    deadline = time.monotonic() + 10
    log = address.with_suffix(".log")
    while f"refused a connection from uid {other_account[0]}" not in log.read_text():
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert client.experiment_id("mine") == experiment  # its own user is still served


def test_a_link_planted_for_the_daemons_log_is_not_followed(workdir, shared_tmp):
    address = the_daemons_address(workdir)
    target = shared_tmp / "root-would-create-this"
    address.with_suffix(".log").symlink_to(target)
    with pytest.raises(UnsafePlaceError, match=r"\.log \("):
        DaemonClient(f"sqlite:///{workdir / 'mlflow.db'}").experiment_id("x")
    assert not target.exists()
