"""From a user's raw rows to the model's float features, and from its outputs back to the
target's units: column roles, gap filling, one-hot encoding, scaling. Fitted on the train
split only, saved as JSON (`Preprocessor.save`), and applied alike by prepare, evaluate,
`torchtrack predict` and the model logged to MLflow. docs/your-own-data.md says what
happens to each kind of column and gap.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from torchtrack import portable
from torchtrack.config import DataConfig
from torchtrack.data import Rows, Scaler, StoredRows, row_number
from torchtrack.errors import DataError
from torchtrack.files import read_json, write_json

ROLES = ("numeric", "categorical", "date", "dropped")  # what a raw column becomes
IDENTIFIER_SHARE = 0.5  # a text column with more distinct values than this share of rows names rows
IDENTIFIER_NAME = re.compile(r"(^|[\s_.-])(id|index)$|^unnamed: \d+$", re.IGNORECASE)  # "id", "user_id", ...
DATE_PARTS = ("year", "month", "dayofyear")  # the numbers a date becomes
OTHER = "(other)"  # the category of rarer train values and of values never seen in training
MISSING = "(missing)"  # the indicator column of a column whose train values had gaps


@dataclass(frozen=True)
class Column:
    """One raw column: its role and why, what fills its gaps, and (categorical) its categories."""

    name: str
    role: str  # one of ROLES
    reason: str  # why it has that role, as the user reads it
    kind: str = "number"  # its raw values: number | boolean | text (the served model's signature)
    fill: list[float] = field(default_factory=list)  # numeric: [median]; date: a median per part
    categories: list[str] = field(default_factory=list)  # categorical: kept ones, the most frequent first
    other: bool = False  # categorical: the train split had rarer categories, counted as OTHER
    indicator: bool = False  # the train split had gaps: a `name=(missing)` feature marks them

    @property
    def features(self) -> list[str]:
        """The feature columns this column becomes."""
        if self.role == "numeric":
            names = [self.name]
        elif self.role == "categorical":
            names = [f"{self.name}={c}" for c in self.categories] + ([f"{self.name}={OTHER}"] * self.other)
        elif self.role == "date":
            names = [f"{self.name}.{part}" for part in DATE_PARTS]
        else:
            return []
        return names + [f"{self.name}={MISSING}"] * self.indicator


def scales_target(config: DataConfig) -> bool:
    """Whether data.scale_target standardises the target: `auto` does for csv and diabetes, not
    for synthetic data, whose rule (tanh(z) + z) is written on the target's own scale so that
    the default model contains it exactly; an affine map of the target would break that."""
    if config.scale_target == "auto":
        return config.source != "synthetic"
    return config.scale_target == "standardize"


def drop_missing_target(frame: Rows, target: str) -> tuple[Rows, int]:
    """`frame` without the rows whose target is missing, the target as numbers; and how many
    rows went. DataError when the target is all missing, or holds a value that is not a number."""
    if isinstance(frame, StoredRows) and target in frame.frame.columns:  # the files follow its rows
        kept, dropped = drop_missing_target(frame.frame, target)
        return frame.with_frame(kept), dropped
    stored = frame[target]
    values = _numbers(stored, f"target column {target!r}")
    missing = np.isnan(values)
    if missing.all():
        raise DataError(f"target column {target!r} has no values")
    if isinstance(frame, StoredRows):  # a float64 target is read from its file each time
        if stored.dtype != np.float64:  # other values are held as the numbers they read as
            frame = frame.with_frame(frame.frame.assign(**{target: values}))
        kept = frame.with_frame(frame.frame[~missing]) if missing.any() else frame
        return kept, int(missing.sum())
    frame = frame.assign(**{target: values})
    if not missing.any():  # no row to leave out: not a copy of the whole table
        return frame, 0
    return frame[~missing], int(missing.sum())


@dataclass(frozen=True)
class Preprocessor:
    """Raw rows -> scaled float features (and target), fitted on the train split."""

    target: str
    columns: list[Column]
    scaler: Scaler  # the encoded features' mean and std
    target_mean: float = 0.0
    target_std: float = 1.0

    @classmethod
    def fit(cls, frame: Rows, target: str, config: DataConfig) -> Preprocessor:
        """Infer each column's role from the train split `frame` (unless params.yaml names it),
        and fit the gap fillers, categories, feature scaling and target scaling on it."""
        raw = [c for c in frame.columns if c != target]
        for role in ("numeric", "categorical", "dates", "drop"):
            absent = [c for c in getattr(config, role) if c not in raw]
            if absent:
                raise DataError(
                    f"data.{role} names {', '.join(map(repr, absent))}, not a feature column of the table; "
                    f"columns are: {', '.join(raw)}"
                )
        for role in ("numeric", "categorical", "dates"):
            if config.split_key in getattr(config, role):
                raise DataError(
                    f"data.split_key {config.split_key!r} is named in data.{role} too: the rows of a key"
                    " all go to one split, so the key says nothing of another split's rows; leave it out"
                    f" of data.{role}"
                )
        columns = [_fit_column(frame[name], name, config) for name in raw]
        if not any(c.role != "dropped" for c in columns):
            why = "; ".join(f"{c.name}: {c.reason}" for c in columns) or "the table has only the target"
            raise DataError(f"no usable feature column left ({why})")
        features = [f for c in columns for f in c.features]
        repeated = sorted({f for f in features if features.count(f) > 1})
        if repeated:
            raise DataError(f"two columns make the same feature name(s): {', '.join(repeated)}; rename one")
        scaler = Scaler.fit_columns(_encoded(columns, frame), target, enabled=config.scale)
        if scales_target(config):
            centre, spread = portable.mean_std(frame[target].to_numpy(np.float64))
            return cls(target, columns, scaler, centre, spread or 1.0)
        return cls(target, columns, scaler)

    @property
    def features(self) -> list[str]:
        """The model's input columns, in order."""
        return self.scaler.features

    @property
    def inputs(self) -> list[Column]:
        """The raw columns the model reads (all but the dropped ones)."""
        return [c for c in self.columns if c.role != "dropped"]

    def transform(self, frame: Rows, consume: bool = False) -> pd.DataFrame:
        """Scaled float32 features of raw rows, with the scaled target last when `frame` has it.
        A column at a time: the float64 features are never all in memory at once. With
        `consume`, each raw column read is removed from `frame`, so that (where `frame` holds
        its columns apart, as `data.split_rows` leaves them) it is freed as its features are made.

        DataError names the column, and the row (`frame`'s index + 1), of a value that cannot
        be used."""
        missing = [c.name for c in self.inputs if c.name not in frame.columns]
        if missing:
            raise DataError(f"missing column(s): {', '.join(missing)}")
        rows = len(frame)
        features = _encoded(self.inputs, frame, consume)
        out = {name: self.scaler.scale(name, values) for name, values in features}
        if self.target in frame.columns:
            target = frame.pop(self.target) if consume else frame[self.target]
            y = _numbers(target, f"target column {self.target!r}")
            out[self.target] = ((y - self.target_mean) / self.target_std).astype(np.float32)
        return pd.DataFrame(out, index=pd.RangeIndex(rows), copy=False)

    def unseen_counts(self, frame: pd.DataFrame) -> dict[str, pd.Series]:
        """Per categorical column of `frame`, the rows of each value that is none of the kept
        train categories (so counted as OTHER), value -> rows; columns without any left out."""
        unseen = {}
        for c in self.inputs:
            if c.role != "categorical" or c.name not in frame.columns:
                continue
            texts = frame[c.name].map(_category_text).dropna()
            counts = texts[~texts.isin(c.categories)].value_counts()
            if len(counts):
                unseen[c.name] = counts
        return unseen

    def target_values(self, scaled: np.ndarray) -> np.ndarray:
        """Model outputs (or scaled targets) in the target's own units."""
        return np.asarray(scaled, np.float64) * self.target_std + self.target_mean

    def roles(self) -> dict[str, dict[str, object]]:
        """What was done to each column, as a user reads it (prepare's columns.json)."""
        shown = {}
        for c in self.columns:
            entry: dict[str, object] = {"role": c.role, "why": c.reason}
            if c.role != "dropped":
                entry["features"] = c.features
            if c.indicator:
                filler = f"the most frequent, {c.categories[0]!r}" if c.categories else "the median"
                entry["gaps"] = f"filled with {filler}, marked in {c.name}={MISSING}"
            shown[c.name] = entry
        shown[self.target] = {"role": "target", "why": "data.target", "standardized": self.target_std != 1.0}
        return shown

    def example(self) -> pd.DataFrame:
        """Two raw rows of the columns the model reads, the second all gaps: MLflow's input example."""
        row: dict[str, object] = {}
        for c in self.inputs:
            if c.role == "categorical":
                first = c.categories[0]
                row[c.name] = (
                    float(first) if c.kind == "number" else first == "True" if c.kind == "boolean" else first
                )
            elif c.role == "date":
                year, _, day = c.fill
                date = pd.Timestamp(int(year), 1, 1) + pd.Timedelta(days=int(day) - 1)
                row[c.name] = date.date().isoformat()
            else:
                row[c.name] = c.fill[0]
        return pd.DataFrame([row, dict.fromkeys(row)])

    def to_dict(self) -> dict:
        """Plain JSON values (what the checkpoint and preprocessing.json hold)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> Preprocessor:
        """Rebuild from `to_dict`'s values."""
        values = dict(values)
        values["columns"] = [Column(**c) for c in values["columns"]]
        values["scaler"] = Scaler(**values["scaler"])
        return cls(**values)

    def save(self, path: Path) -> None:
        """Write as JSON."""
        write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: Path) -> Preprocessor:
        """Read back what `save` wrote."""
        return cls.from_dict(read_json(path))


