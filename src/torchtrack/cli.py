"""torchtrack's command line: one entry point, a subcommand per stage, plus the tools that use
the results.

    torchtrack prepare|train|evaluate [--params params.yaml]
    torchtrack predict --input new.csv --output predictions.csv [--model models/model.pt]
    torchtrack serve [--host 127.0.0.1] [--port 5001]
    torchtrack compare [--experiment NAME] [--metric test_mse] [--limit 20]
    torchtrack ui [--host 127.0.0.1] [--mlflow-port 5000] [--tensorboard-port 6006]
    torchtrack server --backend-store-uri postgresql://... --artifacts-destination s3://... [--auth]
    torchtrack push-runs [--to http://server:5000] [--experiment NAME]

Heavy libraries (torch, mlflow) are imported inside the subcommands, so --help is instant.
Exit codes: errors.EXIT_MEANINGS (also printed by --help).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time

from torchtrack.errors import EXIT_INTERRUPTED, EXIT_MEANINGS, EXIT_TERMINATED
from torchtrack.signals import Terminated, stop_signals_raise

STAGES = {
    "prepare": "generate or load the data; write seeded, scaled train/val/test splits",
    "train": "train the model on the train split; save it and log it to MLflow",
    "evaluate": "score the model on the test split; write metrics and plots",
}
STAGE_PHASE = {"prepare": "data", "train": "training", "evaluate": "evaluation"}  # for profiling
EXIT_CODES = "exit codes:\n" + "\n".join(f"  {code:<4} {text}" for code, text in EXIT_MEANINGS.items())
EXIT_CODES_LINE = "exit codes: " + ", ".join(
    f"{code} {text.split(' (')[0]}" for code, text in EXIT_MEANINGS.items()
)


def run_stage(args: argparse.Namespace) -> int:
    """prepare, train or evaluate with the params file; phases timed for `make bench`."""
    from torchtrack import profiling
    from torchtrack.config import load_config

    with profiling.phase("imports"):
        config = load_config(args.params)
        stage = importlib.import_module(f"torchtrack.stages.{args.command}")
    with profiling.phase(STAGE_PHASE[args.command]):
        stage.run(config)
    profiling.report(args.command, args.started)
    return 0


def run_predict(args: argparse.Namespace) -> int:
    """Predict the rows of --input into --output."""
    from torchtrack.predict import predict_file

    rows = predict_file(args.model, args.input, args.output)
    print(f"wrote {rows} prediction(s) to {args.output}", file=sys.stderr)
    return 0


def run_serve(args: argparse.Namespace) -> int:
    """Serve the logged model over HTTP (replaces this process)."""
    from torchtrack.serve import serve_model

    serve_model(args.host, args.port, args.run_file)
    return 0  # not reached: serve_model execs the server


def run_compare(args: argparse.Namespace) -> int:
    """Print the experiment's model runs, best first."""
    from torchtrack.compare import comparison_report

    experiment = args.experiment
    if experiment is None:
        from torchtrack.config import load_config

        experiment = load_config(args.params).tracking.experiment
    print(comparison_report(experiment, args.metric, args.limit))
    return 0


def run_ui(args: argparse.Namespace) -> int:
    """The MLflow UI and TensorBoard until Ctrl-C."""
    from torchtrack.config import load_config
    from torchtrack.ui import serve

    return serve(load_config(args.params).tracking, args.host, args.mlflow_port, args.tensorboard_port)


def run_server(args: argparse.Namespace) -> int:
    """The team's MLflow tracking server until Ctrl-C (docs/team.md)."""
    from torchtrack.server import run_server

    extra = args.mlflow_args[1:] if args.mlflow_args[:1] == ["--"] else args.mlflow_args
    return run_server(
        args.backend_store_uri,
        args.artifacts_destination,
        args.host,
        args.port,
        args.workers,
        args.auth,
        args.auth_database_uri,
        extra,
    )


