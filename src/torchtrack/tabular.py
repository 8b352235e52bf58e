"""`TabularDataset`: the prepared splits as float32 tensors, the journal's Dataset subclass with
`data`, `X` and `y`, for train and evaluate (data.py, which prepare uses, needs no torch)."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from torchtrack.data import load_csv
from torchtrack.errors import DataError


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
        for column in [*features, target]:  # raw rows go through torchtrack.preprocessing first
            values = data[column]
            if not pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
                raise DataError(f"column {column!r} is not numeric")
            bad = int((~np.isfinite(values.to_numpy(np.float64))).sum())
            if bad:
                raise DataError(f"column {column!r} has {bad} missing or infinite value(s)")
        self.X = torch.from_numpy(data[features].to_numpy(np.float32, copy=True))  # (N, F)
        self.y = torch.from_numpy(data[[target]].to_numpy(np.float32, copy=True))  # (N, 1)

    def __len__(self) -> int:
        return len(self.X)

    @property
    def device(self) -> torch.device:
        """Where `X` and `y` live: the CPU unless `to` moved them."""
        return self.X.device

    def to(self, device: torch.device) -> TabularDataset:
        """This dataset with `X` and `y` on `device` (itself when they are there already).

        On a GPU, training on a resident copy gathers each batch there, instead of copying
        every batch from host memory; a tabular split of a million rows is tens of MB.
        """
        if self.X.device == device:
            return self
        moved = copy.copy(self)
        moved.X, moved.y = self.X.to(device), self.y.to(device)
        return moved

    def __getitem__(self, index: int | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One row, or a whole batch in one indexing operation when `index` is a tensor of
        row indices (what `loader.BatchIndexSampler` yields)."""
        if isinstance(index, torch.Tensor) and index.dim() == 1 and index.dtype in (torch.int64, torch.int32):
            # `index_select` is the dedicated row-gather kernel; advanced indexing, `X[index]`,
            # goes through PyTorch's general indexing machinery and was slower on this data.
            return self.X.index_select(0, index), self.y.index_select(0, index)
        return self.X[index], self.y[index]
