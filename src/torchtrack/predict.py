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
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from torchtrack.errors import DataError, InputError
from torchtrack.evaluation import predict
from torchtrack.files import write_atomic
from torchtrack.models import load_checkpoint
from torchtrack.preprocessing import OTHER, Preprocessor
from torchtrack.tables import note, read_csv

PREDICTION_COLUMN = "prediction"
MODEL_URI_SCHEMES = ("models:/", "runs:/")  # --model values that name a model in MLflow
UNSEEN_SHOWN = 3  # unseen categories named per column; the rest are counted


def read_rows(path: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A CSV or Parquet (by suffix) file of rows to predict, header names trimmed of spaces,
    twice: as values for the model (gaps, numbers), and as written, for the output: a CSV's
    cells as their text, a Parquet file's columns in their own types (a whole number with gaps
    stays whole). InputError if it cannot be read."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: input file not found")
    if path.suffix != ".parquet":
        return read_csv(path, what="input file"), read_csv(path, what="input file", as_written=True)
    try:
        frame = pd.read_parquet(path)
        written = pd.read_parquet(path, dtype_backend="pyarrow")
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: not a readable parquet file ({' '.join(str(exc).split())})") from None
    trimmed = {c: str(c).strip() for c in frame.columns}
    return frame.rename(columns=trimmed), written.rename(columns=trimmed)


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


def note_unseen(preprocessor: Preprocessor, frame: pd.DataFrame, path: str | Path) -> None:
    """One line on stderr naming, per column, the categories of `frame` the model was not
    trained on (a few, then a count); they are predicted as training counts them, as OTHER."""
    unseen = preprocessor.unseen_categories(frame)
    if not unseen:
        return
    shown = []
    for name, values in unseen.items():
        listed = ", ".join(map(repr, values[:UNSEEN_SHOWN]))
        more = len(values) - UNSEEN_SHOWN
        shown.append(f"{name}: {listed}" + (f" and {more} more" if more > 0 else ""))
    note(f"{path}: categories the model was not trained on, counted as {OTHER}: {'; '.join(shown)}")


def load_predictor(model: str | Path) -> Predictor | LoggedPredictor:
    """A checkpoint path, or a logged model's URI (models:/..., runs:/...)."""
    if str(model).startswith(MODEL_URI_SCHEMES):
        return LoggedPredictor.load(str(model))
    return Predictor.load(model)


def predict_file(model_path: str | Path, input_path: str | Path, output_path: str | Path) -> int:
    """Predict every row of `input_path` into `output_path` (CSV, or Parquet by suffix); return rows."""
    predictor = load_predictor(model_path)
    frame, written = read_rows(input_path)
    predictions = predictor(frame)
    note_unseen(predictor.preprocessor, frame, input_path)
    if PREDICTION_COLUMN in frame.columns:
        note(f"{input_path}: its {PREDICTION_COLUMN!r} column is replaced by this model's predictions")
    out = written.assign(**{PREDICTION_COLUMN: predictions})
    output_path = Path(output_path)
    if output_path.suffix == ".parquet":
        write_atomic(output_path, lambda tmp: out.to_parquet(tmp, index=False))
    else:
        write_atomic(output_path, lambda tmp: out.to_csv(tmp, index=False))
    return len(out)
