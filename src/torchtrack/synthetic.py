"""Synthetic regression families: seeded rows made by a known rule with a known noise level.

    frame, truth = make_synthetic(200, family="line")  # the journal's y = 2x + 3 + noise

Every family is y = f(z) + noise with z = X @ weights + bias; `SyntheticTruth` records the
rule, so the best possible test MSE (`truth.noise_variance`) is known.
"""

from __future__ import annotations

import copy
import itertools
import math
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

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
        return self.curve(portable.matvec(X, self.weights) + self.bias)

    def clean_target_of(self, columns: Iterable[np.ndarray], rows: int) -> np.ndarray:
        """`clean_target` of the raw feature columns, (N,) each, given one at a time in order:
        the same bits, with z and one column in memory instead of X whole."""
        z = portable.matvec_columns(columns, self.weights, rows)
        target = np.empty(rows)
        for start in range(0, rows, portable.PIECE_VALUES):  # the curve's temporaries a block at a time
            piece = slice(start, start + portable.PIECE_VALUES)
            target[piece] = self.curve(z[piece] + self.bias)
        return target

    def curve(self, z: np.ndarray) -> np.ndarray:
        """f(z) of the family: the noiseless target of the rows whose z = X @ weights + bias."""
        if self.family in ("tanh_plus_x", "outliers"):
            return portable.tanh(z) + z
        if self.family in ("line", "linear"):
            return z
        if self.family == "nonlinear":
            return portable.sin(2 * z) + z * z / 2
        if self.family == "scaled_tanh":
            return self.scaled_tanh_a * portable.tanh(z) + self.scaled_tanh_b * z
        raise unknown("synthetic family", self.family, Family)

    @property
    def noise_variance(self) -> float:
        """Variance of the noise: the best test MSE any model can reach on this data."""
        p, spike = self.outlier_fraction, self.outlier_scale * self.noise_std
        # Exponential spikes of mean s have E[s^2] = 2 s^2, so Var = sigma^2 + 2 p s^2 - (p s)^2.
        return self.noise_std**2 + 2 * p * spike**2 - (p * spike) ** 2

    def noise_blocks(self, rng: np.random.Generator, sizes: list[int]) -> Iterator[np.ndarray]:
        """Seeded noise for sum(sizes) rows, a block of each size in turn: the numbers one draw of
        all the rows gives (a normal for each row; for the outliers family then a uniform for
        each row, then an exponential for each row). Those streams follow one another in `rng`,
        so the outliers' uniforms and exponentials come from copies of it moved past the rows'
        normals (and uniforms) by drawing those first."""
        normal = uniform = spikes = rng
        if self.outlier_fraction > 0:
            normal = copy.deepcopy(rng)
            for size in sizes:
                rng.normal(0.0, self.noise_std, size)
            uniform = copy.deepcopy(rng)
            for size in sizes:
                rng.random(size)
        for size in sizes:
            noise = normal.normal(0.0, self.noise_std, size)
            if self.outlier_fraction > 0:
                corrupted = uniform.random(size) < self.outlier_fraction
                noise += corrupted * spikes.exponential(self.outlier_scale * self.noise_std, size)
            yield noise

    def save(self, path: Path) -> None:
        """Write as JSON."""
        write_json(path, asdict(self))

    @classmethod
    def load(cls, path: Path) -> SyntheticTruth:
        """Read back what `save` wrote."""
        return cls(**read_json(path))


class FeatureColumns(Protocol):
    """Where `write_synthetic` puts the columns it draws: a block of rows at a time in, and the
    same blocks out (`tables.ColumnFile` keeps them in a file)."""

    def append(self, block: dict[str, np.ndarray]) -> None:
        """Add rows: name -> values (B,), the same names each time."""

    def blocks(self) -> Iterator[dict[str, np.ndarray]]:
        """The rows appended, in the blocks they were appended in."""


class ColumnArrays:
    """`FeatureColumns` in memory: one array per column, filled a block of rows at a time."""

    def __init__(self, rows: int):
        self.rows = rows
        self.arrays: dict[str, np.ndarray] = {}
        self._ends: list[int] = []  # each block's end

    def append(self, block: dict[str, np.ndarray]) -> None:
        """Copy a block of rows into place."""
        start = self._ends[-1] if self._ends else 0
        size = 0
        for name, values in block.items():
            if name not in self.arrays:
                self.arrays[name] = np.empty(self.rows)
            self.arrays[name][start : start + len(values)] = values
            size = len(values)
        self._ends.append(start + size)

    def blocks(self) -> Iterator[dict[str, np.ndarray]]:
        """Views of the blocks appended, in order."""
        for start, end in itertools.pairwise([0, *self._ends]):
            yield {name: values[start:end] for name, values in self.arrays.items()}


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
    """Seeded rows of `family` (one of choices.Family): features x0.. and target y, plus the truth
    (`write_synthetic`'s rows, as one DataFrame)."""
    features, targets = ColumnArrays(n_samples), ColumnArrays(n_samples)
    truth = write_synthetic(
        features,
        targets,
        n_samples,
        n_features,
        noise_std,
        seed,
        family,
        scaled_tanh_a=scaled_tanh_a,
        scaled_tanh_b=scaled_tanh_b,
        outlier_fraction=outlier_fraction,
        outlier_scale=outlier_scale,
    )
    # copy=False: a block per column, so that the frame's columns can be let go one at a time
    return pd.DataFrame({**features.arrays, **targets.arrays}, copy=False), truth


def write_synthetic(
    features: FeatureColumns,
    targets: FeatureColumns,
    n_samples: int,
    n_features: int,
    noise_std: float,
    seed: int,
    family: Family,
    *,
    scaled_tanh_a: float,
    scaled_tanh_b: float,
    outlier_fraction: float,
    outlier_scale: float,
) -> SyntheticTruth:
    """Seeded rows of `family`: the features x0.. appended to `features` a block of rows at a
    time, then read back a block at a time for the target y, appended to `targets` in the same
    blocks; return the truth. Memory holds a block of rows, whatever `n_samples`.

    Features have different scales and offsets so that scaling matters, and z has mean 0.3
    and std 1.5, where tanh bends. `line` ignores `n_features`: it has one column, x.
    """
    if family not in names(Family):
        raise unknown("synthetic family", family, Family)
    rng = np.random.default_rng(seed)
    # The rows are drawn a block at a time: one (N, F) draw cut by rows, the same numbers,
    # without the table whole in memory or full-size temporaries.
    width = 1 if family == "line" else max(n_features, 1)
    step = max(1, portable.PIECE_VALUES // width)  # rows per block
    sizes = [min(step, n_samples - start) for start in range(0, n_samples, step)]
    if family == "line":
        columns = ["x"]
        for size in sizes:
            features.append({"x": rng.uniform(0.0, 10.0, size)})
        weights, bias = np.array([2.0]), 3.0
    else:
        columns = [f"x{i}" for i in range(n_features)]
        scales = rng.uniform(0.5, 5.0, n_features)
        offsets = rng.uniform(-3.0, 3.0, n_features)
        for size in sizes:
            block = rng.standard_normal((size, n_features))
            block *= scales
            block += offsets
            features.append(dict(zip(columns, block.T, strict=True)))
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
    # Each row's target depends on that row alone: a block's are those of the whole table.
    noise = truth.noise_blocks(rng, sizes)
    for block, block_noise in zip(features.blocks(), noise, strict=True):
        y = truth.clean_target_of((block[name] for name in columns), len(block_noise))
        y += block_noise
        targets.append({TARGET: y})
    return truth
