"""Tabular regression data: the sources (synthetic families, a CSV file, scikit-learn's
diabetes table), splitting and scaling.

prepare uses everything up to `write_splits`, keeping synthetic rows in files as they are
made and a CSV's as they are read (`StoredRows`): memory never holds their table whole. train
reads the splits back a block of rows at a time (`prepared_split`,
`tabular.TabularDataset.from_parquet`, the journal's Dataset subclass), and evaluate streams
them from their files (`evaluation.score_split`); `read_split` reads one whole, as a DataFrame.
Nothing here imports torch, which prepare needs for nothing.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeAlias

import numpy as np
import pandas as pd

from torchtrack import portable
from torchtrack.choices import Source, unknown
from torchtrack.config import DataConfig
from torchtrack.errors import DataError
from torchtrack.files import read_json, write_atomic, write_json
from torchtrack.paths import PREPROCESSING_FILE, TRUTH_FILE, split_file
from torchtrack.profiling import timed
from torchtrack.synthetic import TARGET as SYNTHETIC_TARGET
from torchtrack.synthetic import SyntheticTruth, make_synthetic, write_synthetic
from torchtrack.tables import ColumnFile, NotKept, TableColumns, notes_held, read_table

SPLITS = ("train", "val", "test")
# The fewest rows each split may have: val and test one, train two (its spread scales the columns).
LEAST_ROWS = {"test": 1, "val": 1, "train": 2}
# Rows per row group of a prepared split: what pyarrow's writer cuts a whole table into (1024 *
# 1024), so a split written a row group at a time is the file `to_parquet` wrote of it whole.
SPLIT_ROW_GROUP = 1 << 20
SHUFFLE_STREAM = 0x5EED_0F_7A1  # write_split's order draws from [this, seed], not split_indices' draws
SYNTHETIC_FILE = "synthetic.arrow"  # in `load_source`'s folder: the synthetic features, until prepare ends
TARGET_FILE = "synthetic-target.arrow"  # ...and their target
TABLE_FILE = "table.arrow"  # ...and a CSV table's columns


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
        columns = ((c, frame[c].to_numpy(np.float64)) for c in frame.columns)
        return cls.fit_columns(columns, target, enabled)

    @classmethod
    def fit_columns(
        cls, columns: Iterable[tuple[str, np.ndarray]], target: str, enabled: bool = True
    ) -> Scaler:
        """`fit` on (name, values) pairs, one column in memory at a time (the target's is skipped)."""
        features, mean, std = [], [], []
        for name, values in columns:
            if name != target:
                features.append(name)
                if enabled:
                    centre, spread = portable.mean_std(values)  # exactly rounded sums: any CPU
                    mean.append(centre)
                    std.append(spread or 1.0)  # a constant column stays constant
            del values  # not held while the next column is read
        if not enabled:
            return cls(features, target, [0.0] * len(features), [1.0] * len(features))
        return cls(features, target, mean, std)

    def transform(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Scaled float32 copy of `frame`'s features, with the target (if present) last."""
        missing = [c for c in self.features if c not in frame.columns]
        if missing:
            raise DataError(f"missing feature column(s): {', '.join(missing)}")
        out = {name: self.scale(name, frame[name].to_numpy(np.float64)) for name in self.features}
        if self.target in frame.columns:
            out[self.target] = frame[self.target].to_numpy(np.float32)
        return pd.DataFrame(out, index=pd.RangeIndex(len(frame)), copy=False)

    def scale(self, feature: str, values: np.ndarray) -> np.ndarray:
        """One feature's values (N,) scaled, as float32: a column at a time, so a table is never
        copied whole; each value gets the same two float64 operations as in a whole table."""
        j = self.features.index(feature)
        scaled = np.asarray(values, np.float64) - self.mean[j]  # a new array, divided in place
        scaled /= self.std[j]
        return scaled.astype(np.float32)

    def save(self, path: Path) -> None:
        """Write as JSON."""
        write_json(path, asdict(self))

    @classmethod
    def load(cls, path: Path) -> Scaler:
        """Read back what `save` wrote."""
        return cls(**read_json(path))


class StoredRows:
    """Rows of a table kept partly on disk: the columns of `frame` in memory, the others in
    `files` (`tables.ColumnFile`s of as many rows), read from them at `frame`'s row labels (the
    rows' places in the files) each time one is asked for, and not kept. `frame` may have no
    columns: then memory holds the row labels only. A column of `frame` stands for the file's
    of that name. `columns`: their order (default: the files', then `frame`'s).

    What prepare reads of a DataFrame: `columns`, `len`, `[name]` (a Series labelled as `frame`)
    and `pop(name)`; `drop_missing_target` and `split_rows` act on `frame`."""

    def __init__(
        self, files: Sequence[ColumnFile], frame: pd.DataFrame, columns: Sequence[str] | None = None
    ):
        self.files, self.frame = list(files), frame
        every = [*(name for file in self.files for name in file.names), *frame.columns]
        self.columns = list(dict.fromkeys(every) if columns is None else columns)

    def __len__(self) -> int:
        return len(self.frame)

    def __getitem__(self, name: str) -> pd.Series:
        if name in self.frame.columns:
            return self.frame[name]
        file = next((file for file in self.files if name in file.names), None)
        if file is None:
            raise KeyError(name)
        rows = self.frame.index
        if isinstance(rows, pd.RangeIndex) and rows.equals(pd.RangeIndex(file.rows)):  # every row, in order
            return pd.Series(file.column(name), rows, name=name, copy=False)  # not an int64 array of them
        return pd.Series(file.column(name, rows.to_numpy()), rows, name=name, copy=False)

    def pop(self, name: str) -> pd.Series:
        """`self[name]`, no longer among the columns."""
        values = self[name]
        self.columns.remove(name)
        if name in self.frame.columns:
            del self.frame[name]
        return values

    def with_frame(self, frame: pd.DataFrame) -> StoredRows:
        """These files' columns at the rows (and with the columns) of `frame`, in this order."""
        return StoredRows(self.files, frame, self.columns)

    @property
    def iloc(self) -> _RowSlicer:
        """`rows.iloc[start:stop]`: these rows from `start` to `stop`, as a DataFrame's."""
        return _RowSlicer(self)


@dataclass(frozen=True)
class _RowSlicer:
    rows: StoredRows

    def __getitem__(self, where: slice) -> StoredRows:
        return self.rows.with_frame(self.rows.frame.iloc[where])


Rows: TypeAlias = pd.DataFrame | StoredRows  # a table's raw rows, as prepare reads them


def load_table(path: str | Path, target: str | None = None) -> tuple[pd.DataFrame, str]:
    """Read a CSV file (any common delimiter and encoding), a Parquet file or a folder of them
    (tables.read_table); return it and the target column (default: the last column). Its values
    are checked as preprocessing reads them."""
    frame = read_table(path)
    return frame, table_target(path, list(frame.columns), len(frame), target)


def store_table(path: str | Path, folder: Path, target: str | None = None) -> tuple[StoredRows, str]:
    """`load_table`'s table of a CSV or Parquet file or a folder of them, with its checks and
    notes, kept in a `tables.ColumnFile` in `folder` (`tables.TableColumns`): memory holds a
    piece of its rows at a time, and the rows are read back a column at a time. NotKept where
    its values are of a kind the file does not hold, or its rows have labels."""
    columns = ColumnFile(Path(folder) / TABLE_FILE)
    try:
        table = TableColumns.survey(path, columns)
        target = table_target(path, table.names, table.rows, target)
        table.write()
    except BaseException:  # the file closed and removed: the table may still be read whole
        columns.clear()
        raise
    return StoredRows([columns], pd.DataFrame(index=pd.RangeIndex(columns.rows))), target


def table_target(path: str | Path, columns: list[str], rows: int, target: str | None) -> str:
    """The target column (default: the last) of a table of `columns` and `rows` read from
    `path`; DataError in one line for too few columns, no rows, or a target it does not have."""
    if len(columns) < 2:
        raise DataError(
            f"{path}: needs at least one feature column and a target column, found {len(columns)} column(s)"
            " (columns are separated by one of , ; tab |)"
        )
    if rows == 0:
        raise DataError(f"{path}: the table has a header but no rows")
    target = columns[-1] if target is None else target.strip()
    if target not in columns:
        raise DataError(
            f"{path}: target column {target!r} not found; columns are: "
            + ", ".join(str(c) if str(c).isprintable() else repr(str(c)) for c in columns)
        )
    return str(target)


def split_indices(n_rows: int, val_fraction: float, test_fraction: float, seed: int) -> dict[str, np.ndarray]:
    """A seeded permutation cut into train/val/test index arrays (each at least LEAST_ROWS),
    each in ascending order, of `position_dtype`."""
    n_test = max(LEAST_ROWS["test"], round(n_rows * test_fraction))
    n_val = max(LEAST_ROWS["val"], round(n_rows * val_fraction))
    if n_rows - n_test - n_val < LEAST_ROWS["train"]:
        raise DataError(
            f"{n_rows} rows are too few to split into train, val and test"
            f" (train needs at least {LEAST_ROWS['train']} rows)"
        )
    # `Generator.permutation(n_rows)` shuffles np.arange(n_rows) in place, its draws depending on
    # n_rows alone: shuffling int32 positions gives its order without its int64 array.
    order = np.arange(n_rows, dtype=position_dtype(n_rows))
    np.random.default_rng(seed).shuffle(order)
    splits = {"test": order[:n_test], "val": order[n_test : n_test + n_val], "train": order[n_test + n_val :]}
    for rows in splits.values():
        rows.sort()  # in place: three views of one array, not copies of it
    return splits


def position_dtype(n_rows: int) -> type:
    """The splits' row positions: int32 where the rows allow it (4 bytes a row), else int64."""
    return np.int32 if n_rows <= 1 << 31 else np.int64


def row_number(series: pd.Series, position: int) -> object:
    """The row number a user sees for `position`: the index + 1 (data rows counted from 1)."""
    label = series.index[position]
    return label + 1 if isinstance(label, (int, np.integer)) else label


def split_positions(frame: Rows, target: str, config: DataConfig, seed: int) -> dict[str, np.ndarray]:
    """The rows (positions in `frame`) of each split: by the values of `config.split_key` when
    params.yaml names a key column (key_split_indices), else a seeded permutation (split_indices)."""
    if config.split_key is None:
        return split_indices(len(frame), config.val_fraction, config.test_fraction, seed)
    key = config.split_key
    if key == target:
        raise DataError(f"data.split_key {key!r} is the target; name a column that groups the rows")
    if key not in frame.columns:
        columns = ", ".join(map(str, frame.columns))
        raise DataError(f"data.split_key names {key!r}, not a column of the table; columns are: {columns}")
    return key_split_indices(frame[key], config.val_fraction, config.test_fraction, seed)


def key_split_indices(
    keys: pd.Series, val_fraction: float, test_fraction: float, seed: int
) -> dict[str, np.ndarray]:
    """Train/val/test row positions as split_indices gives them, each row's split drawn from a
    seeded hash of its value in `keys` (`key_draws`): the rows of one key go to one split, and a
    row keeps its split when rows are added, removed or reordered. The splits' sizes are about
    the fractions (each key a draw), not exactly. DataError for a row without a key, or a split
    left with fewer than LEAST_ROWS."""
    missing = keys.isna().to_numpy()
    if missing.any():
        raise DataError(
            f"data.split_key {keys.name!r}: {int(missing.sum())} row(s) have no value, the first row"
            f" {row_number(keys, int(np.argmax(missing)))}; fill them or name another key"
        )
    dtype, cuts = position_dtype(len(keys)), [test_fraction, test_fraction + val_fraction]
    parts: dict[str, list[np.ndarray]] = {name: [] for name in LEAST_ROWS}  # test, val, train
    for start in range(0, len(keys), SPLIT_ROW_GROUP):  # temporaries of a row group's size
        split = np.searchsorted(cuts, key_draws(keys.iloc[start : start + SPLIT_ROW_GROUP], seed), "right")
        for number, rows in enumerate(parts.values()):  # 0: test, 1: val, 2: train
            rows.append((np.flatnonzero(split == number) + start).astype(dtype))
    splits = {name: np.concatenate(rows) if rows else np.empty(0, dtype) for name, rows in parts.items()}
    for name, least in LEAST_ROWS.items():
        if len(splits[name]) < least:
            raise DataError(
                f"data.split_key {keys.name!r}: its {keys.nunique()} distinct value(s) leave the {name}"
                f" split with {len(splits[name])} row(s), and it needs {least}; name a key with more"
                " distinct values, or give that split a larger fraction"
            )
    return splits


def key_draws(keys: pd.Series, seed: int) -> np.ndarray:
    """A number in [0, 1) per key value, the same for equal values whatever their order, their
    neighbours or the table's size, and on every CPU: a seeded 64-bit hash (splitmix64's mixer)
    of the value's bits. A whole number counts as the integer, so that 7 and 7.0 (a column read
    as floats once it has a gap) are one key; text is hashed as UTF-8 (pandas' SipHash)."""
    bits = _key_bits(keys)
    seeded = _mix(np.array([seed % (1 << 64)], np.uint64))[0]
    return (_mix(_mix(bits) ^ seeded) >> np.uint64(11)).astype(np.float64) * 2.0**-53


def _key_bits(keys: pd.Series) -> np.ndarray:
    """64 bits per key value (see key_draws)."""
    if pd.api.types.is_bool_dtype(keys) or pd.api.types.is_integer_dtype(keys):
        return keys.to_numpy(np.int64).view(np.uint64)
    if pd.api.types.is_float_dtype(keys):
        values = keys.to_numpy(np.float64) + 0.0  # -0.0 as 0.0
        whole = (values == np.floor(values)) & (np.abs(values) < 2.0**63)
        integers = np.where(whole, values, 0.0).astype(np.int64).view(np.uint64)
        return np.where(whole, integers, values.view(np.uint64))
    if pd.api.types.is_datetime64_any_dtype(keys):
        return keys.to_numpy("datetime64[ns]").view(np.uint64)
    texts = keys.astype(str).to_numpy(object)
    return pd.util.hash_array(texts, hash_key="torchtrack-split", categorize=True)


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: a bijection of 64-bit integers that spreads every input bit."""
    x = x + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def split_rows(frame: Rows, indices: dict[str, np.ndarray]) -> dict[str, Rows]:
    """`frame.iloc[rows]` for each split's `rows` (the table's row labels kept), taken a column
    at a time, each column removed from `frame` once taken: `frame` is left without columns.
    Where `frame` holds its columns apart (`make_synthetic`'s does), each is freed as it goes,
    so memory holds the table about once, not twice. Of `StoredRows`, the columns in memory
    are taken so, and those on disk are read when a split's are asked for."""
    if isinstance(frame, StoredRows):
        return {name: frame.with_frame(part) for name, part in split_rows(frame.frame, indices).items()}
    columns = frame.columns
    if frame.index.equals(pd.RangeIndex(len(frame))):  # the labels are the positions: share them (int32)
        labels = {name: pd.Index(rows, copy=False) for name, rows in indices.items()}
    else:  # once a split, not once a column: 8 bytes a row
        labels = {name: frame.index[rows] for name, rows in indices.items()}
    parts: dict[str, dict] = {name: {} for name in indices}
    for label in columns:
        values = frame.pop(label).array  # its dtype kept (text, dates, ...)
        for name, rows in indices.items():
            parts[name][label] = values.take(rows)
        del values
    return {name: pd.DataFrame(part, labels[name], columns, copy=False) for name, part in parts.items()}


def load_diabetes() -> tuple[pd.DataFrame, str]:
    """scikit-learn's bundled diabetes table (442 rows, 10 features, target `target`); no download."""
    from sklearn.datasets import load_diabetes as sklearn_diabetes

    frame = sklearn_diabetes(as_frame=True).frame
    return frame, "target"


def load_source(
    config: DataConfig, seed: int, folder: Path | None = None
) -> tuple[Rows, str, SyntheticTruth | None]:
    """The raw rows named by `config`: (rows, target column, synthetic truth or None). With a
    `folder`, synthetic rows go to files there as they are made, and a table's (a CSV or
    Parquet file, or a folder of them) as it is read (`StoredRows`: memory holds neither their
    features nor their target, a table's where it is float64); otherwise, and where a table's
    values are of a kind the files do not hold (`tables.NotKept`), a DataFrame."""
    if config.source == "synthetic":
        synthetic = {
            "n_samples": config.n_samples,
            "n_features": config.n_features,
            "noise_std": config.noise_std,
            "seed": seed,
            "family": config.family,
            "scaled_tanh_a": config.scaled_tanh_a,
            "scaled_tanh_b": config.scaled_tanh_b,
            "outlier_fraction": config.outlier_fraction,
            "outlier_scale": config.outlier_scale,
        }
        if folder is None:
            frame, truth = make_synthetic(**synthetic)
            return frame, SYNTHETIC_TARGET, truth
        features, targets = ColumnFile(Path(folder) / SYNTHETIC_FILE), ColumnFile(Path(folder) / TARGET_FILE)
        truth = write_synthetic(features, targets, **synthetic)
        rows = pd.DataFrame(index=pd.RangeIndex(targets.rows))  # the row labels, and no column
        return StoredRows([features, targets], rows), SYNTHETIC_TARGET, truth
    if config.source == "csv":
        if folder is not None:
            with notes_held() as notes:
                try:
                    return (*store_table(config.path, folder, config.target), None)
                except NotKept:  # held, as pandas reads it (row labels, dates, ...), which notes again
                    notes.clear()
        return (*load_table(config.path, config.target), None)
    if config.source == "diabetes":
        return (*load_diabetes(), None)
    raise unknown("data source", config.source, Source)


def write_split(
    path: Path,
    rows: Rows,
    preprocessor: Any,
    group_rows: int = SPLIT_ROW_GROUP,
    shuffle_seed: int | None = None,
) -> None:
    """`preprocessor.transform(rows)` (a `preprocessing.Preprocessor`) as the Parquet file `path`,
    made and written a row group of `group_rows` rows at a time: memory holds a row group of the
    split, not the split. The file is the one `to_parquet` writes of the whole split, byte for
    byte (each row's features depend on that row alone), but with `shuffle_seed`, where the split
    has more than one row group: then its rows are written in an order drawn from the seed
    (`shuffled_groups`), so that every row group is a random sample of the split, whatever order
    the table's rows came in. DataError, and no file, where a row's value cannot be used."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    def transformed() -> Iterator[pa.Table]:
        for start in range(0, max(len(rows), 1), group_rows):  # an empty split: its columns
            part = preprocessor.transform(rows.iloc[start : start + group_rows])
            yield pa.Table.from_pandas(part, preserve_index=False)

    groups = transformed()
    writer = None
    try:
        with contextlib.ExitStack() as stack:
            if shuffle_seed is not None and len(rows) > group_rows:  # buckets beside the file, removed after
                scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(dir=Path(path).parent)))
                groups = shuffled_groups(groups, len(rows), group_rows, shuffle_seed, scratch)
            for table in groups:
                if writer is None:
                    writer = pq.ParquetWriter(path, table.schema, compression="snappy")
                writer.write_table(table)
    except BaseException:
        if writer is not None:
            writer.close()
        Path(path).unlink(missing_ok=True)
        raise
    if writer is not None:
        writer.close()


def shuffled_groups(
    groups: Iterable[Any], n_rows: int, group_rows: int, seed: int, scratch: Path
) -> Iterator[Any]:
    """The `n_rows` rows of `groups` (pyarrow Tables, in order) in a random order drawn from
    `seed`, as Tables of `group_rows` rows (the last one short): a shuffle of a table larger than
    memory, in two passes through `scratch`. Each row goes to one of ceil(n_rows / group_rows)
    buckets (files) drawn at random, so a bucket holds about a row group's rows, a random sample
    of them all; then each bucket in turn is read and its rows permuted, and the buckets' rows cut
    into row groups. Memory holds a group and a bucket or two. The draws depend on `n_rows`,
    `group_rows` and `seed` alone, so the same rows give the same order, held or kept on disk."""
    import pyarrow as pa

    buckets = -(-n_rows // group_rows)
    rng = np.random.default_rng([SHUFFLE_STREAM, seed])
    paths = [scratch / f"bucket-{number}.arrow" for number in range(buckets)]
    writers: list[Any] = []
    try:
        for table in groups:
            bucket = rng.integers(0, buckets, len(table))
            table = table.take(np.argsort(bucket, kind="stable"))  # by bucket, in the rows' order
            if not writers:
                writers = [pa.ipc.new_file(str(path), table.schema) for path in paths]
            start = 0
            for writer, count in zip(writers, np.bincount(bucket, minlength=buckets).tolist(), strict=True):
                writer.write_table(table.slice(start, count))
                start += count
            del table, bucket
    finally:
        for writer in writers:
            writer.close()
    carried = None  # rows short of a whole group, put before the next bucket's
    for path in paths:
        with pa.OSFile(str(path)) as file:
            table = pa.ipc.open_file(file).read_all()
        path.unlink()
        table = table.take(rng.permutation(len(table)))
        if carried is not None:
            table = pa.concat_tables([carried, table])
        whole = len(table) // group_rows * group_rows
        for start in range(0, whole, group_rows):
            yield table.slice(start, group_rows).combine_chunks()
        carried = table.slice(whole).combine_chunks()
        del table
    if carried is not None and len(carried):
        yield carried


def write_splits(
    splits: dict[str, pd.DataFrame | Path],
    preprocessor: Any,
    out_dir: Path,
    truth: SyntheticTruth | None = None,
) -> None:
    """Put each split in place as Parquet: a DataFrame written, or a file `write_split` made
    elsewhere moved (renamed, or copied where `out_dir` is on another file system); then the
    preprocessing (a `preprocessing.Preprocessor`, or a bare Scaler) as JSON and the synthetic
    truth if any; each atomically."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, split in splits.items():
        if isinstance(split, pd.DataFrame):
            write_atomic(split_file(out_dir, name), lambda tmp, f=split: f.to_parquet(tmp, index=False))
            continue
        try:
            os.replace(split, split_file(out_dir, name))
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
            # `out_dir` links to another file system: copied beside it first, then renamed.
            write_atomic(split_file(out_dir, name), lambda tmp, f=split: shutil.copyfile(f, tmp))
    preprocessor.save(out_dir / PREPROCESSING_FILE)
    if truth is not None:
        truth.save(out_dir / TRUTH_FILE)
    else:  # splits from a CSV must not be read with an earlier synthetic run's truth
        (out_dir / TRUTH_FILE).unlink(missing_ok=True)


def read_truth(prepared_dir: Path) -> SyntheticTruth | None:
    """The rule that made the prepared splits, or None when they are not synthetic."""
    path = Path(prepared_dir) / TRUTH_FILE
    return SyntheticTruth.load(path) if path.is_file() else None


def prepared_split(prepared_dir: Path, name: str) -> Path:
    """The file of one split written by `write_splits`; DataError when prepare has not made it."""
    path = split_file(prepared_dir, name)
    if not path.is_file():
        raise DataError(f"{path} not found: run the prepare stage first (dvc repro prepare)")
    return path


@timed("data")
def read_split(prepared_dir: Path, name: str) -> pd.DataFrame:
    """One split written by `write_splits`."""
    return pd.read_parquet(prepared_split(prepared_dir, name))