def _fit_column(series: pd.Series, name: str, config: DataConfig) -> Column:
    role, reason = _infer_role(series, name, config)
    if role == "dropped":
        return Column(name, role, reason, kind="text")
    if role == "numeric":
        values = _numbers(series, f"column {name!r}")
        median = portable.median(values)  # of the values that are not gaps, without a copy of them
        return Column(name, role, reason, fill=[median], indicator=bool(np.isnan(values).any()))
    if role == "date":
        parts = _date_parts(series, name)
        gaps = np.isnan(parts[:, 0])
        fill = [float(np.median(parts[~gaps, i])) for i in range(len(DATE_PARTS))]
        return Column(name, role, reason, kind="text", fill=fill, indicator=bool(gaps.any()))
    texts = series.map(_category_text)
    counts = texts.value_counts(dropna=True)  # most frequent first
    counts = counts.iloc[np.lexsort((counts.index.to_numpy(str), -counts.to_numpy()))]  # ties by name
    values = series.dropna()
    kind = (
        "boolean"
        if all(isinstance(v, (bool, np.bool_)) for v in values)
        else "number"
        if pd.api.types.is_numeric_dtype(values)
        else "text"
    )
    return Column(
        name,
        role,
        reason,
        kind=kind,
        categories=[str(c) for c in counts.index[: config.max_categories]],
        other=len(counts) > config.max_categories,
        indicator=bool(texts.isna().any()),
    )


