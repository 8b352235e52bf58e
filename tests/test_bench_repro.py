"""benchmarks/bench.py's parts that run `dvc repro` (the default pipeline's phases, a no-op
repro, and its fixed cost against plain Python, warm and cold) run at their smallest size and
give their rows of docs/performance.md. A file of its own: the other worker runs the rest of
the smoke bench (tests/test_bench.py) meanwhile."""

import pytest

from helpers import BENCH_REPRO_PARTS, smoke_bench


@pytest.mark.slow
def test_the_dvc_repro_parts_run_at_their_smallest_size_and_give_their_table_rows(tmp_path):
    results, section = smoke_bench(tmp_path, list(BENCH_REPRO_PARTS))
    assert {"pipeline", "fixed_cost"} <= set(results)
    assert results["fixed_cost"]["stages"].keys() == {"prepare", "train", "evaluate"}
    for row in (
        "dvc repro -f <= 1.5x",
        "cold dvc repro -f (no store daemon yet) <= 1.5x",
        "no-op dvc repro",
        "default `dvc repro`:",
        "CPU seconds per stage phase",
    ):
        assert row in section
