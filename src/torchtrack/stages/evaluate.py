"""evaluate: the trained model on the held-out test split, in eval mode under no_grad.

Run by `dvc repro` as `python -m torchtrack evaluate`. Metrics are in the target's own units
(the checkpoint's preprocessing maps a standardized target back). Adds the test metrics to the model's
MLflow run, so its row in the MLflow UI holds train, val and test figures together; the
least-squares fit's test MSE rides along as the linear reference, and a model worse than it
gets a warning and a tag (baseline.py). The model run is the one tagged with models/model.pt's
content hash (tracking/backend/lineage.find_model_run). The splits are read a block of rows at
a time (evaluation.score_split): memory does not grow with the table.
"""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd

from torchtrack.baseline import WORSE_TAG, least_squares_warning
from torchtrack.config import Config
from torchtrack.data import prepared_split, read_truth
from torchtrack.evaluation import sample_rows, score_split, split_columns
from torchtrack.figures import draw
from torchtrack.files import write_atomic, write_json
from torchtrack.models import load_checkpoint
from torchtrack.paths import (
    EVALUATE_METRICS,
    MODEL_FILE,
    PREDICTIONS_CSV,
    PREDICTIONS_FIGURE,
    PREPARED_DIR,
)
from torchtrack.preprocessing import Preprocessor
from torchtrack.tables import parquet_rows
from torchtrack.tracking.client import model_run_id
from torchtrack.tracking.hashes import directory_md5
from torchtrack.tracking.recipe import output_tags
from torchtrack.tracking.tracker import Tracker

PLOT_ROWS = 2000  # rows of predictions.csv: enough for a scatter, small enough for dvc plots
FIGURE_ROWS = 10_000  # rows predictions.png plots, a seeded sample whose start is predictions.csv's


def run(config: Config) -> dict[str, float]:
    """Score the model on the test split; return the test metrics."""
    train_file = prepared_split(PREPARED_DIR, "train")  # only for the least-squares reference
    test_file = prepared_split(PREPARED_DIR, "test")
    model, payload = load_checkpoint(MODEL_FILE)
    preprocessor = Preprocessor.from_dict(payload["preprocessing"])  # maps outputs to the target's units
    params = config.flat("data")
    with Tracker(config.tracking, "evaluate", params=params, model_run=model_run_id(MODEL_FILE)) as tracker:
        _, target = split_columns(test_file)
        tracker.log_datasets({"test": test_file}, PREPARED_DIR, directory_md5(PREPARED_DIR), target)
        sample = sample_rows(parquet_rows(test_file), config.seed, FIGURE_ROWS)
        scores = score_split(model, preprocessor.target_values, train_file, test_file, sample)
        # mse_least_squares is what linear regression reaches at best here: the reference for
        # identity-activation models.
        metrics = {f"test_{k}": v for k, v in scores.metrics.items()}
        truth = read_truth(PREPARED_DIR)
        if truth is not None and truth.noise_variance > 0:
            # The noise variance is the best MSE any model can reach on this data.
            metrics["test_mse_over_noise_variance"] = metrics["test_mse"] / truth.noise_variance
        warning = least_squares_warning(metrics["test_mse"], metrics["test_mse_least_squares"])
        if warning is not None:
            print(f"torchtrack evaluate: warning: {warning}", file=sys.stderr)
            tracker.set_tags({WORSE_TAG: warning})
        write_json(EVALUATE_METRICS, metrics)
        tracker.log_metrics(metrics)
        tracker.log_summary(metrics)
        tracker.tag_model_run(output_tags([EVALUATE_METRICS]))
        promotion = tracker.record_test_metrics(metrics)
        if promotion is not None:
            print(f"torchtrack evaluate: {promotion}", file=sys.stderr)

        shown = {"actual": scores.actual[:PLOT_ROWS], "predicted": scores.predicted[:PLOT_ROWS]}
        table = pd.DataFrame(shown)
        write_atomic(PREDICTIONS_CSV, lambda tmp: table.to_csv(tmp, index=False))
        in_file_order = np.argsort(sample)  # every row as the file holds them, when there are few
        plotted = {"actual": scores.actual[in_file_order], "predicted": scores.predicted[in_file_order]}
        draw("predictions", pd.DataFrame(plotted), PREDICTIONS_FIGURE, tracker.painter)
        tracker.log_figure(PREDICTIONS_FIGURE)
    return metrics
