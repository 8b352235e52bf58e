"""The command line: fast help, clear one-line errors, nothing written on bad input."""

from __future__ import annotations

import importlib.metadata
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from helpers import isolated_env, noisy_lines
from torchtrack.cli import main
from torchtrack.environment import QUIET_MLFLOW
from torchtrack.tracking.client import DAEMON_ENV

pytest_plugins = ["trained_project"]
ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "torchtrack", *args],
        cwd=cwd,
        env=env or isolated_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )


def write_params(folder: Path, **sections) -> Path:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for section, values in sections.items():
        if isinstance(values, dict):
            params[section].update(values)
        else:
            params[section] = values
    path = folder / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    (folder / "dvc.yaml").write_text("stages: {}\n")  # marks the repo root for the default store
    return path


def test_help_lists_every_subcommand_without_importing_torch_or_mlflow(tmp_path):
    result = run_cli("--help", cwd=tmp_path)
    assert result.returncode == 0
    for command in ("prepare", "train", "evaluate", "ui"):
        assert command in result.stdout
    probe = (
        "import sys; from torchtrack.cli import build_parser; build_parser(); "
        "print(sorted(m for m in ('torch', 'mlflow', 'pandas') if m in sys.modules))"
    )
    imported = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert imported.stdout.strip() == "[]"


def test_version_is_the_installed_packages(tmp_path):
    result = run_cli("--version", cwd=tmp_path)
    assert result.returncode == 0
    assert result.stdout.strip() == f"torchtrack {importlib.metadata.version('torchtrack')}"


SUBCOMMANDS = ("validate", "prepare", "train", "evaluate", "predict", "serve", "compare", "ui")


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_every_option_says_what_it_is_for(tmp_path, command):
    """No option's help is only its default."""
    text = run_cli(command, "--help", cwd=tmp_path).stdout
    bare = [line for line in text.splitlines() if re.match(r"\s+(-\S+( [A-Z_]+)?\s+)?\(default: ", line)]
    assert bare == [], text
    if command in ("validate", "prepare", "train", "evaluate"):
        assert "`dvc repro` normally runs this stage" in " ".join(text.split())


@pytest.mark.parametrize(
    ("sections", "named"),
    [
        ({"train": {"lr": -0.1}}, "train.lr"),
        ({"train": {"epochs": "ten"}}, "train.epochs"),
        ({"model": {"activation": "swish"}}, "model.activation"),
        ({"train": {"learning_rate": 0.1}}, "train.learning_rate"),
    ],
)
def test_bad_params_stop_the_stage_with_exit_2_and_write_nothing(tmp_path, sections, named):
    params = write_params(tmp_path, **sections)
    result = run_cli("prepare", "--params", str(params), cwd=tmp_path)
    assert result.returncode == 2
    message = result.stderr.strip()
    assert len(message.splitlines()) == 1 and named in message, message
    assert "Traceback" not in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dvc.yaml", "params.yaml"]  # no store, no outputs


def test_validate_stops_on_a_key_no_stage_reads_and_passes_the_defaults(tmp_path):
    """`dvc exp run -S +train.lrr=0.1` makes only validate stale (dvc.yaml): it must refuse."""
    params = write_params(tmp_path, train={"lrr": 0.1})
    result = run_cli("validate", "--params", str(params), cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().startswith(f"torchtrack validate: error: {params}: unknown key train.lrr;")
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    params = write_params(tmp_path)
    assert run_cli("validate", "--params", str(params), cwd=tmp_path).returncode == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dvc.yaml", "params.yaml"]  # no store, no outputs


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "CSV file not found"),
        ("", "empty"),
        ("a,b,target\n1,2,x\n", "target column 'target', row 1: 'x' is not a number"),
        ("a,b,c\n1,2,3\n", "target column 'target' not found"),
    ],
)
def test_bad_csv_stops_prepare_with_a_clear_message_and_no_mlflow_run(tmp_path, content, expected):
    csv = tmp_path / "input.csv"
    if content is not None:
        csv.write_text(content)
    params = write_params(tmp_path, data={"source": "csv", "path": str(csv), "target": "target"})
    result = run_cli("prepare", "--params", str(params), cwd=tmp_path)
    assert result.returncode == 2
    assert expected in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert not (tmp_path / "data").exists()
    assert not (tmp_path / "mlflow.db").exists()  # validation happens before any run starts


