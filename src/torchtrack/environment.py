"""Environment variables that MLflow reads, as the processes that load models set them: the
prediction device, MLflow's console kept to warnings, and a scope for a variable set for one
call (`torchtrack predict`, `serve`, `push-runs`). The store daemon's are set once, when it is
started (tracking/client.py).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

# The logged model is exported (pt2) on the CPU, and a pt2 export loads only on the device it
# was exported on; MLflow's loaders that read this pick CUDA whenever one is present unless it
# says otherwise.
PREDICTION_DEVICE = {"MLFLOW_DEFAULT_PREDICTION_DEVICE": "cpu"}
# A stage's or a command's output is its own lines: MLflow's INFO lines (system metrics, input
# example validation) and its artifact download bars said nothing a user acts on. Set before
# MLflow is imported (it reads the level then); a value the user set is kept.
QUIET_MLFLOW = {"MLFLOW_LOGGING_LEVEL": "WARNING", "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}


def quiet_mlflow() -> None:
    """QUIET_MLFLOW in os.environ, for this process and the ones it starts, unless already set."""
    for name, value in QUIET_MLFLOW.items():
        os.environ.setdefault(name, value)


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
