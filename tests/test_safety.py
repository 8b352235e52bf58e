"""Safe loading and safe logging: every torch.load in the code passes weights_only=True, the UI
binds loopback unless told otherwise, and no credential in the environment ever reaches a
param, a tag, the MLflow store, an artifact or a TensorBoard file."""

from __future__ import annotations

import ast
from pathlib import Path

import yaml
from mlflow import MlflowClient

from torchtrack.cli import build_parser, main
from torchtrack.tracking.location import tracking_uri

SOURCE = Path(__file__).resolve().parents[1] / "src" / "torchtrack"
CREDENTIALS = {
    "AWS_SECRET_ACCESS_KEY": "aws-secret-6f1c9e",
    "AWS_SESSION_TOKEN": "aws-session-0b7d42",
    "MLFLOW_TRACKING_PASSWORD": "mlflow-password-93ad1f",
    "MLFLOW_TRACKING_TOKEN": "mlflow-token-5e28c0",
    "DATABRICKS_TOKEN": "databricks-token-c4e7a9",
    "AZURE_STORAGE_ACCESS_KEY": "azure-key-71b3d5",
    "GITHUB_TOKEN": "github-token-2a9f6e",
}


def torch_load_calls() -> list[tuple[str, int, ast.Call]]:
    """Every `torch.load(...)` call in the package: (file, line, call)."""
    calls = []
    for path in sorted(SOURCE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "load"
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "torch"
            ):
                calls.append((path.name, node.lineno, node))
    return calls


def test_every_torch_load_passes_weights_only_true():
    calls = torch_load_calls()
    assert {name for name, _, _ in calls} >= {"models.py", "checkpoints.py"}  # the scan finds them
    unsafe = [
        f"{name}:{line}"
        for name, line, call in calls
        if not any(
            k.arg == "weights_only" and isinstance(k.value, ast.Constant) and k.value.value is True
            for k in call.keywords
        )
    ]
    assert unsafe == [], f"torch.load without weights_only=True at {', '.join(unsafe)}"


def test_nothing_imports_load_from_torch_to_dodge_the_check():
    for path in SOURCE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == "torch":
                assert "load" not in {alias.name for alias in node.names}, path


def test_the_ui_binds_loopback_unless_told_otherwise():
    assert build_parser().parse_args(["ui"]).host == "127.0.0.1"


def test_credentials_in_the_environment_are_never_logged(workdir, monkeypatch, capsys):
    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    params = {"data": {"n_samples": 300}, "train": {"epochs": 1}}
    (workdir / "params.yaml").write_text(yaml.safe_dump(params))
    for stage in ("prepare", "train", "evaluate"):
        assert main([stage]) == 0, capsys.readouterr().err
    client = MlflowClient(tracking_uri())
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(experiments)
    assert len(runs) == 4  # prepare, the model run, train, evaluate
    logged = [v for run in runs for v in (*run.data.params.values(), *run.data.tags.values())]
    assert not [v for v in logged if any(secret in v for secret in CREDENTIALS.values())]
    for path in workdir.rglob("*"):  # the store, artifacts, TensorBoard events, outputs
        if path.is_file():
            content = path.read_bytes()
            assert not [s for s in CREDENTIALS.values() if s.encode() in content], path
