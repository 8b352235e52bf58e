"""Environment variables that MLflow reads, as the processes that load models set them: the
prediction device, and a scope for a variable set for one call (`torchtrack predict`, `serve`,
`push-runs`). The store daemon's are set once, when it is started (tracking/client.py).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

# The logged model is exported (pt2) on the CPU, and a pt2 export loads only on the device it
# was exported on; MLflow's loaders that read this pick CUDA whenever one is present unless it
# says otherwise.
PREDICTION_DEVICE = {"MLFLOW_DEFAULT_PREDICTION_DEVICE": "cpu"}


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
