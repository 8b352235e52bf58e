"""`torchtrack serve`: the model that train logged to MLflow, behind `mlflow models serve`.

The logged model is the checkpoint's preprocessing and network (served_model.py), so it
takes raw rows by column name, text and gaps included, and answers POST /invocations with
{"predictions": [y, ...]} in the target's units; GET /ping is its health check. It binds
to loopback unless told otherwise. The model served is the one that the run behind
models/model.pt logged (found by the file's content hash, tracking/backend/lineage.py).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from torchtrack.environment import PREDICTION_DEVICE
from torchtrack.loopback import no_login_warning
from torchtrack.paths import MODEL_FILE
from torchtrack.tracking.backend.lineage import registered_model_uri
from torchtrack.tracking.location import tracking_uri


def serve_command(model_uri: str, host: str = "127.0.0.1", port: int = 5001) -> list[str]:
    """The `mlflow models serve` command line for `model_uri`, in this environment (no new venv)."""
    mlflow = str(Path(sys.executable).parent / "mlflow")
    return [mlflow, "models", "serve", "-m", model_uri, "--env-manager", "local", "-h", host, "-p", str(port)]


def serve_environment() -> dict[str, str]:
    """os.environ plus what the server needs: the tracking store, this environment's bin/, and
    the CPU as the model's device (where it was exported) unless the caller chose one.

    MLflow starts the server as `exec uvicorn ...` through bash, so uvicorn must be on PATH
    even when the virtual environment is not activated.
    """
    bin_dir = str(Path(sys.executable).parent)
    return (
        PREDICTION_DEVICE
        | os.environ
        | {
            "MLFLOW_TRACKING_URI": tracking_uri(),
            "PATH": os.pathsep.join([bin_dir, os.environ.get("PATH", "")]),
        }
    )


def serve_model(host: str, port: int, model: str | Path = MODEL_FILE) -> None:
    """Replace this process with the model server; it runs until Ctrl-C. `model` is an MLflow
    model URI (`models:/torchtrack@champion`) or a checkpoint file, whose run's registered
    version (its logged model if none) is served."""
    model_uri = str(model) if ":/" in str(model) else registered_model_uri(Path(model))
    warning = no_login_warning(host, "serve")
    if warning is not None:
        print(warning, file=sys.stderr, flush=True)
    print(f"Serving {model_uri} at http://{host}:{port}/invocations (Ctrl-C stops it)", flush=True)
    command = serve_command(model_uri, host, port)
    os.execve(command[0], command, serve_environment())
