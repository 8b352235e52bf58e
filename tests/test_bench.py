"""benchmarks/bench.py: it parses its arguments before measuring anything, and every part runs
(`--smoke`: each once at its smallest size, so a change that breaks a part fails here, under
`make test-all`, or, for the parts that run `dvc repro`, in tests/test_bench_repro.py)."""

import subprocess
import sys

import pytest

from helpers import BENCH, BENCH_REPRO_PARTS, smoke_bench

sys.path.insert(0, str(BENCH.parent))
from bench import PARTS, RSS_PROBE  # noqa: E402


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


def test_a_command_s_peak_memory_is_its_own_not_the_benchmark_s(tmp_path):
    """The probe a stage's memory row comes from: a child started while the benchmark holds a
    large table (as the scale part does when it measures prepare on a CSV, then predict) is not
    given the benchmark's peak (getrusage's ru_maxrss is, through vfork and exec)."""
    held = bytearray(1 << 30)  # 1 GiB in this process, every page touched
    held[:: 1 << 12] = b"\x01" * len(range(0, len(held), 1 << 12))
    (tmp_path / "params.yaml").write_text("{}\n")
    result = subprocess.run(
        [sys.executable, "-c", RSS_PROBE, "validate"], cwd=tmp_path, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("PEAK_RSS_KIB")]
    assert int(line.split()[1]) < 256 * 1024  # validate imports no torch: tens of MiB
    del held


@pytest.mark.slow
@pytest.mark.full  # 90 s: make test-all (CI) runs it; make test keeps to ten minutes
def test_every_part_but_dvc_repro_s_runs_at_its_smallest_size_and_gives_its_table_rows(tmp_path):
    assert set(BENCH_REPRO_PARTS) < set(PARTS)
    parts = [part for part in PARTS if part not in BENCH_REPRO_PARTS]
    results, section = smoke_bench(tmp_path, parts)
    assert {PARTS[part][0] for part in parts} <= set(results)
    assert results["tracking_overhead"][0]["step_metrics_recorded"] > 0  # read back from the store
    for row in (
        "tracked >= 0.9x bare loop",
        "system metrics cost below the noise",
        "fused vs default adam step",
        "no Python call per row",
        "prepare: 4,000 x 16",
        "train samples/s within 1.2x of a bare loop over the same Parquet",
        "prepare from a CSV",
        "pinned CPU kernels vs the CPU's own",
        "2 training processes",
    ):
        assert row in section


@pytest.mark.slow
@pytest.mark.full
def test_the_sorted_table_script_prints_its_fit_at_a_small_size():
    """benchmarks/sorted_table.py, which docs/training-recipe.md cites, at 30,000 rows."""
    result = subprocess.run(
        [sys.executable, str(BENCH.parent / "sorted_table.py"), "--rows", "30000", "--buffer", "10000"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    said = "HEAD: 30,000 rows sorted by y, train 21,000 rows, shuffle_buffer_rows 10,000: test MSE"
    assert said in result.stdout
