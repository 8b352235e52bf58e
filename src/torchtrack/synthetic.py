"""Synthetic regression families: seeded rows made by a known rule with a known noise level.

    frame, truth = make_synthetic(200, family="line")  # the journal's y = 2x + 3 + noise

Every family is y = f(z) + noise with z = X @ weights + bias; `SyntheticTruth` records the
rule, so the best possible test MSE (`truth.noise_variance`) is known.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from torchtrack import portable
from torchtrack.choices import Family, names, unknown
from torchtrack.files import read_json, write_json

TARGET = "y"


@dataclass(frozen=True)
class SyntheticTruth:
    """The rule that made a synthetic dataset: y = f(z) + noise, z = X @ weights + bias.

    The noise is Gaussian with `noise_std`; for the outliers family a fraction
    `outlier_fraction` of rows also gets an exponential error of mean `outlier_scale * noise_std`.
    """

    weights: list[float]
    bias: float
    noise_std: float
    family: Family = "tanh_plus_x"
    scaled_tanh_a: float = 1.0
    scaled_tanh_b: float = 1.0
    outlier_fraction: float = 0.0
    outlier_scale: float = 0.0

    def clean_target(self, X: np.ndarray) -> np.ndarray:
        """The noiseless target for raw features X, the same bits on every CPU (`portable`)."""
        z = portable.matvec(X, self.weights) + self.bias
        if self.family in ("tanh_plus_x", "outliers"):
            return portable.tanh(z) + z
        if self.family in ("line", "linear"):
            return z
        if self.family == "nonlinear":
            return portable.sin(2 * z) + z * z / 2
        if self.family == "scaled_tanh":
            return self.scaled_tanh_a * portable.tanh(z) + self.scaled_tanh_b * z
        raise unknown("synthetic family", self.family, Family)

    def clean_target_of(self, features: pd.DataFrame) -> np.ndarray:
        """`clean_target` of a frame of raw feature columns, in their order, a block of rows at
        a time: the same bits, without a float64 copy of the whole frame."""
        step = max(1, portable.PIECE_VALUES // max(features.shape[1], 1))
        target = np.empty(len(features))
        for start in range(0, len(features), step):  # the rule is row by row: blocks give the same bits
            rows = slice(start, start + step)
            target[rows] = self.clean_target(features.iloc[rows].to_numpy(np.float64))
        return target

    @property
    def noise_variance(self) -> float:
        """Variance of the noise: the best test MSE any model can reach on this data."""
        p, spike = self.outlier_fraction, self.outlier_scale * self.noise_std
        # Exponential spikes of mean s have E[s^2] = 2 s^2, so Var = sigma^2 + 2 p s^2 - (p s)^2.
        return self.noise_std**2 + 2 * p * spike**2 - (p * spike) ** 2

    def sample_noise(self, rng: np.random.Generator, n_samples: int) -> np.ndarray:
        """Seeded noise for `n_samples` rows."""
        noise = rng.normal(0.0, self.noise_std, n_samples)
        if self.outlier_fraction > 0:
            corrupted = rng.random(n_samples) < self.outlier_fraction
            noise += corrupted * rng.exponential(self.outlier_scale * self.noise_std, n_samples)
        return noise

    def save(self, path: Path) -> None:
        """Write as JSON."""
        write_json(path, asdict(self))

    @classmethod
    def load(cls, path: Path) -> SyntheticTruth:
        """Read back what `save` wrote."""
        return cls(**read_json(path))


def make_synthetic(
    n_samples: int = 1000,
    n_features: int = 1,
    noise_std: float = 0.3,
    seed: int = 0,
    family: Family = "tanh_plus_x",
    *,
    scaled_tanh_a: float = 2.0,
    scaled_tanh_b: float = 0.5,
    outlier_fraction: float = 0.1,
    outlier_scale: float = 10.0,
) -> tuple[pd.DataFrame, SyntheticTruth]:
    """Seeded rows of `family` (one of choices.Family): features x0.. and target y, plus the truth.

    Features have different scales and offsets so that scaling matters, and z has mean 0.3
    and std 1.5, where tanh bends. `line` ignores `n_features`: it has one column, x.
    """
    if family not in names(Family):
        raise unknown("synthetic family", family, Family)
    rng = np.random.default_rng(seed)
    # Each feature is an array of its own, so that the frame's columns can be let go one at a
    # time (data.split_rows); the rows are drawn a block at a time: one (N, F) draw cut by rows,
    # the same numbers, without a second copy of the table or full-size temporaries.
    step = max(1, portable.PIECE_VALUES // max(n_features, 1))  # rows per block
    if family == "line":
        columns = {"x": rng.uniform(0.0, 10.0, n_samples)}
        weights, bias = np.array([2.0]), 3.0
    else:
        scales = rng.uniform(0.5, 5.0, n_features)
        offsets = rng.uniform(-3.0, 3.0, n_features)
        columns = {f"x{i}": np.empty(n_samples) for i in range(n_features)}
        for start in range(0, n_samples, step):
            block = rng.standard_normal((min(step, n_samples - start), n_features))
            block *= scales
            block += offsets
            for column, values in zip(columns.values(), block.T, strict=True):
                column[start : start + len(block)] = values
        direction = rng.standard_normal(n_features)
        norm = math.sqrt(portable.dot(direction, direction))  # not np.linalg.norm: BLAS, CPU-dependent
        weights = 1.5 * direction / norm / scales  # z has std 1.5
        bias = 0.3 - portable.dot(offsets, weights)  # centre z near 0.3, where tanh bends
    truth = SyntheticTruth(
        weights.tolist(),
        bias,
        noise_std,
        family,
        scaled_tanh_a=scaled_tanh_a if family == "scaled_tanh" else 1.0,
        scaled_tanh_b=scaled_tanh_b if family == "scaled_tanh" else 1.0,
        outlier_fraction=outlier_fraction if family == "outliers" else 0.0,
        outlier_scale=outlier_scale if family == "outliers" else 0.0,
    )
    y = truth.clean_target_of(pd.DataFrame(columns, copy=False))
    y += truth.sample_noise(rng, n_samples)
    return pd.DataFrame({**columns, TARGET: y}, copy=False), truth  # copy=False: a block per column
