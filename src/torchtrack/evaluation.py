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
    X_train: np.ndarray, y_train: np.ndarray, X_test: np.ndarray, y_test: np.ndarray
) -> float:
    """Test MSE of scikit-learn's LinearRegression fitted on the train rows: the exact linear optimum."""
    from sklearn.linear_model import LinearRegression

    fitted = LinearRegression().fit(np.asarray(X_train, np.float64), np.asarray(y_train, np.float64).ravel())
    residual = fitted.predict(np.asarray(X_test, np.float64)) - np.asarray(y_test, np.float64).ravel()
    return float(np.mean(residual**2))
