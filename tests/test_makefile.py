"""The Makefile's own checks, run as `make` runs them."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTE = "make: git has no name and email yet, and dvc exp run commits with git; give it yours:"


@pytest.mark.skipif(shutil.which("make") is None, reason="no make on PATH")
@pytest.mark.parametrize("identity", [False, True], ids=["none", "from-the-environment"])
def test_make_run_says_how_to_give_git_a_name_before_dvc_exp_run_needs_one(tmp_path, identity):
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "GIT_CONFIG_NOSYSTEM": "1"}
    env["EMAIL"] = "guessed@example.invalid"  # git would guess an identity from it: not one set
    if identity:
        env |= {f"GIT_{who}_{what}": value for who in ("AUTHOR", "COMMITTER")
                for what, value in (("NAME", "a"), ("EMAIL", "a@example.invalid"))}  # fmt: skip
    result = subprocess.run(
        ["make", "-s", "git-identity"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0  # a note, not a stop
    if identity:
        assert result.stderr == ""
    else:
        assert result.stderr.splitlines() == [
            NOTE,
            '  git config --global user.name "Your Name" && git config --global user.email you@example.com',
        ]