@pytest.mark.slow
def test_stages_run_in_order_and_a_missing_input_names_the_stage_to_run(tmp_path):
    """Run with MLflow in the stage's own process (no store daemon, as with a tracking server),
    and not told to be quiet by the shell: each stage prints only its own short lines."""
    params = write_params(tmp_path, data={"n_samples": 400}, train={"epochs": 2})
    result = run_cli("train", "--params", str(params), cwd=tmp_path)
    assert result.returncode == 2 and "run the prepare stage first" in result.stderr
    env = {k: v for k, v in isolated_env().items() if k not in QUIET_MLFLOW} | {DAEMON_ENV: "0"}
    outputs = {}
    for stage in ("prepare", "train", "evaluate"):
        result = run_cli(stage, "--params", str(params), cwd=tmp_path, env=env)
        assert result.returncode == 0, result.stderr
        assert noisy_lines(result.stdout + result.stderr) == [], stage
        outputs[stage] = result.stdout
    assert [line.split()[:2] for line in outputs["train"].splitlines()] == [
        ["epoch", "1/2"],
        ["epoch", "2/2"],
    ]
    for path in ("models/model.pt", "metrics/evaluate.json", "plots/predictions.png"):
        assert (tmp_path / path).is_file(), path


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_ui_serves_mlflow_and_tensorboard_on_loopback_until_ctrl_c(tmp_path):
    import signal
    import urllib.request

    params = write_params(tmp_path)
    ports = {"mlflow": free_port(), "tensorboard": free_port()}
    env = isolated_env()
    ui = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "torchtrack",
            "ui",
            "--params",
            str(params),
            "--mlflow-port",
            str(ports["mlflow"]),
            "--tensorboard-port",
            str(ports["tensorboard"]),
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        # No experiment yet: the experiments list, in the UI's model-training view.
        assert ui.stdout.readline().strip() == (
            f"MLflow UI:   http://127.0.0.1:{ports['mlflow']}/#/experiments?workflowType=machine_learning"
        )
        assert ui.stdout.readline().strip() == f"TensorBoard: http://127.0.0.1:{ports['tensorboard']}"
        for url in (
            f"http://127.0.0.1:{ports['mlflow']}/health",
            f"http://127.0.0.1:{ports['tensorboard']}/",
        ):
            with urllib.request.urlopen(url, timeout=5) as response:  # printed: already answering, no wait
                assert response.status == 200, url
    finally:
        ui.send_signal(signal.SIGINT)
        code = ui.wait(timeout=60)
    assert code == 0


def test_ui_on_a_busy_port_says_so_in_one_line_and_starts_nothing(tmp_path, capsys):
    import socket

    params = write_params(tmp_path)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code = main(["ui", "--params", str(params), "--mlflow-port", str(port), "--tensorboard-port", "0"])
    assert code == 1
    assert capsys.readouterr().err.splitlines() == [
        f"torchtrack ui: error: port {port} on 127.0.0.1 is already in use, so the MLflow UI cannot start: "
        "stop what listens there, or choose another port with --mlflow-port"
    ]


def late_http_server(port: int, delay_s: float) -> subprocess.Popen:
    """A process that answers HTTP on `port` only after `delay_s` seconds, as MLflow does."""
    code = (
        "import http.server, sys, time; time.sleep(float(sys.argv[2])); "
        "handler = http.server.SimpleHTTPRequestHandler; "
        "http.server.HTTPServer(('127.0.0.1', int(sys.argv[1])), handler).serve_forever()"
    )
    return subprocess.Popen([sys.executable, "-c", code, str(port), str(delay_s)])


