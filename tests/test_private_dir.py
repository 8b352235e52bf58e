"""The store daemon's private folder: made 0700; refused in one line when it is a link, a file,
another user's or open to others; files in it made 0600 and never through a link."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import pytest

from torchtrack.errors import UnsafePlaceError
from torchtrack.tracking.private_dir import ensure_private, lock, locked, open_private


def test_a_new_private_folder_is_made_0700(tmp_path):
    folder = ensure_private(tmp_path / "torchtrack-0")
    assert stat.S_IMODE(os.lstat(folder).st_mode) == 0o700


def test_a_folder_open_to_others_is_refused_naming_its_mode(tmp_path):
    (tmp_path / "open").mkdir(mode=0o755)
    os.chmod(tmp_path / "open", 0o755)
    with pytest.raises(UnsafePlaceError, match=r"open has mode 755, not 700"):
        ensure_private(tmp_path / "open")


def test_a_link_in_the_folders_place_is_refused(tmp_path):
    ensure_private(tmp_path / "real")
    (tmp_path / "link").symlink_to(tmp_path / "real")
    with pytest.raises(UnsafePlaceError, match="link is not a folder"):
        ensure_private(tmp_path / "link")


def test_a_file_in_the_folders_place_is_refused(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(UnsafePlaceError, match="file is not a folder"):
        ensure_private(tmp_path / "file")


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a folder to another uid takes root")
def test_a_folder_of_another_uid_is_refused_naming_the_owner(tmp_path):
    folder = ensure_private(tmp_path / "theirs")
    os.chown(folder, 12345, 12345)
    with pytest.raises(UnsafePlaceError, match=r"theirs is owned by uid 12345, not you: remove it or set"):
        ensure_private(folder)


def test_files_are_made_0600_and_never_through_a_link(tmp_path):
    folder = ensure_private(tmp_path / "private")
    os.close(open_private(folder / "daemon.log"))
    assert stat.S_IMODE(os.lstat(folder / "daemon.log").st_mode) == 0o600
    target = tmp_path / "target"
    (folder / "planted.log").symlink_to(target)
    with pytest.raises(UnsafePlaceError, match="planted.log"):
        open_private(folder / "planted.log")
    assert not target.exists()


def test_a_held_lock_is_reported_to_one_that_does_not_wait(tmp_path):
    folder = ensure_private(tmp_path / "private")
    with locked(folder / "x.lock") as held:
        assert held
        pid = os.fork()
        if pid == 0:  # another process: flock locks are per open file, so a thread would share it
            with locked(folder / "x.lock", wait=False) as other:
                os._exit(0 if other is False else 1)
        assert os.waitpid(pid, 0)[1] == 0


def test_a_lock_handed_to_a_child_is_held_until_the_child_lets_go(tmp_path):
    """How a stage that does not wait for the daemon it starts keeps others from starting a second."""
    folder = ensure_private(tmp_path / "private")
    held = lock(folder / "x.lock")
    child = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE, pass_fds=(held,)
    )
    os.close(held)
    with locked(folder / "x.lock", wait=False) as acquired:
        assert acquired is False
    child.communicate(b"")  # the child exits, closing its copy
    with locked(folder / "x.lock", wait=False) as acquired:
        assert acquired is True
