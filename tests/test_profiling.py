"""Phase timing: exclusive seconds per phase, nested phases subtracted from their parent."""

from __future__ import annotations

import json
import time

from torchtrack import profiling


def test_nested_phase_time_counts_only_for_the_inner_phase(monkeypatch):
    monkeypatch.setattr(profiling, "_seconds", profiling.defaultdict(float))
    with profiling.phase("training"):
        time.sleep(0.05)
        with profiling.phase("tracking"):
            time.sleep(0.1)
    seconds = profiling.seconds()
    assert seconds["tracking"] >= 0.1
    assert 0.05 <= seconds["training"] < 0.14  # would be >= 0.15 if the inner 0.1 s were counted


def test_report_appends_one_json_line_only_when_asked(monkeypatch, tmp_path):
    monkeypatch.setattr(profiling, "_seconds", profiling.defaultdict(float))
    monkeypatch.delenv(profiling.PROFILE_ENV, raising=False)
    profiling.report("train", time.perf_counter())  # no env var: writes nothing, fails nowhere
    path = tmp_path / "profile.jsonl"
    monkeypatch.setenv(profiling.PROFILE_ENV, str(path))
    with profiling.phase("data"):
        pass
    profiling.report("train", time.perf_counter() - 1.0)
    profiling.report("evaluate", time.perf_counter())
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["stage"] for r in records] == ["train", "evaluate"]
    assert records[0]["wall"] >= 1.0 and "data" in records[0]["phases"]
