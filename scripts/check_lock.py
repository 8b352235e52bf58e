"""Does every line of requirements.lock resolve on the public package index, for each supported
Python? (`make check-lock`)

    python scripts/check_lock.py 3.11 3.12 3.13 [--index-url https://pypi.org/simple]

pip resolves the lock as a user's machine would, with this machine's pip configuration left out
(its extra indexes and wheel folders may hold builds the public index lacks), one Python version
at a time, without installing anything: `pip install --dry-run --no-deps --ignore-installed
--python-version 3.X`. pip needs each file's metadata; where the index serves it on its own
(PEP 658, as pypi.org does) that is all it fetches, elsewhere it downloads the file.

Exit codes: 0 every line resolves for every version; 1 a line does not (named, with its number);
77 the index cannot be reached, so nothing was checked (the automake convention for "skipped").
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "requirements.lock"
PUBLIC_INDEX = "https://pypi.org/simple"
SKIPPED = 77
# Settings of this machine's pip that would let a build the public index lacks satisfy a line.
MACHINE_PIP_SETTINGS = (
    "PIP_FIND_LINKS",
    "PIP_EXTRA_INDEX_URL",
    "PIP_INDEX_URL",
    "PIP_NO_INDEX",
    "PIP_CONSTRAINT",
)
NOT_FOUND = re.compile(r"No matching distribution found for (\S+)")


def unreachable(index: str) -> str | None:
    """Why `index` cannot be reached, or None when it answers."""
    try:
        with urllib.request.urlopen(f"{index.rstrip('/')}/pip/", timeout=15):
            return None
    except OSError as error:
        return str(getattr(error, "reason", error))


def pip_env() -> dict[str, str]:
    """The environment minus this machine's pip configuration (files and index variables)."""
    env = {k: v for k, v in os.environ.items() if k not in MACHINE_PIP_SETTINGS}
    env["PIP_CONFIG_FILE"] = os.devnull  # pip then reads no configuration file at all
    return env


def package(requirement: str) -> str:
    """The normalised package name of a requirement line: `Flask==3.1.3` -> `flask`."""
    return canonicalize_name(re.split(r"[=<>!~ ;\[@]", requirement.strip(), maxsplit=1)[0])


def line_of(requirement: str, lock: Path) -> str:
    """`line N: <text>` for the lock line that pins `requirement`'s package."""
    for number, text in enumerate(lock.read_text().splitlines(), start=1):
        if text.strip() and not text.startswith("#") and package(text) == package(requirement):
            return f"line {number}: {text.strip()}"
    return requirement


def check(python_version: str, index: str, lock: Path) -> str | None:
    """None when pip resolves every line of `lock` for `python_version`, else what does not."""
    with tempfile.TemporaryDirectory() as target:  # --target: older pips want one with --python-version
        result = subprocess.run(
            [
                *(sys.executable, "-m", "pip", "install", "--dry-run", "--no-deps", "--ignore-installed"),
                *("--quiet", "--disable-pip-version-check", "--prefer-binary", "--target", target),
                *("--python-version", python_version, "--index-url", index, "-r", str(lock)),
            ],
            env=pip_env(),
            capture_output=True,
            text=True,
        )
    if result.returncode == 0:
        return None
    if match := NOT_FOUND.search(result.stderr):
        return f"{line_of(match.group(1), lock)} does not resolve"
    return (
        result.stderr.strip().splitlines()[-1] if result.stderr.strip() else f"pip exit {result.returncode}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("versions", nargs="+", help="Python versions to resolve for, e.g. 3.11 3.12 3.13")
    parser.add_argument("--index-url", default=PUBLIC_INDEX, help="the index (default: %(default)s)")
    parser.add_argument("--lock", type=Path, default=LOCK, help="the lock file (default: requirements.lock)")
    args = parser.parse_args()
    if reason := unreachable(args.index_url):
        print(f"check-lock: SKIPPED, nothing checked: {args.index_url} cannot be reached ({reason})")
        return SKIPPED
    failures = 0
    for version in args.versions:
        problem = check(version, args.index_url, args.lock)
        print(
            f"check-lock: Python {version}: " + (f"FAILED: {problem}" if problem else "every line resolves")
        )
        failures += problem is not None
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
