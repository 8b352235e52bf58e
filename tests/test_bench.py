"""benchmarks/bench.py: it parses its arguments before measuring anything, and every part runs
(`--smoke`: each once at its smallest size, so a change that breaks a part fails here)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import isolated_env

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks" / "bench.py"


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


@pytest.mark.slow
def test_every_part_runs_at_its_smallest_size_and_gives_its_table_rows(tmp_path):
    output = tmp_path / "results.json"
    result = subprocess.run(
        [sys.executable, BENCH, "--smoke", "--output", str(output)],
        cwd=tmp_path,
        env=isolated_env(),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    results = json.loads(output.read_text())
    parts = {"tracking_overhead", "system_metrics", "optimizer_steps", "data_path", "pipeline"}
    parts |= {"fixed_cost", "scale", "pinned_kernels", "distributed"}
    assert parts <= set(results)
    assert results["tracking_overhead"][0]["step_metrics_recorded"] > 0  # read back from the store
    sys.path.insert(0, str(ROOT / "scripts"))
    from docs_tables import performance_section  # what `make bench` writes into docs/performance.md

    section = performance_section(results)
    for row in (
        "tracked >= 0.9x bare loop",
        "dvc repro -f <= 1.5x",
        "cold dvc repro -f (no store daemon yet) <= 1.5x",
        "no-op dvc repro",
        "2 training processes",
    ):
        assert row in section
