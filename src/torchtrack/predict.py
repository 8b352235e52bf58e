"""Predictions for new rows from the trained checkpoint: `torchtrack predict --input X --output Y`.

Columns are matched by name (header names trimmed of spaces) against the columns the model
reads; each goes through the preprocessing fitted on the train split, saved in the
checkpoint (gaps filled, categories encoded, an unseen category counted as other, features
scaled), then through the model in eval mode under no_grad, and the output is mapped back
to the target's units. The output keeps every input column (an id, say) as the file holds
it (a CSV's `NA` stays `NA`, `50` stays `50`) and adds `prediction`, replacing a `prediction`
column already there. Categories the model was not trained on are named in one line.
`--model` may also name a model logged to MLflow (`models:/torchtrack@champion`,
`runs:/<run id>/model`), which holds its preprocessing itself.

A Parquet input is read, predicted and written a block of rows at a time, so memory does not
grow with the file; a CSV input is read whole (its delimiter and encoding are judged on its
text, tables.read_csv) and written the same way.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from torchtrack.errors import DataError, InputError
from torchtrack.evaluation import predict
from torchtrack.files import write_atomic
from torchtrack.loader import BLOCK_ROWS
from torchtrack.models import load_checkpoint
from torchtrack.preprocessing import OTHER, Preprocessor
from torchtrack.tables import csv_blocks, note, parquet_blocks

PREDICTION_COLUMN = "prediction"
MODEL_URI_SCHEMES = ("models:/", "runs:/")  # --model values that name a model in MLflow
UNSEEN_SHOWN = 3  # unseen categories named per column; the rest are counted


def row_blocks(path: str | Path, rows: int = BLOCK_ROWS) -> Iterator[tuple[pd.DataFrame, pd.DataFrame]]:
    """A CSV or Parquet (by suffix) file of rows to predict, header names trimmed of spaces, in
    blocks of `rows` rows, each twice: as values for the model (gaps, numbers), and as written,
    for the output: a CSV's cells as their text (tables.csv_blocks), a Parquet file's columns in
    their own types (a whole number with gaps stays whole). Each block is indexed by its rows'
    place in the file (errors name them so). InputError if it cannot be read."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: input file not found")
    if path.suffix != ".parquet":
        yield from csv_blocks(path, rows, what="input file")
        return
    start = 0
    try:
        for table in parquet_blocks(path, rows):
            index = pd.RangeIndex(start, start + table.num_rows)
            frame = table.to_pandas().set_axis(index)
            written = table.to_pandas(types_mapper=pd.ArrowDtype).set_axis(index)
            trimmed = {c: str(c).strip() for c in frame.columns}
            yield frame.rename(columns=trimmed), written.rename(columns=trimmed)
            start += table.num_rows
    except DataError:  # a file damaged or cut short, named with the rows that cannot be read
        raise
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: not a readable parquet file ({' '.join(str(exc).split())})") from None


def check_columns(frame: pd.DataFrame, columns: list[str]) -> None:
    """InputError unless `frame` has every column in `columns`; other columns are let be."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise InputError(f"missing column(s): {', '.join(missing)}. The model reads: {', '.join(columns)}")


class Predictor:
    """The trained model with the preprocessing fitted on the train split; callable on raw rows."""

    def __init__(self, model: torch.nn.Module, preprocessor: Preprocessor):
        self.model = model
        self.preprocessor = preprocessor

    @classmethod
    def load(cls, path: str | Path) -> Predictor:
        """Rebuild from a checkpoint written by the train stage (models/model.pt)."""
        model, payload = load_checkpoint(Path(path))
        if "preprocessing" not in payload:
            raise DataError(f"{path}: an older model, without its preprocessing; train it again")
        return cls(model, Preprocessor.from_dict(payload["preprocessing"]))

    @property
    def columns(self) -> list[str]:
        """The raw columns the model reads, in the training table's order."""
        return [c.name for c in self.preprocessor.inputs]

    def __call__(self, frame: pd.DataFrame) -> np.ndarray:
        """One prediction per row of `frame` (raw values, columns matched by name), in the target's units."""
        check_columns(frame, self.columns)
        if len(frame) == 0:
            return np.empty(0)
        features = self.preprocessor.transform(frame[self.columns])  # (N, F) float32, in training order
        outputs = predict(self.model, torch.from_numpy(features.to_numpy(copy=True)))
        return self.preprocessor.target_values(outputs)


