"""Re-pin requirements.lock: pyproject.toml's dependencies and every optional extra, resolved in a
throwaway virtual environment, written with public versions only (`make lock`).

    python scripts/lock.py [--upgrade]

Pins already in the lock are kept where pyproject.toml still allows them (they constrain the
resolve); --upgrade resolves everything afresh. A local version label (`torch==2.13.0+cpu`, the
build a machine happens to have on disk) is dropped: the public index has no such file, and
`torch==2.13.0` matches that build where it exists and the standard wheel everywhere else.
It resolves with the CPU build of torch (PyTorch's CPU index, see the README): the CUDA build
installs Linux-only libraries that the lock would then pin for every platform, so it stops there.
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

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from torchtrack.files import write_atomic

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "requirements.lock"
HEADER = "# Exact versions of every package, transitive ones included; regenerate with `make lock`.\n"
LOCAL_LABEL = re.compile(r"^([^=\s]+==[^+\s]+)\+\S+$")  # name==version+label
PLATFORM_MARKERS = ("platform_system", "sys_platform", "platform_machine")
# The new environment's torch requirements, printed by its own Python.
TORCH_REQUIRES = "import importlib.metadata as m; print('\\n'.join(m.requires('torch') or []))"


def public(line: str) -> str:
    """A pin without its local version label: `torch==2.13.0+cpu` -> `torch==2.13.0`."""
    return LOCAL_LABEL.sub(r"\1", line.strip())


def platform_only(torch_requires: list[str], pins: list[str]) -> list[str]:
    """The pins of packages that torch requires on some platforms only (the CUDA build's
    nvidia-* and triton on Linux)."""
    conditional = {
        canonicalize_name(requirement.name)
        for requirement in map(Requirement, torch_requires)
        if any(name in str(requirement.marker or "") for name in PLATFORM_MARKERS)
    }
    return [pin for pin in pins if canonicalize_name(pin.split("==")[0]) in conditional]


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
        torch_requires = subprocess.run(
            [python, "-c", TORCH_REQUIRES], check=True, capture_output=True, text=True
        ).stdout.split("\n")
    pins = [public(line) for line in frozen.splitlines() if line.strip() and not line.startswith("#")]
    if conditional := platform_only([r for r in torch_requires if r.strip()], pins):
        raise SystemExit(
            f"make lock: torch here is a CUDA build ({', '.join(conditional[:3])}, ...), whose libraries "
            "exist on Linux only; the lock was left as it was. Rerun with "
            "PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu"
        )
    return pins


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
