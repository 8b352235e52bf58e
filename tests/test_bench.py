"""benchmarks/bench.py: it parses its arguments before measuring anything."""

import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench.py"


def test_help_prints_the_usage_and_measures_nothing(tmp_path):
    result = subprocess.run([sys.executable, BENCH, "--help"], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage:") and "--only" in result.stdout
    assert list(tmp_path.iterdir()) == []


def test_an_unknown_part_is_refused_before_measuring(tmp_path):
    result = subprocess.run(
        [sys.executable, BENCH, "--only", "everything"], cwd=tmp_path, capture_output=True, text=True
    )
    assert result.returncode == 2 and "invalid choice" in result.stderr
    assert list(tmp_path.iterdir()) == []
