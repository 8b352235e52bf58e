"""Evaluation: predictions under `torch.no_grad()`, regression metrics, and the least-squares
linear fit that any linear model in the pipeline should match; `score_split` computes them all
from Parquet files read a block of rows at a time, so memory does not grow with the table.

Every sum is exactly rounded (`portable`), so a metric has the same bits however its rows
were cut into chunks."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from torchtrack import portable
from torchtrack.loader import BLOCK_ROWS
from torchtrack.tables import numeric_blocks, parquet_columns


@torch.no_grad()
def predict(model: nn.Module, X: torch.Tensor, batch_size: int = BLOCK_ROWS) -> np.ndarray:
    """Model outputs for X (N, F) as a flat float array, in eval mode, without gradients."""
    model.eval()
    device = next(model.parameters()).device
    parts = [model(X[i : i + batch_size].to(device)).cpu() for i in range(0, len(X), batch_size)]
    return torch.cat(parts).numpy().reshape(-1).astype(np.float64)


class RegressionSums:
    """The sums behind MSE, RMSE, MAE and R^2, added a chunk of rows at a time, exactly rounded.

        sums = RegressionSums()
        for y_true, y_pred in chunks: sums.add(y_true, y_pred)
        mean = sums.target_mean()
        for y_true in chunks: sums.add_spread(y_true, mean)  # a second pass over the targets
        sums.metrics()

    R^2's spread, sum((y - mean)^2), takes a second pass over the targets once their mean is
    known: sum(y^2) - n mean^2 in one pass cancels away the digits that matter when the spread
    is small beside the mean.
    """

    def __init__(self) -> None:
        self.rows = 0
        self._sums = portable.ExactSums(3)  # squared errors, absolute errors, targets
        self._spread = portable.ExactSums(1)  # squared deviations from the targets' mean

    def add(self, y_true: np.ndarray, y_pred: np.ndarray) -> None:
        """Add a chunk of targets and their predictions (N,) each."""
        y_true = np.asarray(y_true, np.float64).reshape(-1)
        errors = np.asarray(y_pred, np.float64).reshape(-1) - y_true
        self._sums.add(np.stack([errors * errors, np.abs(errors), y_true], axis=1))  # (N, 3)
        self.rows += len(y_true)

    def target_mean(self) -> float:
        """The mean of the targets added so far."""
        return self._sums.totals()[2] / self.rows

    def add_spread(self, y_true: np.ndarray, mean: float) -> None:
        """Second pass: add a chunk of the same targets, with `target_mean()` as `mean`."""
        deviations = np.asarray(y_true, np.float64).reshape(-1) - mean
        self._spread.add(deviations * deviations)

    def metrics(self) -> dict[str, float]:
        """MSE, RMSE, MAE and R^2, as scikit-learn defines them (its tests hold that)."""
        squared, absolute, _ = self._sums.totals()
        (spread,) = self._spread.totals()
        mse = squared / self.rows
        if spread > 0:
            r2 = 1.0 - squared / spread
        else:  # a constant target: scikit-learn's r2_score gives 1 for a perfect fit, else 0
            r2 = 1.0 if squared == 0 else 0.0
        return {"mse": mse, "rmse": math.sqrt(mse), "mae": absolute / self.rows, "r2": r2}


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """MSE, RMSE, MAE and R^2 of whole arrays (`RegressionSums` in one chunk).

    Computed with NumPy: importing scikit-learn's metrics costs evaluate most of a second.
    """
    sums = RegressionSums()
    sums.add(y_true, y_pred)
    sums.add_spread(y_true, sums.target_mean())
    return sums.metrics()


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
    residual = line_values(X_test, coef) - np.asarray(y_test, np.float64).reshape(-1)
    return portable.mean(residual * residual)


def least_squares_fit(X_train: np.ndarray, y_train: np.ndarray, chunk_rows: int = BLOCK_ROWS) -> list[float]:
    """The exact least-squares linear fit of `y_train` on `X_train` (N, F): F weights, then the
    intercept (`NormalEquations`, fed `chunk_rows` rows at a time, each chunk made float64 in
    turn: a float32 table is not copied whole)."""
    X_train = np.asarray(X_train)
    y_train = np.asarray(y_train).reshape(-1)
    equations = NormalEquations(X_train.shape[1])
    for start in range(0, len(X_train), chunk_rows):
        equations.add(X_train[start : start + chunk_rows], y_train[start : start + chunk_rows])
    return equations.solve()


class NormalEquations:
    """The normal equations of a least-squares linear fit with intercept, accumulated a chunk
    of rows at a time: memory grows with the number of features squared, not with the rows.

    Every sum is `portable.ExactSums`' and the solve is plain Python: the same bits on every
    CPU and for any chunking, where `@` and lstsq run BLAS and LAPACK kernels that the CPU
    chooses.
    """

    def __init__(self, features: int):
        self.size = features + 1  # the intercept's column last
        self._pairs = np.triu_indices(self.size)  # gram's upper triangle, row by row
        self._sums = portable.ExactSums(len(self._pairs[0]) + self.size)  # gram, then moment

    def add(self, X: np.ndarray, y: np.ndarray) -> None:
        """Add a chunk of rows X (N, F) and targets y (N,)."""
        X = np.asarray(X, np.float64)
        y = np.asarray(y, np.float64).reshape(-1)
        step = max(1, portable.PIECE_VALUES // self._sums.width)  # bounds the (N, pairs) products
        for start in range(0, len(X), step):
            design = _with_intercept(X[start : start + step])  # (n, F + 1)
            rows, columns = self._pairs
            products = design[:, rows] * design[:, columns]  # (n, pairs)
            moments = design * y[start : start + step, None]  # (n, F + 1)
            self._sums.add(np.concatenate([products, moments], axis=1))

    def solve(self) -> list[float]:
        """The fit's F weights, then its intercept."""
        totals = self._sums.totals()
        pairs = len(self._pairs[0])
        gram = [[0.0] * self.size for _ in range(self.size)]
        for total, i, j in zip(totals[:pairs], *self._pairs, strict=True):
            gram[i][j] = gram[j][i] = total
        return _solve_normal_equations(gram, totals[pairs:])