def test_ui_links_the_runs_table_opening_on_the_params_and_test_metrics(
    trained_project, tmp_path, monkeypatch
):
    """The link is a shared view (an experiment tag the address names), which MLflow's UI opens
    with these columns instead of the ones the browser last kept."""
    from mlflow import MlflowClient

    from torchtrack.ui import SHARED_VIEW, runs_table_url

    shutil.copy(trained_project.root / "mlflow.db", tmp_path / "mlflow.db")  # the fixture's store unchanged
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    url = runs_table_url("http://127.0.0.1:5000", "tiny")
    experiment_id = MlflowClient(uri).get_experiment_by_name("tiny").experiment_id
    table = f"http://127.0.0.1:5000/#/experiments/{experiment_id}/runs?workflowType=machine_learning"
    assert url.startswith(f"{table}&viewStateShareKey=")
    assert runs_table_url("http://127.0.0.1:5000", "tiny") == url  # the same view: one tag, not one per start
    tags = MlflowClient(uri).get_experiment(experiment_id).tags
    view = json.loads(tags[SHARED_VIEW + url.split("viewStateShareKey=")[1]])
    assert view == {
        "selectedColumns": [
            "params.`model.activation`", "params.`train.optimizer`", "params.`train.lr`",
            "params.`train.max_steps`", "params.`train.batch_size`",  # one run: compare's five key params
            "metrics.`test_mse`", "metrics.`test_mae`", "metrics.`test_r2`", "metrics.`val_loss`",
        ]
    }  # fmt: skip
    # The installed UI still opens a shared view from this tag and address parameter.
    import mlflow.server

    bundle = "".join(
        path.read_text(errors="replace")
        for path in (Path(mlflow.server.__file__).parent / "js" / "build" / "static" / "js").glob("*.js")
    )
    assert all(name in bundle for name in ('"viewStateShareKey"', f'"{SHARED_VIEW}"', '"selectedColumns"'))


def test_ui_waits_until_a_server_answers_before_its_address_is_printed():
    import time

    from torchtrack.ui import answers, local_url, wait_until_answering

    port = free_port()
    server = late_http_server(port, delay_s=1.5)
    try:
        started = time.monotonic()
        wait_until_answering({"MLflow UI": (server, local_url("127.0.0.1", port))}, timeout_s=60)
        assert time.monotonic() - started >= 1.5
        assert answers(local_url("0.0.0.0", port))  # every interface: reached on loopback
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.mark.parametrize(
    ("code", "error"),
    [
        (
            "import time; time.sleep(600)",
            "the MLflow UI and TensorBoard did not answer within 1 s; both servers are stopped",
        ),
        (
            "import sys; sys.exit(3)",
            "the MLflow UI exited (code 3) before it answered; its log above says why",
        ),
    ],
    ids=["never-answers", "exits"],
)
def test_ui_a_server_that_does_not_come_up_is_one_line_exit_1_and_both_are_stopped(
    tmp_path, monkeypatch, capsys, code, error
):
    import os

    from torchtrack import ui

    params = write_params(tmp_path)
    ports = {"mlflow": free_port(), "tensorboard": free_port()}
    record = "import os, sys; open(sys.argv[1], 'w').write(str(os.getpid())); "
    pids = {name: tmp_path / f"{name}.pid" for name in ("mlflow", "tensorboard")}
    commands = {
        "MLflow UI": [sys.executable, "-c", record + code, str(pids["mlflow"])],
        "TensorBoard": [
            sys.executable,
            "-c",
            record + "import time; time.sleep(600)",
            str(pids["tensorboard"]),
        ],
    }
    monkeypatch.setattr(ui, "server_commands", lambda *args: commands)
    monkeypatch.setattr(ui, "START_TIMEOUT_S", 1)
    argv = ["--mlflow-port", str(ports["mlflow"]), "--tensorboard-port", str(ports["tensorboard"])]
    assert main(["ui", "--params", str(params), *argv]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""  # no address printed
    assert captured.err.splitlines()[-1] == f"torchtrack ui: error: {error}"
    for path in pids.values():
        if path.exists() and path.read_text():  # it got as far as recording itself
            with pytest.raises(ProcessLookupError):
                os.kill(int(path.read_text()), 0)
