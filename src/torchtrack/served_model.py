"""The model train logs to MLflow, as code (MLflow's "models from code"): raw rows in, the
target in its own units out. MLflow runs this file when it loads the model; the weights and
the preprocessing come from the logged checkpoint, read with `weights_only=True`, so loading
the model unpickles no code.
"""

from __future__ import annotations

import mlflow.models
import mlflow.pyfunc
import numpy as np
import pandas as pd

from torchtrack.tracking.backend.model_logging import CHECKPOINT_ARTIFACT


class RawRowsModel(mlflow.pyfunc.PythonModel):
    """The checkpoint's preprocessing and network, taking a DataFrame of raw rows by column name."""

    def load_context(self, context: mlflow.pyfunc.PythonModelContext) -> None:
        from torchtrack.predict import Predictor

        self.predictor = Predictor.load(context.artifacts[CHECKPOINT_ARTIFACT])

    def predict(self, context, model_input: pd.DataFrame, params=None) -> np.ndarray:  # noqa: ANN001
        """One prediction per row, in the target's units."""
        return self.predictor(model_input)


mlflow.models.set_model(RawRowsModel())
