"""requirements.lock installs anywhere: public versions only, every requirement of pyproject.toml
(base and every extra) pinned within its range, and the supported Pythons written once."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def script(name: str):
    """A module of scripts/, imported from its file."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def pins() -> dict[str, Version]:
    """The lock's pins by normalised package name."""
    pinned = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, version = line.split("==")
            pinned[canonicalize_name(name)] = Version(version)
    return pinned


def supported_pythons() -> list[str]:
    """The Makefile's SUPPORTED_PYTHONS: the versions it looks for and check-lock resolves for."""
    (line,) = re.findall(r"^SUPPORTED_PYTHONS := (.+)$", (ROOT / "Makefile").read_text(), re.MULTILINE)
    return line.split()


def test_the_lock_pins_public_versions_only():
    text = (ROOT / "requirements.lock").read_text()
    lines = [line for line in text.splitlines() if not line.startswith("#")]
    local = [line for line in lines if Version(line.split("==")[1]).local is not None]
    assert not local, f"local version labels exist only on one machine's disk: {local}"
    assert all(re.fullmatch(r"[A-Za-z0-9._-]+==\S+", line) for line in lines)


def test_make_lock_drops_local_version_labels():
    public = script("lock").public
    assert public("torch==2.13.0+cpu") == "torch==2.13.0"
    assert public("torch==2.13.0+cu130\n") == "torch==2.13.0"
    assert public("certifi==2026.10.19.post1") == "certifi==2026.10.19.post1"


def test_make_lock_refuses_the_libraries_a_cuda_build_of_torch_installs_on_linux_only():
    platform_only = script("lock").platform_only
    torch_requires = ["nvidia-cublas==13.1.1.3; platform_system == 'Linux'", "sympy>=1.13", "filelock"]
    pins = ["filelock==4.3.1", "nvidia-cublas==13.1.1.3", "sympy==1.14.0"]
    assert platform_only(torch_requires, pins) == ["nvidia-cublas==13.1.1.3"]
    assert platform_only(torch_requires, ["filelock==4.3.1", "sympy==1.14.0"]) == []


def test_the_lock_pins_every_requirement_of_the_package_and_of_every_extra_within_its_range():
    pinned = pins()
    extras = PROJECT.get("optional-dependencies", {})
    assert "dev" in extras
    for group, requirements in {"dependencies": PROJECT["dependencies"], **extras}.items():
        for text in requirements:
            requirement = Requirement(text)
            name = canonicalize_name(requirement.name)
            assert name in pinned, f"{group}: {requirement.name} is not in requirements.lock (make lock)"
            assert pinned[name] in requirement.specifier, f"{group}: {name}=={pinned[name]} not in {text!r}"


def test_requires_python_admits_exactly_the_pythons_the_makefile_looks_for():
    supported = supported_pythons()
    assert {"3.11", "3.12", "3.13"} <= set(supported)
    requires = SpecifierSet(PROJECT["requires-python"])
    minors = sorted(int(v.split(".")[1]) for v in supported)
    assert minors == list(range(minors[0], minors[-1] + 1))
    for minor in (minors[0] - 1, *minors, minors[-1] + 1):
        assert (f"3.{minor}.0" in requires) == (minor in minors), f"3.{minor} vs {requires}"


def check_lock(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "check_lock.py"), *args], capture_output=True, text=True
    )


def test_check_lock_says_it_checked_nothing_when_the_index_cannot_be_reached():
    result = check_lock("3.12", "--index-url", "http://127.0.0.1:9/simple")
    assert result.returncode == script("check_lock").SKIPPED
    assert "SKIPPED, nothing checked" in result.stdout and "127.0.0.1:9" in result.stdout


def skip_unless_the_public_index_answers() -> None:
    checker = script("check_lock")
    if reason := checker.unreachable(checker.PUBLIC_INDEX):
        pytest.skip(f"{checker.PUBLIC_INDEX} cannot be reached ({reason}): the lock was not checked")


@pytest.mark.network
def test_check_lock_names_the_first_line_the_public_index_cannot_resolve(tmp_path):
    skip_unless_the_public_index_answers()
    lock = tmp_path / "requirements.lock"
    lock.write_text("# a local build, then a line after it\ntorch==2.13.0+cpu\nzipp==4.1.2\n")
    result = check_lock("3.12", "--lock", str(lock))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Python 3.12: FAILED: line 2: torch==2.13.0+cpu does not resolve" in result.stdout


@pytest.mark.network
@pytest.mark.slow
@pytest.mark.full
def test_every_line_of_the_lock_resolves_on_the_public_index_for_every_supported_python():
    skip_unless_the_public_index_answers()
    result = check_lock(*supported_pythons())
    assert result.returncode == 0, result.stdout + result.stderr
    for version in supported_pythons():
        assert f"Python {version}: every line resolves" in result.stdout
