"""prepare: synthetic, CSV or diabetes rows -> seeded train/val/test Parquet splits, their
columns encoded and scaled by a preprocessing fitted on train (torchtrack.preprocessing).

Run by `dvc repro` as `python -m torchtrack prepare`. Its MLflow run is tagged with the
splits' content hash (tracking/hashes.PREPARED_TAG), which is how train finds it.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from torchtrack import portable
from torchtrack.config import Config
from torchtrack.data import load_source, split_positions, split_rows, write_split, write_splits
from torchtrack.files import write_json
from torchtrack.paths import (
    COLUMNS_FILE,
    PREPARE_METRICS,
    PREPARE_SCRATCH_PREFIX,
    PREPARED_DIR,
    PREPROCESSING_FILE,
    split_file,
)
from torchtrack.preprocessing import ROLES, Preprocessor, drop_missing_target
from torchtrack.tables import note
from torchtrack.tracking.hashes import PREPARED_TAG, directory_md5
from torchtrack.tracking.tracker import Tracker


def run(config: Config) -> dict[str, float]:
    """Make the splits and their summary; return the summary."""
    # Synthetic or CSV rows and the splits wait in a private folder, removed at the end: the rows' columns
    # are read one at a time, and each split is made and written a row group at a time.
    with tempfile.TemporaryDirectory(prefix=PREPARE_SCRATCH_PREFIX, dir=".") as folder:
        # Bad input fails here, before any run or output exists.
        frame, target, truth = load_source(config.data, config.seed, Path(folder))
        frame, dropped_rows = drop_missing_target(frame, target)
        indices = split_positions(frame, target, config.data, config.seed)
        raw = split_rows(frame, indices)  # the table's row numbers kept; `frame` is left without columns
        del frame, indices  # what is left of them: the splits' row numbers, 4 bytes a row (int32)
        preprocessor = Preprocessor.fit(raw["train"], target, config.data)
        rows = {name: len(part) for name, part in raw.items()}
        # What the summary reads of the raw rows, once the splits are written (a bad value is
        # named by write_split first): the train rows, written last, and the synthetic test rows,
        # their row labels only, kept for it.
        train, test = raw["train"], raw["test"] if truth is not None else None
        # Each split's Parquet file, made here: memory holds a row group of it, and the raw rows at
        # most once (a Parquet file's), and moved into place once the run is open.
        staged = {name: Path(folder) / split_file(".", name).name for name in raw}
        for name in list(raw):  # train's rows in a seeded order: each of its row groups a random sample
            order_seed = config.seed if name == "train" else None
            write_split(staged[name], raw.pop(name), preprocessor, shuffle_seed=order_seed)
        target_std_train = portable.std(train[target].to_numpy(), ddof=1)
        oracle_test_mse = None
        if truth is not None:  # the true rule's test MSE, its features a column at a time
            features = (test[name] for name in test.columns if name != target)
            residual = test[target].to_numpy() - truth.clean_target_of(features, len(test))
            oracle_test_mse = portable.mean(residual * residual)
            del features, residual
        del train, test
        if dropped_rows:
            note(f"{dropped_rows} row(s) without a value of the target {target!r} left out")
        for column in preprocessor.columns:
            if column.role == "dropped":
                note(f"column {column.name!r} not used: {column.reason}")
        with Tracker(config.tracking, "prepare", params=config.flat("seed", "data")) as tracker:
            write_splits(staged, preprocessor, PREPARED_DIR, truth)
            write_json(PREPARED_DIR / COLUMNS_FILE, preprocessor.roles())
            summary: dict[str, float] = {f"rows_{name}": n for name, n in rows.items()}
            summary["rows_dropped_missing_target"] = dropped_rows
            summary["features"] = len(preprocessor.features)
            for role in ROLES:
                summary[f"columns_{role}"] = sum(c.role == role for c in preprocessor.columns)
            summary["target_std_train"] = target_std_train
            if truth is not None:
                summary["noise_variance"] = truth.noise_variance
                summary["oracle_test_mse"] = oracle_test_mse  # the true rule's test MSE
            write_json(PREPARE_METRICS, summary)
            tracker.log_metrics(summary)
            tracker.log_artifact(PREPARED_DIR / PREPROCESSING_FILE)
            tracker.log_artifact(PREPARED_DIR / COLUMNS_FILE)
            tracker.set_tags({PREPARED_TAG: directory_md5(PREPARED_DIR)})
    return summary
