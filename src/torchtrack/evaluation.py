"""Evaluation: predictions under `torch.no_grad()`, regression metrics, and the least-squares
linear fit that any linear model in the pipeline should match."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from torchtrack import portable
from torchtrack.loader import BLOCK_ROWS


@torch.no_grad()
def predict(model: nn.Module, X: torch.Tensor, batch_size: int = BLOCK_ROWS) -> np.ndarray:
    """Model outputs for X (N, F) as a flat float array, in eval mode, without gradients."""
    model.eval()
    device = next(model.parameters()).device
    parts = [model(X[i : i + batch_size].to(device)).cpu() for i in range(0, len(X), batch_size)]
    return torch.cat(parts).numpy().reshape(-1).astype(np.float64)


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """MSE, RMSE, MAE and R^2, as scikit-learn defines them (its tests hold that).

    Computed with NumPy: importing scikit-learn's metrics costs evaluate most of a second.
    """
    y_true = np.asarray(y_true, np.float64).reshape(-1)
    errors = np.asarray(y_pred, np.float64).reshape(-1) - y_true
    mse = float(np.mean(errors**2))
    spread = float(np.sum((y_true - y_true.mean()) ** 2))
    residual = float(np.sum(errors**2))
    if spread > 0:
        r2 = 1.0 - residual / spread
    else:  # a constant target: scikit-learn's r2_score gives 1 for a perfect fit, else 0
        r2 = 1.0 if residual == 0 else 0.0
    return {"mse": mse, "rmse": float(np.sqrt(mse)), "mae": float(np.mean(np.abs(errors))), "r2": r2}


def least_squares_test_mse(
    X_train: np.ndarray,
    y_train: np.ndarray,
    X_test: np.ndarray,
    y_test: np.ndarray,
    chunk_rows: int = BLOCK_ROWS,
) -> float:
    """Test MSE of the exact least-squares linear fit (with intercept) on the train rows: the
    best any linear model can do, the same optimum as scikit-learn's LinearRegression."""
    coef = least_squares_fit(X_train, y_train, chunk_rows)
    residual = portable.matvec(_with_intercept(X_test), coef) - np.asarray(y_test, np.float64).reshape(-1)
    return portable.mean(residual * residual)


def least_squares_fit(X_train: np.ndarray, y_train: np.ndarray, chunk_rows: int = BLOCK_ROWS) -> list[float]:
    """The exact least-squares linear fit of `y_train` on `X_train` (N, F): F weights, then the intercept.

    Solved from the normal equations, accumulated a chunk of rows at a time, so memory grows
    with the number of features squared, not with the rows. Every sum is `portable`'s and the
    solve is plain Python: the same bits on every CPU, where `@` and lstsq run BLAS and LAPACK
    kernels that the CPU chooses.
    """
    X_train = np.asarray(X_train, np.float64)
    y_train = np.asarray(y_train, np.float64).reshape(-1)
    size = X_train.shape[1] + 1
    gram = [[0.0] * size for _ in range(size)]
    moment = [0.0] * size
    for start in range(0, len(X_train), chunk_rows):
        design = _with_intercept(X_train[start : start + chunk_rows])
        target = y_train[start : start + chunk_rows]
        for i in range(size):
            moment[i] += portable.dot(design[:, i], target)
            for j in range(i, size):
                gram[i][j] += portable.dot(design[:, i], design[:, j])
    for i in range(size):
        for j in range(i):
            gram[i][j] = gram[j][i]
    return _solve_normal_equations(gram, moment)


def _solve_normal_equations(gram: list[list[float]], moment: list[float]) -> list[float]:
    """A solution of gram @ coef = moment for a symmetric positive semi-definite `gram`, by
    Gaussian elimination without pivoting (stable for such a matrix, as Cholesky is).

    A direction with no variance left (a constant column: its pivot falls to rounding noise)
    gets coefficient 0 instead of a division by 0; as with lstsq, the fit is then the
    least-squares fit on the other columns.
    """
    n = len(moment)
    rows = [[*gram[i], moment[i]] for i in range(n)]  # the augmented matrix
    noise = 1e-12 * max(max(abs(rows[i][i]) for i in range(n)), 1e-300)
    kept = []
    for k in range(n):
        if rows[k][k] <= noise:
            continue
        kept.append(k)
        for i in range(k + 1, n):
            factor = rows[i][k] / rows[k][k]
            for j in range(k, n + 1):
                rows[i][j] -= factor * rows[k][j]
    coef = [0.0] * n
    for k in reversed(kept):
        coef[k] = (rows[k][n] - math.fsum(rows[k][j] * coef[j] for j in range(k + 1, n))) / rows[k][k]
    return coef


def _with_intercept(X: np.ndarray) -> np.ndarray:
    design = np.ones((len(X), X.shape[1] + 1))
    design[:, :-1] = X
    return design