class LoggedPredictor:
    """A model logged to MLflow by train (served_model.RawRowsModel), callable on raw rows like
    Predictor; the columns it reads come from its signature."""

    def __init__(self, model: object, columns: dict[str, str]):
        self.model = model
        self.columns = columns  # name -> the signature's type

    @classmethod
    def load(cls, uri: str) -> LoggedPredictor:
        """Load `uri` (models:/..., runs:/...) with mlflow.pyfunc from the project's store."""
        import mlflow.pyfunc
        from mlflow.exceptions import MlflowException

        from torchtrack.environment import PREDICTION_DEVICE, environment
        from torchtrack.tracking.backend.model_logging import fluent_tracking_uri
        from torchtrack.tracking.location import tracking_uri

        try:
            with fluent_tracking_uri(tracking_uri()), environment(PREDICTION_DEVICE):
                model = mlflow.pyfunc.load_model(uri)
        except MlflowException as exc:
            raise DataError(f"{uri}: cannot load the model ({exc.message.splitlines()[0]})") from None
        schema = model.metadata.get_input_schema()
        if schema is None or not schema.has_input_names():
            raise DataError(f"{uri}: the logged model names no input columns; train it again (dvc repro)")
        return cls(model, {spec.name: str(spec.type) for spec in schema.inputs})

    @property
    def preprocessor(self) -> Preprocessor:
        """The preprocessing the logged model applies (served_model.RawRowsModel's)."""
        return self.model.unwrap_python_model().predictor.preprocessor

    def __call__(self, frame: pd.DataFrame) -> np.ndarray:
        """One prediction per row of `frame` (raw values, columns matched by name)."""
        from mlflow.exceptions import MlflowException

        check_columns(frame, list(self.columns))
        if len(frame) == 0:
            return np.empty(0)
        rows = frame[list(self.columns)].copy()
        for name, kind in self.columns.items():  # MLflow takes no whole numbers for a double column
            if kind == "double" and pd.api.types.is_integer_dtype(rows[name]):
                rows[name] = rows[name].astype(np.float64)
        try:
            return np.asarray(self.model.predict(rows), dtype=np.float64).reshape(-1)
        except MlflowException as exc:
            raise DataError(" ".join(exc.message.split())) from None


def note_unseen(unseen: dict[str, pd.Series], path: str | Path) -> None:
    """One line on stderr naming, per column, the categories the model was not trained on
    (`Preprocessor.unseen_counts`: value -> rows), the most frequent first (a few, then a
    count); they are predicted as training counts them, as OTHER."""
    if not unseen:
        return
    shown = []
    for name, counts in unseen.items():
        values = [str(v) for v in counts.index[np.lexsort((counts.index.to_numpy(str), -counts.to_numpy()))]]
        listed = ", ".join(map(repr, values[:UNSEEN_SHOWN]))
        more = len(values) - UNSEEN_SHOWN
        shown.append(f"{name}: {listed}" + (f" and {more} more" if more > 0 else ""))
    note(f"{path}: categories the model was not trained on, counted as {OTHER}: {'; '.join(shown)}")


def load_predictor(model: str | Path) -> Predictor | LoggedPredictor:
    """A checkpoint path, or a logged model's URI (models:/..., runs:/...)."""
    if str(model).startswith(MODEL_URI_SCHEMES):
        return LoggedPredictor.load(str(model))
    return Predictor.load(model)


def predict_file(
    model_path: str | Path, input_path: str | Path, output_path: str | Path, block_rows: int = BLOCK_ROWS
) -> int:
    """Predict every row of `input_path` into `output_path` (CSV, or Parquet by suffix), a
    Parquet input `block_rows` rows at a time (`row_blocks`); return the rows."""
    predictor = load_predictor(model_path)
    output_path = Path(output_path)
    unseen: dict[str, pd.Series] = {}  # column -> unseen value -> rows, over every block
    seen = {"rows": 0, "replaced": False}

    def predicted_blocks() -> Iterator[pd.DataFrame]:
        for frame, written in row_blocks(input_path, block_rows):
            out = written.assign(**{PREDICTION_COLUMN: predictor(frame)})
            for name, counts in predictor.preprocessor.unseen_counts(frame).items():
                unseen[name] = unseen[name].add(counts, fill_value=0) if name in unseen else counts
            seen["rows"] += len(frame)
            seen["replaced"] = PREDICTION_COLUMN in frame.columns
            yield out

    write = write_parquet_blocks if output_path.suffix == ".parquet" else write_csv_blocks
    write_atomic(output_path, lambda tmp: write(tmp, predicted_blocks()))
    note_unseen(unseen, input_path)
    if seen["replaced"]:
        note(f"{input_path}: its {PREDICTION_COLUMN!r} column is replaced by this model's predictions")
    return seen["rows"]


def write_csv_blocks(path: Path, blocks: Iterator[pd.DataFrame]) -> None:
    """The blocks one after the other as one CSV file, the header once: what `to_csv` writes
    for them joined."""
    with open(path, "w", encoding="utf-8", newline="") as file:
        for number, block in enumerate(blocks):
            block.to_csv(file, index=False, header=number == 0)


def write_parquet_blocks(path: Path, blocks: Iterator[pd.DataFrame]) -> None:
    """The blocks as one Parquet file, a row group each, with the schema `to_parquet` gives
    the first: the table `to_parquet` writes for them joined."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    writer = None
    try:
        for block in blocks:
            table = pa.Table.from_pandas(block, preserve_index=False)
            if writer is None:
                writer = pq.ParquetWriter(path, table.schema)
            writer.write_table(table)
    finally:
        if writer is not None:
            writer.close()