def line_values(X: np.ndarray, coef: list[float]) -> np.ndarray:
    """The linear fit `coef` (F weights, then the intercept) at rows X (N, F): (N,)."""
    return portable.matvec(_with_intercept(np.asarray(X, np.float64)), coef)


def sample_rows(rows: int, seed: int, count: int) -> np.ndarray:
    """The row indices a seeded sample of `count` rows out of `rows` shows, in its order: the
    first of a seeded permutation, so a smaller sample is the start of a larger one.

    The permutation takes 8 bytes per row for a moment; the rows themselves are not read."""
    return np.random.default_rng(seed).permutation(rows)[:count]


def split_columns(path: str | Path) -> tuple[list[str], str]:
    """A prepared split's feature columns and its target, the last column (as `TabularDataset`)."""
    *features, target = parquet_columns(path)
    return features, target


@dataclass(frozen=True)
class SplitScores:
    """What `score_split` measured, in the target's own units."""

    metrics: dict[str, float]  # mse, rmse, mae, r2, and mse_least_squares: the linear reference
    actual: np.ndarray  # (S,) the sampled rows' targets, in the sample's order
    predicted: np.ndarray  # (S,) the model's predictions for them


def score_split(
    model: nn.Module,
    target_units: Callable[[np.ndarray], np.ndarray],
    train_path: str | Path,
    test_path: str | Path,
    sample: np.ndarray,
    block_rows: int = BLOCK_ROWS,
) -> SplitScores:
    """Score `model` on the prepared split `test_path`, a block of rows at a time: its metrics,
    the test MSE of the least-squares fit on `train_path`, and its values at the test rows
    `sample` (indices, see `sample_rows`). `target_units` maps scaled targets and outputs to
    the target's units (`Preprocessor.target_values`).

    One pass over the train rows (the normal equations), one over the test rows (predictions,
    errors, the fit's errors, the sample), and one over the test targets alone (R^2's spread):
    memory holds a few blocks, whatever the rows. Every sum is exact, so the metrics do not
    depend on `block_rows`; with the default, the model also sees the batches `predict` gives
    the whole split, whatever the file's row groups: the bits of a whole-table evaluation.
    """
    features, target = split_columns(test_path)
    equations = NormalEquations(len(features))
    for _, X, y in _split_blocks(train_path, features, target, block_rows):
        equations.add(X, target_units(y))
    coef = equations.solve()

    sums = RegressionSums()
    line_errors = portable.ExactSums(1)
    sample = np.asarray(sample, np.int64)
    slots = np.argsort(sample)  # sample[slots] ascending, to find each block's rows
    ascending = sample[slots]
    actual, predicted = np.empty(len(sample)), np.empty(len(sample))
    for start, X, y in _split_blocks(test_path, features, target, block_rows):
        y_true = target_units(y)
        y_pred = target_units(predict(model, torch.from_numpy(X)))
        sums.add(y_true, y_pred)
        residual = line_values(X, coef) - y_true
        line_errors.add(residual * residual)
        first, last = np.searchsorted(ascending, [start, start + len(y)])
        picked = ascending[first:last] - start
        actual[slots[first:last]], predicted[slots[first:last]] = y_true[picked], y_pred[picked]

    mean = sums.target_mean()
    for _, _, y in _split_blocks(test_path, [], target, block_rows):
        sums.add_spread(target_units(y), mean)
    metrics = sums.metrics()
    metrics["mse_least_squares"] = line_errors.totals()[0] / sums.rows
    return SplitScores(metrics, actual, predicted)


def _split_blocks(
    path: str | Path, features: list[str], target: str, block_rows: int
) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """A prepared split's blocks as (first row, X (N, F) float32, y (N,) float32), as
    `TabularDataset` holds them; DataError naming a column that is not finite numbers, once the
    split is read (tables.numeric_blocks): nothing is written before."""
    for start, values in numeric_blocks(path, [*features, target], block_rows):
        block = np.stack([column.astype(np.float32, copy=False) for column in values])  # (F + 1, N)
        # X column-major, as pandas hands it to TabularDataset: a matmul's rounding follows the
        # memory layout, and this one gives the predictions their in-memory bits.
        yield start, block[:-1].T, block[-1]


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
