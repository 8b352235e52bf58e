"""prepare: synthetic, CSV or diabetes rows -> seeded train/val/test Parquet splits, scaled on train.

Run by `dvc repro` as `python -m torchtrack prepare`. Its MLflow run is tagged with the
splits' content hash (lineage.PREPARED_TAG), which is how train finds it.
"""

from __future__ import annotations

import numpy as np

from torchtrack import portable
from torchtrack.config import Config
from torchtrack.data import Scaler, load_source, split_indices, write_splits
from torchtrack.files import write_json
from torchtrack.lineage import PREPARED_TAG, directory_md5
from torchtrack.paths import PREPARE_METRICS, PREPARED_DIR, SCALER_FILE
from torchtrack.tracking import Tracker


def run(config: Config) -> dict[str, float]:
    """Make the splits and their summary; return the summary."""
    frame, target, truth = load_source(config.data, config.seed)  # bad input fails before any run
    indices = split_indices(len(frame), config.data.val_fraction, config.data.test_fraction, config.seed)
    with Tracker(config.tracking, "prepare", params=config.flat("seed", "data")) as tracker:
        raw = {name: frame.iloc[rows].reset_index(drop=True) for name, rows in indices.items()}
        del frame  # the splits hold every row now; at a million rows this matters
        scaler = Scaler.fit(raw["train"], target, enabled=config.data.scale)
        scaled = {name: scaler.transform(part) for name, part in raw.items()}
        write_splits(scaled, scaler, PREPARED_DIR, truth)
        summary: dict[str, float] = {f"rows_{name}": len(part) for name, part in raw.items()}
        summary["features"] = len(scaler.features)
        summary["target_std_train"] = portable.std(raw["train"][target].to_numpy(), ddof=1)
        if truth is not None:
            test_X = raw["test"][scaler.features].to_numpy(np.float64)
            residual = raw["test"][target].to_numpy() - truth.clean_target(test_X)
            summary["noise_variance"] = truth.noise_variance
            summary["oracle_test_mse"] = portable.mean(residual * residual)  # the true rule's test MSE
        write_json(PREPARE_METRICS, summary)
        tracker.log_metrics(summary)
        tracker.log_artifact(PREPARED_DIR / SCALER_FILE)
        tracker.set_tags({PREPARED_TAG: directory_md5(PREPARED_DIR)})
    return summary
