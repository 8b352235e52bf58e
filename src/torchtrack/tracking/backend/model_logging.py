"""What logging and loading the MLflow model needs of the process around it: the model's code
and artifact names, and the fluent tracking URI MLflow's model APIs read.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

SERVED_MODEL_CODE = Path(__file__).parents[2] / "served_model.py"  # the logged model: MLflow model from code
CHECKPOINT_ARTIFACT = "checkpoint"  # the logged model's artifact holding models/model.pt


@contextmanager
def fluent_tracking_uri(uri: str) -> Iterator[None]:
    """`uri` as MLflow's fluent tracking URI for the duration, then the process's own again.

    `mlflow.pyfunc.log_model` knows only the fluent URI. Where it is `uri` already (the store
    daemon, started with MLFLOW_TRACKING_URI set to its store; a stage whose MLFLOW_TRACKING_URI
    names the store) nothing changes; otherwise (a notebook that set its own, a process with none)
    it is `uri` for the duration and then the process's own again, MLFLOW_TRACKING_URI as it was:
    nothing outlives the call.
    """
    import mlflow

    own = mlflow.get_tracking_uri()  # the process's own URI, else MLFLOW_TRACKING_URI, else MLflow's default
    if own == uri:
        yield
        return
    variable = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)  # MLflow sets MLFLOW_TRACKING_URI too, and unsets it for None
    try:
        yield
    finally:
        mlflow.set_tracking_uri(own if variable else None)  # None: MLflow's default again
