"""A table sorted by its target, trained a window of row groups at a time: how good the fit is.

    python benchmarks/sorted_table.py [--rev HEAD] [--rows 3000000] [--buffer 1000000]

Many exports come sorted (by date, by price): a split larger than `train.shuffle_buffer_rows`
is trained a window of row groups at a time, so its row groups must each be a random sample
of it (docs/training-recipe.md). This writes a CSV of `--rows` rows of y = tanh(z) + z + noise
(noise variance 0.09, four features), sorted by y, runs `dvc repro` on it in a fresh clone of
`--rev` (the stages run that clone's code), and prints its test MSE next to least squares' and
the noise variance. `--rev ddd4137`, before prepare shuffled the train split, gives the fit of
a split in the table's order.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from bench import BIN, ROOT, stage_env, timed_run, update_params

NOISE_STD = 0.3


def sorted_csv(path: Path, rows: int) -> None:
    rng = np.random.default_rng(0)
    X = rng.standard_normal((rows, 4))
    z = X @ np.array([0.8, -0.5, 0.3, 0.6])
    frame = pd.DataFrame(X, columns=[f"x{i}" for i in range(4)])
    frame["y"] = np.tanh(z) + z + rng.normal(0, NOISE_STD, rows)
    frame.sort_values("y").to_csv(path, index=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rev", default="HEAD", help="the commit whose code runs (default HEAD)")
    parser.add_argument("--rows", type=int, default=3_000_000)
    parser.add_argument("--buffer", type=int, default=1_000_000, help="train.shuffle_buffer_rows")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sorted-table-") as tmp:
        folder = Path(tmp)
        sorted_csv(folder / "sorted.csv", args.rows)
        clone = folder / "repo"
        subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
        subprocess.run(["git", "checkout", "-q", args.rev], cwd=clone, check=True)
        data = {"source": "csv", "path": str(folder / "sorted.csv"), "target": "y"}
        update_params(clone, {"data": data, "train": {"shuffle_buffer_rows": args.buffer}})
        timed_run([str(BIN / "dvc"), "repro"], clone, stage_env(clone))  # the clone's stages
        scores = json.loads((clone / "metrics" / "evaluate.json").read_text())
        prepared = json.loads((clone / "metrics" / "prepare.json").read_text())
    print(
        f"{args.rev}: {args.rows:,} rows sorted by y, train {prepared['rows_train']:,} rows, "
        f"shuffle_buffer_rows {args.buffer:,}: test MSE {scores['test_mse']:.4f}, "
        f"least squares {scores['test_mse_least_squares']:.4f}, noise variance {NOISE_STD**2:.4f}"
    )


if __name__ == "__main__":
    main()
