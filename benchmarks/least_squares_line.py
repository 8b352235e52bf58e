"""The default model's test MSE over least squares', before and after the least-squares line's
fallback (least_squares_line.py), on the user-shaped tables of the tests over several of their
seeds, on diabetes and on the synthetic default: the table in docs/training-recipe.md.

    .venv/bin/python benchmarks/least_squares_line.py [--seeds 0 1 2 3 4] [--tables cars houses ...]

Each row runs what `dvc repro` runs with only data.source, data.path and data.target set
(prepare's split and preprocessing, train's `fit`, evaluate's least-squares reference) in one
process, trains once, and scores the trained weights ("trained") and then what
`keep_the_better` kept ("kept"). A ratio is test_mse / test_mse_least_squares.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the tests' table generators

from real_tables import write_table  # noqa: E402
from test_default_fit import cars_like_table  # noqa: E402
from torchtrack.config import Config, load_config  # noqa: E402
from torchtrack.data import load_source, split_positions  # noqa: E402
from torchtrack.evaluation import least_squares_test_mse, predict  # noqa: E402
from torchtrack.least_squares_line import keep_the_better  # noqa: E402
from torchtrack.models import build_model  # noqa: E402
from torchtrack.preprocessing import Preprocessor, drop_missing_target  # noqa: E402
from torchtrack.tabular import TabularDataset  # noqa: E402
from torchtrack.training import fit, seed_everything, set_threads  # noqa: E402

TABLES = ("cars", "houses", "shop", "cars_like", "diabetes", "synthetic")
ONE_SEED = ("diabetes", "synthetic")  # not generated here: one table each


def data_config(config: Config, table: str, seed: int, folder: Path):
    """params.yaml's data section with only source, path and target set for `table`."""
    if table == "synthetic":
        return config.data
    if table == "diabetes":
        return dataclasses.replace(config.data, source="diabetes")
    if table == "cars_like":  # tests/test_default_fit.py's numeric 392-row table
        path, target = folder / "cars_like.csv", "mpg"
        cars_like_table(seed=seed).to_csv(path, index=False)
    else:
        path, target = write_table(table, folder, seed=seed)
    return dataclasses.replace(config.data, source="csv", path=str(path), target=target)


def measure(config: Config, table: str, seed: int) -> dict[str, float | str]:
    """Train once on `table`; the test MSE ratios of the trained weights and of the kept ones."""
    with tempfile.TemporaryDirectory() as folder:
        data = data_config(config, table, seed, Path(folder))
        frame, target, _ = load_source(data, config.seed)
    frame, _ = drop_missing_target(frame, target)
    indices = split_positions(frame, target, data, config.seed)
    raw = {name: frame.iloc[rows] for name, rows in indices.items()}
    preprocessor = Preprocessor.fit(raw["train"], target, data)
    splits = {name: TabularDataset(preprocessor.transform(part), target) for name, part in raw.items()}
    train, test = splits["train"], splits["test"]
    generator = seed_everything(config.seed)
    model = build_model(config.model, in_features=len(train.features))
    fit(model, train, splits["val"], config.train, generator=generator, device=torch.device("cpu"))
    y_test = preprocessor.target_values(test.y.numpy().reshape(-1))
    y_train = preprocessor.target_values(train.y.numpy().reshape(-1))
    least_squares = least_squares_test_mse(train.X.numpy(), y_train, test.X.numpy(), y_test)

    def ratio() -> float:
        errors = preprocessor.target_values(predict(model, test.X)) - y_test
        return float(np.mean(errors**2)) / least_squares

    trained = ratio()
    choice = keep_the_better(model, train, config.train)
    kept = "line" if choice is not None and choice.kept_line else "trained"
    saved = f"{choice.saved:.2f} (needs {choice.cost:g})" if choice is not None else "-"
    return {"rows": len(frame), "trained": trained, "kept": ratio(), "which": kept, "saved": saved}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--tables", nargs="+", choices=TABLES, default=list(TABLES))
    args = parser.parse_args()
    config = load_config(ROOT / "params.yaml")
    set_threads(config.train.num_threads)
    print("| table | seed | rows | trained / LS | curve's saving, sigma^2 | kept | kept / LS |")
    print("|---|---|---|---|---|---|---|")
    for table in args.tables:
        for seed in args.seeds[:1] if table in ONE_SEED else args.seeds:
            row = measure(config, table, seed)
            print(
                f"| {table} | {seed if table not in ONE_SEED else '-'} | {row['rows']} | "
                f"{row['trained']:.4f} | {row['saved']} | {row['which']} | {row['kept']:.4f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
