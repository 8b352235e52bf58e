"""Predictions for new rows from the trained checkpoint: `torchtrack predict --input X --output Y`.

Columns are matched by name against the features the model was trained on, scaled with the
train split's statistics saved in the checkpoint, and fed through the model in eval mode
under no_grad. The output keeps every input column and adds `prediction`. `--model` may
also name a model logged to MLflow (`models:/torchtrack@champion`, `runs:/<run id>/model`),
which holds its scaling and feature names itself.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from torchtrack.data import Scaler
from torchtrack.errors import DataError, InputError
from torchtrack.evaluation import predict
from torchtrack.files import write_atomic
from torchtrack.models import load_checkpoint

PREDICTION_COLUMN = "prediction"
MODEL_URI_SCHEMES = ("models:/", "runs:/")  # --model values that name a model in MLflow


def read_rows(path: str | Path) -> pd.DataFrame:
    """A CSV or Parquet (by suffix) file of rows to predict; InputError if it cannot be read."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: input file not found")
    try:
        if path.suffix == ".parquet":
            return pd.read_parquet(path)
        return pd.read_csv(path)
    except pd.errors.EmptyDataError:
        raise InputError(f"{path}: the input file is empty") from None
    except (pd.errors.ParserError, UnicodeDecodeError, OSError, ValueError) as exc:
        raise InputError(f"{path}: not a readable {path.suffix.lstrip('.') or 'CSV'} file ({exc})") from None


def check_columns(frame: pd.DataFrame, features: list[str], target: str) -> None:
    """InputError unless `frame` has every feature and nothing but features and the target.

    The target may be present (e.g. scoring labelled rows); it is carried through, not used.
    """
    columns = [str(c) for c in frame.columns]
    missing = [c for c in features if c not in columns]
    extra = [c for c in columns if c not in features and c != target]
    problems = []
    if missing:
        problems.append(f"missing feature column(s): {', '.join(missing)}")
    if extra:
        problems.append(f"unknown column(s): {', '.join(extra)}")
    if problems:
        raise InputError(f"{'; '.join(problems)}. The model expects: {', '.join(features)}")
    for column in features:
        if not pd.api.types.is_numeric_dtype(frame[column]) or pd.api.types.is_bool_dtype(frame[column]):
            raise InputError(f"column {column!r} is not numeric")
        bad = int((~np.isfinite(frame[column].to_numpy(np.float64))).sum())
        if bad:
            raise InputError(f"column {column!r} has {bad} missing or infinite value(s)")


class Predictor:
    """The trained model with its feature names and train-split scaling; callable on a DataFrame."""

    def __init__(self, model: torch.nn.Module, scaler: Scaler):
        self.model = model
        self.scaler = scaler

    @classmethod
    def load(cls, path: str | Path) -> Predictor:
        """Rebuild from a checkpoint written by the train stage (models/model.pt)."""
        model, payload = load_checkpoint(Path(path))
        return cls(model, Scaler(**payload["scaler"]))

    @property
    def features(self) -> list[str]:
        """The feature columns the model was trained on, in training order."""
        return self.scaler.features

    def __call__(self, frame: pd.DataFrame) -> np.ndarray:
        """One prediction per row of `frame` (raw, unscaled features matched by name)."""
        check_columns(frame, self.features, self.scaler.target)
        if len(frame) == 0:
            return np.empty(0)
        scaled = self.scaler.transform(frame[self.features])  # (N, F) float32, in training order
        return predict(self.model, torch.from_numpy(scaled.to_numpy(copy=True)))


class LoggedPredictor:
    """A model logged to MLflow by train (Standardize + network, taking raw features), callable
    on a DataFrame like Predictor; the feature names come from its MLmodel metadata."""

    def __init__(self, model: object, features: list[str], target: str):
        self.model = model
        self.features = features
        self.target = target

    @classmethod
    def load(cls, uri: str) -> LoggedPredictor:
        """Load `uri` (models:/..., runs:/...) with mlflow.pyfunc from the project's store."""
        import mlflow.pyfunc
        from mlflow.exceptions import MlflowException

        from torchtrack.store import tracking_uri
        from torchtrack.tracking import PREDICTION_DEVICE, environment, fluent_tracking_uri

        try:
            with fluent_tracking_uri(tracking_uri()), environment(PREDICTION_DEVICE):
                model = mlflow.pyfunc.load_model(uri)
        except MlflowException as exc:
            raise DataError(f"{uri}: cannot load the model ({exc.message.splitlines()[0]})") from None
        metadata = model.metadata.metadata or {}
        if "features" not in metadata:
            raise DataError(f"{uri}: the logged model names no feature columns; train it again (dvc repro)")
        return cls(model, list(metadata["features"]), str(metadata.get("target")))

    def __call__(self, frame: pd.DataFrame) -> np.ndarray:
        """One prediction per row of `frame` (raw features matched by name)."""
        check_columns(frame, self.features, self.target)
        if len(frame) == 0:
            return np.empty(0)
        rows = frame[self.features].to_numpy(np.float32, copy=True)  # (N, F) in training order
        return np.asarray(self.model.predict(rows), dtype=np.float64).reshape(-1)


def load_predictor(model: str | Path) -> Predictor | LoggedPredictor:
    """A checkpoint path, or a logged model's URI (models:/..., runs:/...)."""
    if str(model).startswith(MODEL_URI_SCHEMES):
        return LoggedPredictor.load(str(model))
    return Predictor.load(model)


def predict_file(model_path: str | Path, input_path: str | Path, output_path: str | Path) -> int:
    """Predict every row of `input_path` into `output_path` (CSV, or Parquet by suffix); return rows."""
    predictor = load_predictor(model_path)
    frame = read_rows(input_path)
    out = frame.assign(**{PREDICTION_COLUMN: predictor(frame)})
    output_path = Path(output_path)
    if output_path.suffix == ".parquet":
        write_atomic(output_path, lambda tmp: out.to_parquet(tmp, index=False))
    else:
        write_atomic(output_path, lambda tmp: out.to_csv(tmp, index=False))
    return len(out)