def run_push_runs(args: argparse.Namespace) -> int:
    """Copy the local store's runs to the tracking server."""
    from torchtrack.push_runs import push_runs

    print(push_runs(args.source, args.target, args.experiment).summary(), file=sys.stderr)
    return 0


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argparse tree for every subcommand."""
    parser = argparse.ArgumentParser(
        prog="torchtrack",
        description="A reproducible, tracked PyTorch regression pipeline.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, text: str, description: str | None = None) -> argparse.ArgumentParser:
        return commands.add_parser(name, help=text, description=description or text, epilog=EXIT_CODES_LINE)

    def add_params(command: argparse.ArgumentParser) -> None:
        command.add_argument("--params", default="params.yaml", help="params file (default: %(default)s)")

    for name, text in STAGES.items():
        stage = add(name, text)
        add_params(stage)
        stage.set_defaults(handler=run_stage)

    predict = add(
        "predict",
        "predict new rows with the trained model (models/model.pt)",
        "Predict new rows with the trained model, in eval mode without gradients. Columns "
        "are matched by name to the training features and scaled with the train split's "
        "statistics; the target column may be present and is ignored. The output keeps "
        "every input column and adds 'prediction'. A missing feature or an unknown "
        "column is an error (exit code 2).",
    )
    predict.add_argument("--input", required=True, help="rows to predict: a CSV or .parquet file")
    predict.add_argument("--output", required=True, help="where to write them: a CSV or .parquet file")
    predict.add_argument("--model", default="models/model.pt", help="checkpoint (default: %(default)s)")
    predict.set_defaults(handler=run_predict)

    serve = add(
        "serve",
        "serve the model logged to MLflow over HTTP (mlflow models serve)",
        "Serve the model that train logged to MLflow with `mlflow models serve --env-manager "
        "local`. POST raw feature rows, in training order, to /invocations, e.g. "
        '{"inputs": [[1.0, 2.0, ...]]}; GET /ping is the health check.',
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s)")
    serve.add_argument("--port", type=int, default=5001, help="port to listen on (default: %(default)s)")
    serve.add_argument(
        "--run-file",
        default="models/mlflow_run.json",
        help="train's record of the logged model (default: %(default)s)",
    )
    serve.set_defaults(handler=run_serve)

    compare = add(
        "compare",
        "print an experiment's model runs as a table, best first",
        "Print the model runs of an MLflow experiment, best first, with their key params "
        "and metrics, read from the MLflow store. Lower is better for every metric but "
        "R^2 (names ending in r2).",
    )
    compare.add_argument("--experiment", help="MLflow experiment (default: tracking.experiment in --params)")
    compare.add_argument("--metric", default="test_mse", help="rank by this metric (default: %(default)s)")
    compare.add_argument(
        "--limit", type=positive_int, default=20, help="show the best N (default: %(default)s)"
    )
    add_params(compare)
    compare.set_defaults(handler=run_compare)

    ui = add(
        "ui",
        "start the MLflow UI and TensorBoard; print their addresses",
        "Start the MLflow UI and TensorBoard until Ctrl-C.",
    )
    ui.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s)")
    ui.add_argument("--mlflow-port", type=int, default=5000, help="(default: %(default)s)")
    ui.add_argument("--tensorboard-port", type=int, default=6006, help="(default: %(default)s)")
    add_params(ui)
    ui.set_defaults(handler=run_ui)

    server = add(
        "server",
        "run the team's MLflow tracking server (PostgreSQL store, S3 artifacts, logins)",
        "Run `mlflow server` with the backend store and artifact destination given (artifacts "
        "are served through it, so clients need no S3 credentials), on loopback unless --host "
        "says otherwise; print the command line with passwords masked. S3 credentials and "
        "endpoint come from AWS_* and MLFLOW_S3_ENDPOINT_URL. See docs/team.md. Arguments "
        "after -- go to `mlflow server` as they are.",
    )
    server.add_argument(
        "--backend-store-uri",
        default=os.environ.get("MLFLOW_BACKEND_STORE_URI"),
        help="e.g. postgresql://USER:PASSWORD@HOST:5432/DB (default: $MLFLOW_BACKEND_STORE_URI)",
    )
    server.add_argument(
        "--artifacts-destination",
        default=os.environ.get("MLFLOW_ARTIFACTS_DESTINATION"),
        help="e.g. s3://BUCKET/mlartifacts (default: $MLFLOW_ARTIFACTS_DESTINATION)",
    )
    server.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s)")
    server.add_argument("--port", type=int, default=5000, help="port to listen on (default: %(default)s)")
    server.add_argument("--workers", type=positive_int, help="worker processes (default: MLflow's)")
    server.add_argument(
        "--auth",
        action="store_true",
        help="logins (MLflow's basic-auth app); needs MLFLOW_FLASK_SERVER_SECRET_KEY and, on the "
        "first start, MLFLOW_AUTH_ADMIN_PASSWORD",
    )
    server.add_argument("--auth-database-uri", help="where the logins are kept (default: the backend store)")
    server.add_argument("mlflow_args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    server.set_defaults(handler=run_server)

    push = add(
        "push-runs",
        "copy the runs of the local MLflow store to a tracking server",
        "Copy every finished run of the local store (mlflow.db) to the tracking server: params, "
        "metrics with their steps and times, tags, artifacts, parent/child structure and the "
        "logged model. A run already copied is skipped, so a second call copies only new runs.",
    )
    push.add_argument(
        "--to",
        dest="target",
        default=os.environ.get("MLFLOW_TRACKING_URI"),
        help="the tracking server (default: $MLFLOW_TRACKING_URI)",
    )
    push.add_argument(
        "--from", dest="source", help="the store to copy from (default: mlflow.db at the repository root)"
    )
    push.add_argument(
        "--experiment", action="append", help="copy only this experiment (repeatable; default: all)"
    )
    push.set_defaults(handler=run_push_runs)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse `argv`, run the subcommand, map failures to exit codes."""
    started = time.perf_counter()
    args = build_parser().parse_args(argv)
    args.started = started
    from torchtrack.errors import PipelineError

    try:
        with stop_signals_raise():
            return args.handler(args)
    except PipelineError as exc:
        print(f"torchtrack {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except Terminated:
        print(f"torchtrack {args.command}: terminated", file=sys.stderr)
        return EXIT_TERMINATED
    except KeyboardInterrupt:
        print(f"torchtrack {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
