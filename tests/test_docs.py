"""The README and docs/ say what the code does: one exit-code table (errors.py's), a guarantees
table whose every test exists, performance tables that are the results files', links that lead
somewhere."""

from __future__ import annotations

import fnmatch
import importlib.util
import json
import re
from pathlib import Path

from torchtrack.errors import EXIT_MEANINGS

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))


def table_rows(text: str, header: str) -> list[list[str]]:
    """The cells of each row of the markdown table whose header line starts with `header`."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    return rows


def test_the_readme_exit_codes_are_errors_py_s():
    rows = table_rows(README.read_text(), "| code | meaning |")
    assert {int(code): meaning for code, meaning in rows} == EXIT_MEANINGS


def test_no_other_page_lists_exit_codes():
    """One list: the README's table. A second one drifts (one once left out 143)."""
    for page in DOCS:
        assert not re.search(r"\b130\b.*\binterrupted\b", page.read_text()), page.name


def defined_tests(path: Path) -> list[str]:
    return re.findall(r"^(?:async )?def (test_\w+)", path.read_text(), re.MULTILINE)


def test_every_test_the_guarantees_table_names_exists():
    rows = table_rows((ROOT / "docs" / "guarantees.md").read_text(), "| guarantee | proved by |")
    assert len(rows) >= 5
    for guarantee, proved_by in rows:
        names = re.findall(r"`([^`]+)`", proved_by)
        files = [ROOT / name for name in names if name.startswith("tests/")]
        assert files, f"{guarantee[:40]}: no test file named"
        for file in files:
            assert file.is_file(), f"{guarantee[:40]}: {file.relative_to(ROOT)} does not exist"
        tests = [test for file in files for test in defined_tests(file)]
        for pattern in (name for name in names if name.startswith("test_")):
            assert fnmatch.filter(tests, pattern), f"{guarantee[:40]}: no test matches {pattern}"


def test_the_performance_page_is_what_the_benchmark_results_give():
    spec = importlib.util.spec_from_file_location("docs_tables", ROOT / "scripts" / "docs_tables.py")
    docs_tables = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(docs_tables)
    assert docs_tables.performance_doc() == docs_tables.PERFORMANCE.read_text(), (
        "docs/performance.md differs from benchmarks/results*.json: python scripts/docs_tables.py performance"
    )


def test_the_readme_s_speed_ratio_is_the_benchmark_s():
    """The README gives the fixed-cost ratios, with a daemon running and with none yet, as
    benchmarks/results.json has them."""
    speed = " ".join(README.read_text().split("## Speed")[1].split("\n## ")[0].split())
    fixed = json.loads((ROOT / "benchmarks" / "results.json").read_text())["fixed_cost"]
    assert re.findall(r"(\d+\.\d+)x the same work", speed) == [f"{fixed['ratio']:.2f}"]
    assert re.findall(r"(\d+\.\d+)x with none yet", speed) == [f"{fixed['cold_ratio']:.2f}"]
    assert "`make bench` measures it" in speed


def test_the_readme_s_memory_figures_are_the_ten_million_row_benchmark_s():
    """The own-data section's peak memory per stage, in GiB, as benchmarks/results-scale.json has it."""
    text = " ".join(README.read_text().split())
    scale = json.loads((ROOT / "benchmarks" / "results-scale.json").read_text())["scale"]
    assert scale["rows"] == 10_000_000 and scale["features"] == 16
    gib = {stage: peak / 2**30 for stage, peak in scale["peak_rss_bytes"].items()}
    expected = (
        f"at ten million rows x 16, prepare peaks at {gib['prepare']:.1f} GiB, "
        f"train at {gib['train']:.1f} and evaluate at {gib['evaluate']:.2f}"
    )
    assert expected in text
    hundred = json.loads((ROOT / "benchmarks" / "results-scale-100m.json").read_text())["scale"]
    peaks = [
        *hundred["peak_rss_bytes"].values(),
        hundred["prepare_vs_plain"]["stage_peak_rss_bytes"],  # prepare from the rows as a CSV
        hundred["predict"]["peak_rss_bytes"],  # predict of that CSV
    ]
    assert hundred["rows"] == 100_000_000 and max(peaks) < 1.2 * 2**30
    hundred_gb = hundred["prepare_vs_plain"]["csv_bytes"] / 1e9
    assert (
        f"at a hundred million, each stays under 1.2 GiB, prepare from a {hundred_gb:.0f} GB CSV and "
        "predict of it included" in text
    )
    csv = scale["prepare_vs_plain"]  # prepare from the same rows as a CSV, held whole
    size, peak = csv["csv_bytes"] / 1e9, csv["stage_peak_rss_bytes"] / 2**30
    assert f"a {size:.0f} GB CSV of ten million rows takes {peak:.1f} GiB" in text


def test_the_lessons_page_holds_a_table_that_make_sweep_wrote():
    text = (ROOT / "docs" / "lessons.md").read_text()
    table = text.split("<!-- generated from make sweep")[1].split("<!-- end of make sweep -->")[0]
    assert table.count("\n|") >= 5


def test_every_relative_link_of_the_readme_and_docs_leads_to_a_file():
    for page in [README, *DOCS]:
        for target in re.findall(r"\]\(([^)#]+)\)", page.read_text()):
            if not re.match(r"[a-z]+://", target):
                assert (page.parent / target).exists(), f"{page.name}: {target} does not exist"


def test_the_readme_says_how_to_give_git_an_identity_before_the_first_dvc_exp_run():
    """DVC commits experiments: without a git identity the first `dvc exp run` fails (issue 24, point 1)."""
    text = README.read_text()
    identity = text.find("git config --global user.email")
    assert identity != -1 and identity < text.find("dvc exp run -S")
