"""Write the generated tables of docs/: the performance tables from benchmarks/results*.json (after
`make bench`) and the lessons table from `make sweep`'s output, each between its two markers.

    python scripts/docs_tables.py performance [--check]
    python scripts/lessons.py | python scripts/docs_tables.py lessons

Text outside the markers is the docs' own; inside, only this script writes. --check changes
nothing and exits 1 when docs/performance.md differs from what the results files give.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from torchtrack.files import write_atomic

ROOT = Path(__file__).resolve().parents[1]
PERFORMANCE = ROOT / "docs" / "performance.md"
LESSONS = ROOT / "docs" / "lessons.md"
# Under benchmarks/: make bench, the ten- and hundred-million-row scale runs, and the CUDA run.
RESULTS = ("results.json", "results-scale.json", "results-scale-100m.json", "results-cuda.json")


def begin(name: str) -> str:
    return f"<!-- generated from {name} by scripts/docs_tables.py: do not edit by hand -->"


def end(name: str) -> str:
    return f"<!-- end of {name} -->"


def splice(text: str, name: str, body: str) -> str:
    """`text` with what lies between `name`'s two markers replaced by `body`."""
    pattern = re.compile(re.escape(begin(name)) + r"\n(.*?\n)?" + re.escape(end(name)), re.DOTALL)
    if not pattern.search(text):
        raise SystemExit(f"docs_tables: the markers for {name} are missing")
    return pattern.sub(lambda _: f"{begin(name)}\n{body.strip()}\n{end(name)}", text)


def performance_section(results: dict) -> str:
    """What the results were measured on, and bench.py's own table of them."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench import table

    machine = results["machine"]
    facts = [machine.get("gpu"), f"{machine['cpus']} CPU cores", machine["platform"]]
    facts += [f"Python {machine['python']}", f"torch {machine['torch']}"]
    command = results.get("command", "python benchmarks/bench.py")
    return (
        f"Measured on {', '.join(f for f in facts if f)}; command: `{command}`.\n\n"
        f"```text\n{table(results)}\n```"
    )


def growth_section(small: dict, large: dict) -> str:
    """Each stage's wall time at the two scale runs' sizes, and their ratio against issue 23's
    bound: at most 1.2 times the ratio of the rows (12x for ten times the rows)."""
    small, large = small["scale"], large["scale"]
    rows = large["rows"] / small["rows"]
    lines = [
        f"| stage | {small['rows']:,} rows | {large['rows']:,} rows | ratio | target |",
        "|---|---|---|---|---|",
    ]
    for stage, seconds in large["wall_s"].items():
        ratio = seconds / small["wall_s"][stage]
        verdict = "pass" if ratio <= 1.2 * rows else "falls short"
        lines.append(
            f"| {stage} | {small['wall_s'][stage]:.1f} s | {seconds:.1f} s | {ratio:.1f}x | "
            f"at most {1.2 * rows:.0f}x: {verdict} |"
        )
    return "\n".join(lines)


GROWTH = "benchmarks/results-scale.json and results-scale-100m.json"


def performance_doc() -> str:
    """docs/performance.md with every results file's section regenerated, and the scale runs'
    growth in wall time."""
    text = PERFORMANCE.read_text()
    results = {name: json.loads((ROOT / "benchmarks" / name).read_text()) for name in RESULTS}
    for name in RESULTS:
        text = splice(text, f"benchmarks/{name}", performance_section(results[name]))
    growth = growth_section(results["results-scale.json"], results["results-scale-100m.json"])
    return splice(text, GROWTH, growth)


def lessons_doc(output: list[str]) -> str:
    """docs/lessons.md with the table that `make sweep` printed (its lines starting with `|`)."""
    rows = [line.rstrip() for line in output if line.startswith("|")]
    if not rows:
        raise SystemExit("docs_tables: no table in the sweep's output; docs/lessons.md left as it was")
    return splice(LESSONS.read_text(), "make sweep", "\n".join(rows))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("table", choices=("performance", "lessons"))
    parser.add_argument("--check", action="store_true", help="performance: only say whether it is current")
    args = parser.parse_args()
    if args.table == "performance":
        text, path = performance_doc(), PERFORMANCE
        if args.check:
            current = path.read_text() == text
            print(f"{path.relative_to(ROOT)} " + ("matches" if current else "differs from") + " the results")
            return 0 if current else 1
    else:
        output = []
        for line in sys.stdin:  # the sweep's output, passed on as it comes
            print(line, end="", flush=True)
            output.append(line)
        text, path = lessons_doc(output), LESSONS
    write_atomic(path, lambda tmp: tmp.write_text(text))
    print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
