"""`TabularDataset`: the prepared splits as float32 tensors, the journal's Dataset subclass with
`data`, `X` and `y`, for train and evaluate (data.py, which prepare uses, needs no torch).
`TabularDataset.from_parquet` reads a split a block of rows at a time into those tensors;
`ParquetRows` is a split too large to hold, read a window of row groups at a time, and
`open_split` picks between the two by the shuffle buffer's size."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from torchtrack.data import load_table
from torchtrack.errors import DataError
from torchtrack.loader import BLOCK_ROWS, gather_rows
from torchtrack.profiling import timed
from torchtrack.tables import (
    PARQUET_READ_BUFFER,
    numeric_blocks,
    open_parquet,
    parquet_columns,
    parquet_rows,
    read_row_group,
)


def open_split(path: str | Path, buffer_rows: int) -> TabularDataset | ParquetRows:
    """A prepared split to train on: held whole (`TabularDataset.from_parquet`) when it has at
    most `buffer_rows` rows, so that an epoch shuffles all of it; else read a window of about
    `buffer_rows` rows at a time (`ParquetRows`)."""
    if parquet_rows(path) <= buffer_rows:
        return TabularDataset.from_parquet(path)
    return ParquetRows(path, buffer_rows)


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
        X, y, into = _empty_split(len(features), rows)
        for start, values in numeric_blocks(path, [*features, target], block_rows):
            for column, block in zip(into, values, strict=True):
                column[start : start + len(block)] = block
        dataset = cls.__new__(cls)
        dataset.data, dataset.target, dataset.features = None, target, features
        dataset.X, dataset.y = X, y
        return dataset

    def __len__(self) -> int:
        return len(self.X)

    def blocks(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The rows in order, `BLOCK_ROWS` at a time: X (n, F) and y (n, 1) views."""
        for start in range(0, len(self), BLOCK_ROWS):
            yield self.X[start : start + BLOCK_ROWS], self.y[start : start + BLOCK_ROWS]

    def evenly_spaced(self) -> tuple[torch.Tensor, torch.Tensor]:
        """About `BLOCK_ROWS` rows at an even spacing (every row of a smaller split): X, y."""
        return self[:: max(len(self) // BLOCK_ROWS, 1)]

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
            return gather_rows(self.X, index), gather_rows(self.y, index)
        return self.X[index], self.y[index]


class ParquetRows:
    """A prepared split (a Parquet file of numbers, as prepare writes them) too large to hold:
    its rows read a window of row groups at a time (as many as `buffer_rows` rows hold, at least
    one), or a block at a time; `loader.WindowBatches` batches it. Memory holds a window or two
    (one read ahead), not the split.

    Opening it reads every row once, as `TabularDataset.from_parquet` does: a column that is not
    numbers or holds gaps or infinities is refused there, with the same DataError naming the file
    and the column, before any row is trained on; and the pass keeps `evenly_spaced`'s rows.
    """

    def __init__(self, path: str | Path, buffer_rows: int, target: str | None = None):
        self.path = Path(path)
        columns = parquet_columns(self.path)
        self.target = columns[-1] if target is None else target
        if self.target not in columns:
            raise DataError(f"target column {self.target!r} not found")
        self.features = [c for c in columns if c != self.target]
        metadata = open_parquet(self.path).metadata
        self.group_rows = [metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)]
        self.window_groups = max(1, buffer_rows // max(self.group_rows, default=1))
        self._rows = sum(self.group_rows)
        step = max(self._rows // BLOCK_ROWS, 1)  # TabularDataset.evenly_spaced's rows
        sample: list[list[np.ndarray]] = []
        for start, values in numeric_blocks(self.path, [*self.features, self.target], BLOCK_ROWS):
            # copies, not views, which would keep every block alive
            sample.append([column[(-start) % step :: step].copy() for column in values])
        self._sample = _tensors([np.concatenate(parts) for parts in zip(*sample, strict=True)])

    def __len__(self) -> int:
        return self._rows

    def describe(self) -> str:
        """One line: the split, and how it is read."""
        window = sum(sorted(self.group_rows, reverse=True)[: self.window_groups])
        return f"{self.path.name}: {self._rows:,} rows, read a window of at most {window:,} at a time"

    def evenly_spaced(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The rows `TabularDataset.evenly_spaced` takes of the same split: X, y."""
        return self._sample

    def blocks(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The rows in order, `BLOCK_ROWS` at a time: X (n, F) and y (n, 1)."""
        for _, values in numeric_blocks(self.path, [*self.features, self.target], BLOCK_ROWS):
            yield _tensors(values)

    def read_groups(self, groups: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """These row groups' rows, one after another in this order: X (n, F) and y (n, 1),
        float32 and column-major as `TabularDataset.from_parquet` lays them out."""
        rows = sum(self.group_rows[g] for g in groups)
        X, y, into = _empty_split(len(self.features), rows)
        start = 0
        with open_parquet(self.path, buffer_size=PARQUET_READ_BUFFER, pre_buffer=False) as file:
            for group in groups:
                size = self.group_rows[group]
                for column, name in zip(into, [*self.features, self.target], strict=True):
                    # a column chunk at a time: memory holds one more chunk, not one more group
                    chunk = read_row_group(file, self.path, group, [name]).column(0)
                    column[start : start + size] = chunk.to_numpy()
                start += size
        return X, y


def _empty_split(features: int, rows: int) -> tuple[torch.Tensor, torch.Tensor, list[np.ndarray]]:
    """Float32 X (rows, features) and y (rows, 1), column-major as pandas gives a frame's
    columns (a matmul's rounding follows the layout), and (rows,) NumPy views of their
    columns, features then target, to fill."""
    X, y = torch.empty(features, rows).T, torch.empty(1, rows).T
    return X, y, [*X.T.numpy(), *y.T.numpy()]


def _tensors(values: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """Columns (n,) of features, then the target, as float32 X (n, F) and y (n, 1), column-major."""
    table = torch.from_numpy(np.stack(values).astype(np.float32)).T  # (n, F + 1)
    return table[:, :-1], table[:, -1:]