def _infer_role(series: pd.Series, name: str, config: DataConfig) -> tuple[str, str]:
    """(role, why) for one train-split column."""
    if name in config.drop:
        return "dropped", "data.drop"
    if name == config.split_key:
        return "dropped", "data.split_key: the rows are split by it"
    values = series.dropna() if series.hasnans else series  # not a copy of a column without gaps
    if len(values) == 0:  # nothing to fill its gaps with, whatever params.yaml calls it
        return "dropped", "no values in the train split"
    for key, role in (("categorical", "categorical"), ("numeric", "numeric")):
        if name in getattr(config, key):
            return role, f"data.{key}"
    if name in config.dates:
        return _date_role(config, "data.dates")
    if pd.api.types.is_bool_dtype(values) or all(isinstance(v, (bool, np.bool_)) for v in values):
        return "categorical", "true/false values"
    if pd.api.types.is_numeric_dtype(values):
        if IDENTIFIER_NAME.search(name):  # the values are read only for a name like an id
            numbers = values.to_numpy(np.float64)
            whole = np.isfinite(numbers).all() and (np.mod(numbers, 1) == 0).all()
            if whole and values.is_unique:
                return "dropped", "an identifier: a name like an id, one distinct whole number per row"
        return "numeric", "numbers"
    if pd.api.types.is_datetime64_any_dtype(values):
        return _date_role(config, "dates")
    texts = values.map(_category_text).dropna()
    if len(texts) == 0:  # only blank cells (spaces, a form feed): gaps, as an empty cell is
        return "dropped", "no values in the train split"
    numbers = pd.to_numeric(texts, errors="coerce")
    if numbers.notna().all():
        return "numeric", "numbers"
    if numbers.notna().mean() >= 0.9:  # a numeric column with a few values that are not numbers
        _numbers(series, f"column {name!r}")  # raises, naming the first such value's row
    if texts.str.contains(r"\d").all() and _parse_dates(texts).notna().all():
        return _date_role(config, "dates")
    distinct = texts.nunique()
    if distinct > config.max_categories and distinct > IDENTIFIER_SHARE * len(texts):
        return "dropped", f"an identifier or free text: {distinct} distinct values in {len(texts)} rows"
    return "categorical", f"text with {distinct} distinct value(s)"


def _date_role(config: DataConfig, why: str) -> tuple[str, str]:
    if config.date_features == "drop":
        return "dropped", f"{why} (data.date_features: drop)"
    return "date", why


