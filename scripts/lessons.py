"""The curriculum as DVC experiments: each lesson is params.yaml plus a few `-S` overrides.

    python scripts/lessons.py   # `make sweep`: queue every lesson, run them, print the table

A script over `dvc exp`, not part of the library: it imports nothing from torchtrack.

Every lesson also lands in MLflow as a model run named after it (experiment `torchtrack`).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from typing import Any

# lesson name -> params.yaml overrides (dotted keys), in the journal's order.
LESSONS: dict[str, dict[str, Any]] = {
    # week 1: linear regression on the journal's y = 2x + 3 + noise, plain SGD with momentum
    "line-linear-sgd": {
        "data.family": "line",
        "model.activation": "identity",
        "train.optimizer": "sgd",
        "train.momentum": 0.9,
    },
    # week 2: several columns; a cosine schedule settles the fit onto least squares
    "linear-linear": {"data.family": "linear", "model.activation": "identity", "train.lr_schedule": "cosine"},
    # week 3: tanh(z) + z data, without and with the matching activation
    "tanh-linear": {"model.activation": "identity"},
    "tanh-tanh_plus_x": {"model.activation": "tanh_plus_x"},
    # week 3: a learnable a * tanh(x) + b * x recovers a = 2, b = 0.5; autograd and hand-written backward
    "scaled_tanh-learnable": {"data.family": "scaled_tanh", "model.activation": "learnable_tanh_plus_x"},
    "scaled_tanh-manual_grad": {"data.family": "scaled_tanh", "model.activation": "manual_grad_tanh_plus_x"},
    # next: Huber loss against outliers
    "outliers-mse": {"data.family": "outliers", "model.activation": "tanh_plus_x"},
    "outliers-huber": {"data.family": "outliers", "model.activation": "tanh_plus_x", "train.loss": "huber"},
    # next: a deep network where a linear model cannot follow the target
    "nonlinear-linear": {"data.family": "nonlinear", "model.activation": "identity"},
    "nonlinear-mlp": {"data.family": "nonlinear", "model.kind": "mlp", "model.activation": "relu"},
    # real data: 442 rows, 10 columns
    "diabetes-linear": {
        "data.source": "diabetes",
        "model.activation": "identity",
        "train.lr": 2.0,
        "train.epochs": 300,
        "train.batch_size": 32,
        "train.lr_schedule": "cosine",
    },
    "diabetes-mlp": {
        "data.source": "diabetes",
        "model.kind": "mlp",
        "model.activation": "relu",
        "model.hidden_sizes": [32],
        "model.dropout": 0.1,
        "train.optimizer": "adamw",
        "train.lr": 0.01,
        "train.weight_decay": 0.01,
        "train.epochs": 300,
        "train.batch_size": 32,
        "train.early_stopping_patience": 30,
    },
}

# Columns of the results table (regular expressions for `dvc exp show --keep`).
TABLE_COLUMNS = (
    "Experiment",
    "data.source",
    "data.family",
    "model.kind",
    "model.activation",
    "train.loss",
    "test_mse",
    "test_mae",
    "test_mse_over_noise_variance",
    "test_mse_least_squares",
    "noise_variance",
    "oracle_test_mse",
    "activation.a",
    "activation.b",
    "epochs",
)
SHOW_COMMAND = [
    "dvc",
    "exp",
    "show",
    "--md",
    "--hide-workspace",
    "--precision",
    "4",
    "--drop",
    ".*",
    "--keep",
    "^(" + "|".join(c.replace(".", r"\.") for c in TABLE_COLUMNS) + ")$",
]
GIT_IDENTITY = {
    f"GIT_{who}_{what}": value
    for who in ("AUTHOR", "COMMITTER")
    for what, value in (("NAME", "torchtrack lessons"), ("EMAIL", "lessons@torchtrack.invalid"))
}


def set_param_arg(key: str, value: Any) -> str:
    """One `-S` value as DVC reads it (YAML): strings bare, everything else as JSON."""
    return f"{key}={value if isinstance(value, str) else json.dumps(value)}"


def queue_command(name: str, overrides: dict[str, Any]) -> list[str]:
    """`dvc exp run --queue` for one lesson; -f replaces an earlier experiment of the same name."""
    command = ["dvc", "exp", "run", "--queue", "-f", "-n", name]
    for key, value in overrides.items():
        command += ["-S", set_param_arg(key, value)]
    return command


def git_env() -> dict[str, str]:
    """The environment, plus a git identity for DVC's experiment commits when git has none."""
    env = dict(os.environ)
    has_identity = subprocess.run(["git", "config", "user.email"], capture_output=True).returncode == 0
    if not has_identity:
        env = GIT_IDENTITY | env
    return env


def main(argv: list[str] | None = None) -> int:
    """Queue every lesson, run the queue one experiment at a time, print the Markdown table."""
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog=f"lessons, in order: {', '.join(LESSONS)}",
    )
    parser.parse_args(argv)  # first: --help queues nothing
    env = git_env()
    for name, overrides in LESSONS.items():
        subprocess.run(queue_command(name, overrides), env=env, check=True)
    subprocess.run(["dvc", "exp", "run", "--run-all", "-j", "1"], env=env, check=True)
    print(" ".join(SHOW_COMMAND), flush=True)
    return subprocess.run(SHOW_COMMAND, env=env).returncode


if __name__ == "__main__":
    sys.exit(main())
