"""The prepare stage's work on a CSV file with only pyarrow and NumPy: what `make bench`'s scale
part measures `torchtrack prepare` against, on the same file, side by side.

    python benchmarks/plain_prepare.py CSV FOLDER SETTINGS_JSON

Reads the CSV (its last column the target), splits its rows by a seeded permutation into test,
val and train (each kept in file order), standardises every column, target included, on the
train rows' mean and standard deviation, and writes each split to FOLDER as float32 Parquet.
SETTINGS_JSON holds seed, val_fraction and test_fraction (bench.py takes them from params.yaml
through torchtrack's config). No torchtrack import, so its own costs are not in the baseline.
"""

import json
import sys
from pathlib import Path


def prepare(csv: Path, folder: Path, settings: dict) -> None:
    """Read, split, scale on train, write three Parquet files."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.csv
    import pyarrow.parquet as pq

    table = pyarrow.csv.read_csv(csv)
    columns = {name: table.column(name).to_numpy() for name in table.column_names}  # float64, (N,) each
    del table
    rows = len(next(iter(columns.values())))
    order = np.random.default_rng(settings["seed"]).permutation(rows)
    n_test, n_val = round(rows * settings["test_fraction"]), round(rows * settings["val_fraction"])
    cut = {"test": order[:n_test], "val": order[n_test : n_test + n_val], "train": order[n_test + n_val :]}
    for part in cut.values():
        part.sort()
    folder.mkdir(parents=True, exist_ok=True)
    scaled: dict[str, dict[str, np.ndarray]] = {name: {} for name in cut}
    for name, values in columns.items():
        train = values[cut["train"]]
        mean, std = train.mean(), train.std()
        for split, part in cut.items():
            scaled[split][name] = ((values[part] - mean) / (std or 1.0)).astype(np.float32)
    for split, arrays in scaled.items():
        pq.write_table(pa.table(arrays), folder / f"{split}.parquet")


if __name__ == "__main__":
    prepare(Path(sys.argv[1]), Path(sys.argv[2]), json.loads(sys.argv[3]))
