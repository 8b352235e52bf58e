"""Re-pin requirements.lock: pyproject.toml's dependencies and every optional extra, resolved in a
throwaway virtual environment, written with public versions only (`make lock`).

    python scripts/lock.py [--upgrade]

Pins already in the lock are kept where pyproject.toml still allows them (they constrain the
resolve); --upgrade resolves everything afresh. A local version label (`torch==2.13.0+cpu`, the
build a machine happens to have on disk) is dropped: the public index has no such file, and
`torch==2.13.0` matches that build where it exists and the standard wheel everywhere else.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import tomllib
import venv
from pathlib import Path

from torchtrack.files import write_atomic

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "requirements.lock"
HEADER = "# Exact versions of every package, transitive ones included; regenerate with `make lock`.\n"
LOCAL_LABEL = re.compile(r"^([^=\s]+==[^+\s]+)\+\S+$")  # name==version+label


def public(line: str) -> str:
    """A pin without its local version label: `torch==2.13.0+cpu` -> `torch==2.13.0`."""
    return LOCAL_LABEL.sub(r"\1", line.strip())


def extras() -> list[str]:
    """The names of pyproject.toml's optional extras (dev, ...)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return list(project.get("optional-dependencies", {}))


def resolve(upgrade: bool) -> list[str]:
    """`pip freeze` of a new virtual environment holding the package with every extra."""
    with tempfile.TemporaryDirectory() as folder:
        venv.create(folder, with_pip=True)
        python = str(Path(folder) / "bin" / "python")
        pip = [python, "-m", "pip", "--disable-pip-version-check"]
        constraints = [] if upgrade or not LOCK.exists() else ["-c", str(LOCK)]
        target = f"{ROOT}[{','.join(extras())}]"
        subprocess.run([*pip, "install", "--quiet", *constraints, "-e", target], check=True)
        frozen = subprocess.run(
            [*pip, "freeze", "--exclude-editable"], check=True, capture_output=True, text=True
        ).stdout
    return [public(line) for line in frozen.splitlines() if line.strip() and not line.startswith("#")]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--upgrade", action="store_true", help="ignore the current pins; resolve afresh")
    args = parser.parse_args()
    pins = resolve(args.upgrade)
    text = HEADER + "".join(f"{pin}\n" for pin in sorted(pins, key=str.lower))
    write_atomic(LOCK, lambda tmp: tmp.write_text(text))
    print(f"wrote {len(pins)} pins to {LOCK.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
