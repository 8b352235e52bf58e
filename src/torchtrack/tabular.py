"""`TabularDataset`: the prepared splits as float32 tensors, the journal's Dataset subclass with
`data`, `X` and `y`, for train and evaluate (data.py, which prepare uses, needs no torch).
`TabularDataset.from_parquet` reads a split a block of rows at a time into those tensors."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from torchtrack.data import load_table
from torchtrack.errors import DataError
from torchtrack.loader import BLOCK_ROWS
from torchtrack.profiling import timed
from torchtrack.tables import numeric_blocks, parquet_columns, parquet_rows


class TabularDataset(Dataset):
    """Rows of numeric features and one target, as float32 tensors.

    `data` is the DataFrame (None from `from_parquet`), `X` is (N, F) and `y` is (N, 1).
    Accepts a DataFrame or a path to a CSV or Parquet file; the target defaults to the last column.
    """

    def __init__(self, data: pd.DataFrame | str | Path, target: str | None = None):
        where = ""  # what a column's error names first: the file, where there is one
        if not isinstance(data, pd.DataFrame):
            path, where = Path(data), f"{data}: "
            data = pd.read_parquet(path) if path.suffix == ".parquet" else load_table(path, target)[0]
        target = data.columns[-1] if target is None else target
        if target not in data.columns:
            raise DataError(f"target column {target!r} not found")
        self.data: pd.DataFrame | None = data
        self.target = str(target)
        features = [c for c in data.columns if c != target]  # original labels: may be ints, not str
        self.features = [str(c) for c in features]
        for column in [*features, target]:  # raw rows go through torchtrack.preprocessing first
            values = data[column]
            if not pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
                raise DataError(f"{where}column {column!r} is not numeric")
            bad = int((~np.isfinite(values.to_numpy(np.float64))).sum())
            if bad:
                raise DataError(f"{where}column {column!r} has {bad} missing or infinite value(s)")
        # pandas hands a frame's columns over column-major, (F, N) transposed: `from_parquet`
        # builds that layout too, since a matmul's rounding follows it.
        self.X = torch.from_numpy(data[features].to_numpy(np.float32, copy=True))  # (N, F)
        self.y = torch.from_numpy(data[[target]].to_numpy(np.float32, copy=True))  # (N, 1)

    @classmethod
    @timed("data")
    def from_parquet(
        cls, path: str | Path, target: str | None = None, block_rows: int = BLOCK_ROWS
    ) -> TabularDataset:
        """The rows of a Parquet file written without its index (as prepare writes the splits),
        read `block_rows` at a time straight into `X` and `y`: the tensors `TabularDataset(path)`
        makes, bit for bit and stride for stride, without a DataFrame (`data` is None) or a
        float64 copy of the table. The same DataError, naming the same column and the file, for
        a column that is not numbers or holds gaps or infinities (tables.numeric_blocks)."""
        path = Path(path)
        columns = parquet_columns(path)
        target = columns[-1] if target is None else target
        if target not in columns:
            raise DataError(f"target column {target!r} not found")
        features = [c for c in columns if c != target]
        rows = parquet_rows(path)
        X = torch.empty(len(features), rows).T  # (N, F), column-major as pandas gives it
        y = torch.empty(1, rows).T  # (N, 1)
        into = [*X.T.numpy(), *y.T.numpy()]  # (N,) views, in the order of [*features, target]
        for start, values in numeric_blocks(path, [*features, target], block_rows):
            for column, block in zip(into, values, strict=True):
                column[start : start + len(block)] = block
        dataset = cls.__new__(cls)
        dataset.data, dataset.target, dataset.features = None, target, features
        dataset.X, dataset.y = X, y
        return dataset

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
            return _gather_rows(self.X, index), _gather_rows(self.y, index)
        return self.X[index], self.y[index]


def _gather_rows(table: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """`table[index]` for a (N, C) table, as one contiguous (len(index), C) block, whatever the
    table's layout: the block, and so every batch cut from it, is the same bits and strides.

    `index_select` is the dedicated gather kernel (advanced indexing, `X[index]`, goes through
    PyTorch's general indexing machinery and was slower). On a column-major table, as
    `from_parquet` and pandas lay X out, a gather along the rows reads C scattered values per
    row; gathering along each column, where the rows sit side by side, and then laying the
    block out row by row was 3-5x faster at 700,000 x 16 (docs/performance.md).
    """
    if table.T.is_contiguous() and not table.is_contiguous():  # column-major
        return table.T.index_select(1, index).T.contiguous()  # (C, n) gathered, then (n, C)
    return table.index_select(0, index)
