"""`torchtrack ui`: the MLflow UI and TensorBoard side by side, on loopback by default."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from torchtrack.config import TrackingConfig
from torchtrack.store import repo_root, tracking_uri


def serve(config: TrackingConfig, host: str, mlflow_port: int, tensorboard_port: int) -> int:
    """Start both servers, print their addresses, and stop both on Ctrl-C or when one exits."""
    bin_dir = Path(sys.executable).parent
    logdir = repo_root() / config.tensorboard_dir
    logdir.mkdir(parents=True, exist_ok=True)
    commands = {
        "MLflow UI": [
            str(bin_dir / "mlflow"),
            "ui",
            "--backend-store-uri",
            tracking_uri(),
            "--host",
            host,
            "--port",
            str(mlflow_port),
        ],
        "TensorBoard": [
            str(bin_dir / "tensorboard"),
            "--logdir",
            str(logdir),
            "--host",
            host,
            "--port",
            str(tensorboard_port),
        ],
    }
    processes = {name: subprocess.Popen(cmd) for name, cmd in commands.items()}
    print(f"MLflow UI:   http://{host}:{mlflow_port}", flush=True)
    print(f"TensorBoard: http://{host}:{tensorboard_port}", flush=True)
    print("Ctrl-C stops both.", flush=True)
    try:
        while all(p.poll() is None for p in processes.values()):
            time.sleep(0.5)
        failed = [name for name, p in processes.items() if p.poll() not in (None, 0)]
        if failed:
            print(f"torchtrack ui: {', '.join(failed)} exited; is the port already in use?", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        for process in processes.values():
            process.terminate()
        for process in processes.values():
            process.wait(timeout=30)