def _encoded(columns: list[Column], frame: Rows, consume: bool = False) -> Iterator[tuple[str, np.ndarray]]:
    """The float64 features of `columns` for the rows of `frame`, gaps filled, as (name in
    `features`, values (N,)) pairs, one column's at a time; with `consume`, each raw column is
    removed from `frame` once read (`Preprocessor.transform`)."""
    for c in columns:
        if c.role != "dropped":  # a column's arrays go with `_features_of`, before the next is read
            yield from _features_of(c, frame.pop(c.name) if consume else frame[c.name])


def _features_of(c: Column, series: pd.Series) -> Iterator[tuple[str, np.ndarray]]:
    """`_encoded`'s pairs of one column, its raw values `series`."""
    if c.role == "numeric":
        values = _numbers(series, f"column {c.name!r}")
        gaps = np.isnan(values)
        yield c.name, np.where(gaps, c.fill[0], values) if gaps.any() else values  # read, not changed
    elif c.role == "date":
        parts = _date_parts(series, c.name)
        gaps = np.isnan(parts[:, 0])
        for i, part in enumerate(DATE_PARTS):
            yield f"{c.name}.{part}", np.where(gaps, c.fill[i], parts[:, i])
    else:
        texts = series.map(_category_text)
        gaps = texts.isna().to_numpy()
        texts = texts.where(~gaps, c.categories[0]).to_numpy(object)
        known = np.isin(texts, c.categories)
        for category in c.categories:
            yield f"{c.name}={category}", (texts == category).astype(np.float64)
        if c.other:
            yield f"{c.name}={OTHER}", (~known).astype(np.float64)
    if c.indicator:
        yield f"{c.name}={MISSING}", gaps.astype(np.float64)


def _numbers(series: pd.Series, what: str) -> np.ndarray:
    """A column as float64, gaps as NaN; DataError naming the row of a value that is not a
    finite number."""
    if pd.api.types.is_bool_dtype(series):
        raise DataError(f"{what} holds true/false values, not numbers")
    if pd.api.types.is_numeric_dtype(series):
        values = series.to_numpy(np.float64, na_value=np.nan)
    else:
        text = series.map(lambda v: v.strip() if isinstance(v, str) else v).replace("", np.nan)
        values = pd.to_numeric(text, errors="coerce").to_numpy(np.float64, na_value=np.nan)
        bad = np.flatnonzero(np.isnan(values) & text.notna().to_numpy())
        if len(bad):
            where = f"{what}, row {row_number(series, bad[0])}"
            raise DataError(f"{where}: {_shown(series, bad[0])} is not a number")
    infinite = np.flatnonzero(np.isinf(values))
    if len(infinite):
        where = f"{what}, row {row_number(series, infinite[0])}"
        raise DataError(f"{where}: {_shown(series, infinite[0])} is infinite")
    return values


def _shown(series: pd.Series, position: int) -> str:
    """The value at `position` as Python writes it: 'x', inf (not np.float64(inf))."""
    value = series.iloc[position]
    return repr(value.item() if isinstance(value, np.generic) else value)


def _parse_dates(texts: pd.Series) -> pd.Series:
    """Dates of text values, NaT where one is not a date: ISO 8601 first, then any common format."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pandas warns of each format it falls back on
        parsed = pd.to_datetime(texts, format="ISO8601", errors="coerce", utc=True)
        if parsed.isna().any():
            parsed = pd.to_datetime(texts, format="mixed", errors="coerce", utc=True)
    return parsed


def _date_parts(series: pd.Series, name: str) -> np.ndarray:
    """(N, 3) year, month, day of year of a date column, NaN where it has a gap; DataError naming
    the row of a value that is not a date."""
    if pd.api.types.is_datetime64_any_dtype(series):
        dates = pd.to_datetime(series, utc=True)
    else:
        texts = series.map(_category_text)
        dates = _parse_dates(texts)
        bad = np.flatnonzero(dates.isna().to_numpy() & texts.notna().to_numpy())
        if len(bad):
            where = f"column {name!r}, row {row_number(series, bad[0])}"
            raise DataError(f"{where}: {_shown(series, bad[0])} is not a date")
    parts = np.column_stack([dates.dt.year, dates.dt.month, dates.dt.dayofyear]).astype(np.float64)
    return parts  # NaT gives NaN in every part


def _category_text(value: object) -> str | None:
    """A raw value as the category it names: 1, 1.0 and " 1" are one category, a gap is None."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return str(int(value)) if float(value).is_integer() else repr(float(value))
    text = str(value).strip()
    return text or None
