"""prepare: synthetic, CSV or diabetes rows -> seeded train/val/test Parquet splits, scaled on train.

Run by `dvc repro` as `python -m torchtrack prepare`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from torchtrack import portable
from torchtrack.config import METRICS_DIR, PREPARED_DIR, Config
from torchtrack.data import Scaler, load_source, split_indices, write_splits
from torchtrack.files import write_json
from torchtrack.tracking import Tracker

RUN_FILE = Path("data/prepare_run.json")  # which MLflow run made the current splits


def run(
    config: Config,
    out_dir: Path = PREPARED_DIR,
    metrics_path: Path = METRICS_DIR / "prepare.json",
    run_file: Path = RUN_FILE,
) -> dict[str, float]:
    """Make the splits and their summary; return the summary."""
    frame, target, truth = load_source(config.data, config.seed)  # bad input fails before any run
    indices = split_indices(len(frame), config.data.val_fraction, config.data.test_fraction, config.seed)
    with Tracker(config.tracking, "prepare", params=config.flat("seed", "data")) as tracker:
        raw = {name: frame.iloc[rows].reset_index(drop=True) for name, rows in indices.items()}
        del frame  # the splits hold every row now; at a million rows this matters
        scaler = Scaler.fit(raw["train"], target, enabled=config.data.scale)
        write_splits({name: scaler.transform(part) for name, part in raw.items()}, scaler, out_dir, truth)
        summary: dict[str, float] = {f"rows_{name}": len(part) for name, part in raw.items()}
        summary["features"] = len(scaler.features)
        summary["target_std_train"] = portable.std(raw["train"][target].to_numpy(), ddof=1)
        if truth is not None:
            test_X = raw["test"][scaler.features].to_numpy(np.float64)
            residual = raw["test"][target].to_numpy() - truth.clean_target(test_X)
            summary["noise_variance"] = truth.noise_variance
            summary["oracle_test_mse"] = portable.mean(residual * residual)  # the true rule's test MSE
        write_json(metrics_path, summary)
        tracker.log_metrics(summary)
        tracker.log_artifact(out_dir / "scaler.json")
        write_json(run_file, {"prepare_run_id": tracker.run_id})
    return summary
