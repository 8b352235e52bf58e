"""`torchtrack serve`: the model that train logged to MLflow, behind `mlflow models serve`.

The logged model is Standardize + the network, so it takes raw feature rows in training
order and answers POST /invocations with {"predictions": [[y], ...]}; GET /ping is its
health check. It binds to loopback unless told otherwise.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from torchtrack.errors import DataError
from torchtrack.files import read_json
from torchtrack.stages.train import RUN_FILE
from torchtrack.tracking import PREDICTION_DEVICE, tracking_uri


def logged_model_uri(run_file: str | Path = RUN_FILE) -> str:
    """The `models:/<model id>` URI of the model the last train stage logged."""
    run_file = Path(run_file)
    if not run_file.is_file():
        raise DataError(f"{run_file} not found: run the train stage first (dvc repro train)")
    run = read_json(run_file)
    if "model_uri" not in run:
        raise DataError(f"{run_file} names no logged model: run the train stage again (dvc repro train)")
    return run["model_uri"]


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


def serve_model(host: str, port: int, run_file: str | Path = RUN_FILE, model_uri: str | None = None) -> None:
    """Replace this process with the model server for `model_uri` (default: the model the last
    train logged); it runs until Ctrl-C."""
    model_uri = model_uri or logged_model_uri(run_file)
    print(f"Serving {model_uri} at http://{host}:{port}/invocations (Ctrl-C stops it)", flush=True)
    command = serve_command(model_uri, host, port)
    os.execve(command[0], command, serve_environment())
