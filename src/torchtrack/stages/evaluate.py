"""evaluate: the trained model on the held-out test split, in eval mode under no_grad.

Run by `dvc repro` as `python -m torchtrack evaluate`. Adds the test metrics to the model's
MLflow run, so its row in the MLflow UI holds train, val and test figures together; the
least-squares fit's test MSE rides along as the linear reference.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

from torchtrack.config import METRICS_DIR, MODEL_DIR, PLOTS_DIR, PREPARED_DIR, Config
from torchtrack.data import TabularDataset, read_split, read_truth
from torchtrack.evaluation import least_squares_test_mse, predict, regression_metrics
from torchtrack.figures import predictions_figure
from torchtrack.files import read_json, write_atomic, write_json
from torchtrack.models import load_checkpoint
from torchtrack.recipe import directory_md5, output_tags
from torchtrack.stages.train import RUN_FILE as TRAIN_RUN_FILE
from torchtrack.tracking import Tracker

PLOT_ROWS = 2000  # rows of predictions.csv: enough for a scatter, small enough for dvc plots


def run(
    config: Config,
    prepared_dir: Path = PREPARED_DIR,
    model_dir: Path = MODEL_DIR,
    metrics_path: Path = METRICS_DIR / "evaluate.json",
    plots_dir: Path = PLOTS_DIR,
    run_file: Path = TRAIN_RUN_FILE,
) -> dict[str, float]:
    """Score the model on the test split; return the test metrics."""
    train = read_split(prepared_dir, "train")  # only for the least-squares reference
    test_set = TabularDataset(read_split(prepared_dir, "test"))
    model, _ = load_checkpoint(model_dir / "model.pt")
    model_run_id = read_json(run_file)["model_run_id"]
    params = config.flat("data")
    with Tracker(config.tracking, "evaluate", params=params, model_run=model_run_id) as tracker:
        tracker.log_datasets(
            {"test": test_set.data}, prepared_dir, directory_md5(prepared_dir), test_set.target
        )
        y_true = test_set.y.numpy().reshape(-1).astype(np.float64)
        y_pred = predict(model, test_set.X)
        metrics = {f"test_{k}": v for k, v in regression_metrics(y_true, y_pred).items()}
        # What linear regression reaches at best here: the reference for identity-activation models.
        metrics["test_mse_least_squares"] = least_squares_test_mse(
            train[test_set.features].to_numpy(), train[test_set.target].to_numpy(), test_set.X.numpy(), y_true
        )
        truth = read_truth(prepared_dir)
        if truth is not None and truth.noise_variance > 0:
            # The noise variance is the best MSE any model can reach on this data.
            metrics["test_mse_over_noise_variance"] = metrics["test_mse"] / truth.noise_variance
        write_json(metrics_path, metrics)
        tracker.log_metrics(metrics)
        tracker.log_summary(metrics)
        tracker.tag_model_run(output_tags([metrics_path]))
        promotion = tracker.record_test_metrics(metrics)
        if promotion is not None:
            print(f"torchtrack evaluate: {promotion}", file=sys.stderr)

        shown = np.random.default_rng(config.seed).permutation(len(y_true))[:PLOT_ROWS]
        table = pd.DataFrame({"actual": y_true[shown], "predicted": y_pred[shown]})
        write_atomic(plots_dir / "predictions.csv", lambda tmp: table.to_csv(tmp, index=False))
        tracker.log_figure(predictions_figure(y_true, y_pred), plots_dir / "predictions.png")
    return metrics
