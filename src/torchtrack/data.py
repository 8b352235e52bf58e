"""Tabular regression data: synthetic generation, CSV loading, splitting, scaling, Dataset.

prepare uses everything up to `write_splits`; train and evaluate read the splits back
into a `TabularDataset`, the journal's Dataset subclass with `data`, `X` and `y`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from torchtrack.config import DataConfig
from torchtrack.errors import DataError
from torchtrack.files import read_json, write_atomic, write_json

SPLITS = ("train", "val", "test")
SYNTHETIC_TARGET = "y"


@dataclass(frozen=True)
class Scaler:
    """Per-feature standardisation fitted on the training split only."""

    features: list[str]
    target: str
    mean: list[float]
    std: list[float]

    @classmethod
    def fit(cls, frame: pd.DataFrame, target: str, enabled: bool = True) -> Scaler:
        """Fit mean/std on `frame`'s feature columns (identity when not `enabled`)."""
        features = [c for c in frame.columns if c != target]
        values = frame[features].to_numpy(dtype=np.float64)
        if enabled:
            mean = values.mean(axis=0)
            std = values.std(axis=0)
            std[std == 0] = 1.0  # a constant column stays constant instead of dividing by 0
        else:
            mean, std = np.zeros(len(features)), np.ones(len(features))
        return cls(features, target, mean.tolist(), std.tolist())

    def transform(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Scaled float32 copy of `frame`'s features, with the target (if present) last."""
        missing = [c for c in self.features if c not in frame.columns]
        if missing:
            raise DataError(f"missing feature column(s): {', '.join(missing)}")
        scaled = (frame[self.features].to_numpy(np.float64) - self.mean) / self.std
        out = pd.DataFrame(scaled.astype(np.float32), columns=self.features)
        if self.target in frame.columns:
            out[self.target] = frame[self.target].to_numpy(np.float32)
        return out

    def save(self, path: Path) -> None:
        """Write as JSON."""
        write_json(path, asdict(self))

    @classmethod
    def load(cls, path: Path) -> Scaler:
        """Read back what `save` wrote."""
        return cls(**read_json(path))


@dataclass(frozen=True)
class SyntheticTruth:
    """The rule that made a synthetic dataset: y = tanh(z) + z + noise, z = X @ w + b."""

    weights: list[float]
    bias: float
    noise_std: float

    def clean_target(self, X: np.ndarray) -> np.ndarray:
        """The noiseless target for raw features X."""
        z = X @ np.asarray(self.weights) + self.bias
        return np.tanh(z) + z


def make_synthetic(
    n_samples: int, n_features: int, noise_std: float, seed: int
) -> tuple[pd.DataFrame, SyntheticTruth]:
    """Seeded regression rows whose target the default model (linear + tanh(x)+x) can represent.

    Features have different scales and offsets so that scaling matters; the noise is
    Gaussian with `noise_std`, so the best possible test MSE is `noise_std ** 2`.
    """
    rng = np.random.default_rng(seed)
    scales = rng.uniform(0.5, 5.0, n_features)
    offsets = rng.uniform(-3.0, 3.0, n_features)
    X = rng.standard_normal((n_samples, n_features)) * scales + offsets
    direction = rng.standard_normal(n_features)
    weights = 1.5 * direction / np.linalg.norm(direction) / scales  # z has std 1.5
    bias = 0.3 - float(offsets @ weights)  # centre z near 0.3, where tanh bends
    truth = SyntheticTruth(weights.tolist(), bias, noise_std)
    y = truth.clean_target(X) + rng.normal(0.0, noise_std, n_samples)
    frame = pd.DataFrame(X, columns=[f"x{i}" for i in range(n_features)])
    frame[SYNTHETIC_TARGET] = y
    return frame, truth


def load_csv(path: str | Path, target: str | None = None) -> tuple[pd.DataFrame, str]:
    """Read a numeric CSV; return it and the target column (default: the last column)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"data.path: CSV file not found: {path}")
    try:
        frame = pd.read_csv(path)
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: the CSV file is empty") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not a readable CSV file ({' '.join(str(exc).split())})") from None
    if frame.shape[1] < 2:
        raise DataError(
            f"{path}: needs at least one feature column and a target column, found {frame.shape[1]} column(s)"
        )
    if len(frame) == 0:
        raise DataError(f"{path}: the CSV file has a header but no rows")
    target = frame.columns[-1] if target is None else target
    if target not in frame.columns:
        raise DataError(
            f"{path}: target column {target!r} not found; columns are: "
            + ", ".join(str(c) if str(c).isprintable() else repr(str(c)) for c in frame.columns)
        )
    for column in frame.columns:
        if not pd.api.types.is_numeric_dtype(frame[column]) or pd.api.types.is_bool_dtype(frame[column]):
            raise DataError(f"{path}: column {column!r} is not numeric")
        missing = int(frame[column].isna().sum())
        if missing:
            raise DataError(f"{path}: column {column!r} has {missing} missing value(s)")
        if not np.isfinite(frame[column].to_numpy(np.float64)).all():
            raise DataError(f"{path}: column {column!r} has infinite value(s)")
    return frame, str(target)


def split_indices(n_rows: int, val_fraction: float, test_fraction: float, seed: int) -> dict[str, np.ndarray]:
    """A seeded permutation cut into train/val/test index arrays (each at least one row)."""
    n_test = max(1, round(n_rows * test_fraction))
    n_val = max(1, round(n_rows * val_fraction))
    if n_rows - n_test - n_val < 1:
        raise DataError(f"{n_rows} rows are too few to split into train, val and test")
    order = np.random.default_rng(seed).permutation(n_rows)
    return {
        "test": np.sort(order[:n_test]),
        "val": np.sort(order[n_test : n_test + n_val]),
        "train": np.sort(order[n_test + n_val :]),
    }


def load_source(config: DataConfig, seed: int) -> tuple[pd.DataFrame, str, SyntheticTruth | None]:
    """The raw rows named by `config`: (frame, target column, synthetic truth or None)."""
    if config.source == "synthetic":
        frame, truth = make_synthetic(config.n_samples, config.n_features, config.noise_std, seed)
        return frame, SYNTHETIC_TARGET, truth
    frame, target = load_csv(config.path, config.target)
    return frame, target, None


def write_splits(splits: dict[str, pd.DataFrame], scaler: Scaler, out_dir: Path) -> None:
    """Write each split as Parquet, plus the scaler as JSON, each atomically."""
    for name, frame in splits.items():
        write_atomic(out_dir / f"{name}.parquet", lambda tmp, f=frame: f.to_parquet(tmp, index=False))
    scaler.save(out_dir / "scaler.json")


def read_split(prepared_dir: Path, name: str) -> pd.DataFrame:
    """One split written by `write_splits`."""
    path = Path(prepared_dir) / f"{name}.parquet"
    if not path.is_file():
        raise DataError(f"{path} not found: run the prepare stage first (dvc repro prepare)")
    return pd.read_parquet(path)


class TabularDataset(Dataset):
    """Rows of numeric features and one target, as float32 tensors.

    `data` is the DataFrame, `X` is (N, F) and `y` is (N, 1). Accepts a DataFrame or a path
    to a CSV or Parquet file; the target defaults to the last column.
    """

    def __init__(self, data: pd.DataFrame | str | Path, target: str | None = None):
        if not isinstance(data, pd.DataFrame):
            path = Path(data)
            data = pd.read_parquet(path) if path.suffix == ".parquet" else load_csv(path, target)[0]
        target = data.columns[-1] if target is None else target
        if target not in data.columns:
            raise DataError(f"target column {target!r} not found")
        self.data = data
        self.target = str(target)
        features = [c for c in data.columns if c != target]  # original labels: may be ints, not str
        self.features = [str(c) for c in features]
        self.X = torch.from_numpy(data[features].to_numpy(np.float32, copy=True))  # (N, F)
        self.y = torch.from_numpy(data[[target]].to_numpy(np.float32, copy=True))  # (N, 1)

    def __len__(self) -> int:
        return len(self.X)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.X[index], self.y[index]
