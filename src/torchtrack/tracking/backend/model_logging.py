"""What logging and loading the MLflow model needs of the process around it: the model's code
and artifact names, the prediction device, and the fluent tracking URI MLflow's model APIs read.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# The logged model is exported (pt2) on the CPU, and a pt2 export loads only on the device it
# was exported on; MLflow's pyfunc loader picks CUDA whenever one is present unless this says
# otherwise. Set while logging (MLflow checks the input example) and for `torchtrack serve`.
PREDICTION_DEVICE = {"MLFLOW_DEFAULT_PREDICTION_DEVICE": "cpu"}
SERVED_MODEL_CODE = Path(__file__).parents[2] / "served_model.py"  # the logged model: MLflow model from code
CHECKPOINT_ARTIFACT = "checkpoint"  # the logged model's artifact holding models/model.pt


@contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    """`values` in os.environ for the duration, then the variables as they were."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextmanager
def fluent_tracking_uri(uri: str) -> Iterator[None]:
    """`uri` as MLflow's fluent tracking URI for the duration, then the process's own again.

    `mlflow.pytorch.log_model` knows only the fluent URI. MLFLOW_TRACKING_URI gives it `uri`
    when the process set none of its own; one it did set (`mlflow.set_tracking_uri`, say in a
    notebook) is replaced for the duration and then put back, so nothing outlives the call.
    """
    import mlflow

    with environment({"MLFLOW_TRACKING_URI": uri}):
        own = mlflow.get_tracking_uri()  # the process's own URI when it set one, else `uri`
        if own == uri:
            yield
            return
        mlflow.set_tracking_uri(uri)
        try:
            yield
        finally:
            mlflow.set_tracking_uri(own)
