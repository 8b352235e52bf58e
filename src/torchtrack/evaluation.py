"""Evaluation: predictions under `torch.no_grad()`, regression metrics, and the least-squares
linear fit that any linear model in the pipeline should match."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


@torch.no_grad()
def predict(model: nn.Module, X: torch.Tensor, batch_size: int = 65536) -> np.ndarray:
    """Model outputs for X (N, F) as a flat float array, in eval mode, without gradients."""
    model.eval()
    device = next(model.parameters()).device
    parts = [model(X[i : i + batch_size].to(device)).cpu() for i in range(0, len(X), batch_size)]
    return torch.cat(parts).numpy().reshape(-1).astype(np.float64)


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """MSE, RMSE, MAE and R^2 from scikit-learn."""
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

    mse = float(mean_squared_error(y_true, y_pred))
    return {
        "mse": mse,
        "rmse": float(np.sqrt(mse)),
        "mae": float(mean_absolute_error(y_true, y_pred)),
        "r2": float(r2_score(y_true, y_pred)),
    }


def least_squares_test_mse(
    X_train: np.ndarray, y_train: np.ndarray, X_test: np.ndarray, y_test: np.ndarray, chunk_rows: int = 65536
) -> float:
    """Test MSE of the exact least-squares linear fit (with intercept) on the train rows: the
    best any linear model can do, the same optimum as scikit-learn's LinearRegression.

    Solved from the normal equations, accumulated in float64 a chunk of rows at a time, so
    memory grows with the number of features squared, not with the rows.
    """
    X_train, X_test = np.asarray(X_train), np.asarray(X_test)
    y_train = np.asarray(y_train, np.float64).reshape(-1)
    features = X_train.shape[1]
    gram = np.zeros((features + 1, features + 1))
    moment = np.zeros(features + 1)
    for start in range(0, len(X_train), chunk_rows):
        design = _with_intercept(X_train[start : start + chunk_rows])
        gram += design.T @ design
        moment += design.T @ y_train[start : start + chunk_rows]
    coef = np.linalg.lstsq(gram, moment, rcond=None)[0]  # lstsq: a constant column is no error
    residual = _with_intercept(X_test) @ coef - np.asarray(y_test, np.float64).reshape(-1)
    return float(np.mean(residual**2))


def _with_intercept(X: np.ndarray) -> np.ndarray:
    design = np.ones((len(X), X.shape[1] + 1))
    design[:, :-1] = X
    return design
