"""torchtrack's command line: one entry point, a subcommand per stage, plus the tools that use
the results.

    torchtrack validate|prepare|train|evaluate [--params params.yaml]
    torchtrack predict --input new.csv --output predictions.csv [--model models/model.pt | MODEL_URI]
    torchtrack serve [--host 127.0.0.1] [--port 5001] [--model models/model.pt | MODEL_URI]
    torchtrack compare [--experiment NAME] [--metric test_mse] [--limit 20] [--all] [--dataset MD5]
    torchtrack promote [--metric test_mse]
    torchtrack reproduce RUN_ID
    torchtrack ui [--host 127.0.0.1] [--mlflow-port 5000] [--tensorboard-port 6006]
    torchtrack server --backend-store-uri postgresql://... --artifacts-destination s3://... [--auth]
    torchtrack push-runs [--to http://server:5000] [--experiment NAME]
    torchtrack tune [--space tune.yaml] [--trials 20] [--jobs 1] [--metric test_mse] [--storage URL]

Heavy libraries (torch, mlflow) are imported inside the subcommands, so --help is instant.
Exit codes: errors.EXIT_MEANINGS (also printed by --help).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time

from torchtrack import __version__
from torchtrack.errors import EXIT_INTERRUPTED, EXIT_MEANINGS, EXIT_TERMINATED
from torchtrack.signals import Terminated, stop_signals_raise

STAGES = {
    "validate": "check every key of params.yaml and do nothing else",
    "prepare": "generate or load the data; write seeded, scaled train/val/test splits",
    "train": "train the model on the train split; save it and log it to MLflow",
    "evaluate": "score the model on the test split; write metrics and plots",
}
STAGE_NOTE = (
    "`dvc repro` normally runs this stage, and only when its code, params or inputs changed "
    "(dvc.yaml); run it directly to debug it."
)
MODEL_STAGE = "train"  # the stage that logs a model: the store daemon prepares for it meanwhile
# for profiling
STAGE_PHASE = {"validate": "params", "prepare": "data", "train": "training", "evaluate": "evaluation"}
EXIT_CODES = "exit codes:\n" + "\n".join(f"  {code:<4} {text}" for code, text in EXIT_MEANINGS.items())
EXIT_CODES_LINE = "exit codes: " + ", ".join(
    f"{code} {text.split(' (')[0]}" for code, text in EXIT_MEANINGS.items()
)


def run_stage(args: argparse.Namespace) -> int:
    """prepare, train or evaluate with the params file; phases timed for `make bench`."""
    from torchtrack import profiling
    from torchtrack.tracking.client import start_daemon_ahead

    start_daemon_ahead(logs_model=args.command == MODEL_STAGE)  # validate's too: the next find it open
    from torchtrack.config import load_config

    with profiling.phase("imports"):
        config = load_config(args.params)
        stage = importlib.import_module(f"torchtrack.stages.{args.command}")
    with profiling.phase(STAGE_PHASE[args.command]):
        stage.run(config)
    profiling.report(args.command, args.started, args.started_cpu)
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

    serve_model(args.host, args.port, args.model)
    return 0  # not reached: serve_model execs the server


def run_compare(args: argparse.Namespace) -> int:
    """Print the experiment's model runs, best first."""
    from torchtrack.compare import comparison_report

    experiment = args.experiment
    if experiment is None:
        from torchtrack.config import load_config

        experiment = load_config(args.params).tracking.experiment
    print(comparison_report(experiment, args.metric, args.limit, everything=args.all, dataset=args.dataset))
    return 0


def run_promote(args: argparse.Namespace) -> int:
    """Move the alias champion onto the best registered version; say which it replaced."""
    from torchtrack.config import load_config
    from torchtrack.tracking.backend import registry
    from torchtrack.tracking.backend.store import connect

    name = load_config(args.params).tracking.experiment
    print(registry.promote(connect(), name, args.metric))
    return 0


def run_reproduce(args: argparse.Namespace) -> int:
    """Regenerate a run's model from its commit and params; 0 when byte-identical, 1 otherwise."""
    from torchtrack.reproduce import reproduce

    report = reproduce(args.run_id, keep=args.keep)
    print(report)
    return 0 if report.identical else 1


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
    from torchtrack.tracking.backend.push_runs import push_runs

    print(push_runs(args.source, args.target, args.experiment).summary(), file=sys.stderr)
    return 0


def run_tune(args: argparse.Namespace) -> int:
    """Run trials of the study until it has --trials of them; print the best."""
    from torchtrack.tune import tune

    print(tune(args.params, args.space, args.trials, args.jobs, args.metric, args.study, args.storage))
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
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, text: str, description: str | None = None) -> argparse.ArgumentParser:
        return commands.add_parser(name, help=text, description=description or text, epilog=EXIT_CODES_LINE)

    def add_params(command: argparse.ArgumentParser, ranked: bool = False) -> None:
        command.add_argument("--params", default="params.yaml", help="params file (default: %(default)s)")
        if ranked:  # a command that orders model runs
            command.add_argument(
                "--metric", default="test_mse", help="rank by this metric (default: %(default)s)"
            )

    for name, text in STAGES.items():
        stage = add(name, text, f"{text[0].upper()}{text[1:]}. {STAGE_NOTE}")
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
    predict.add_argument(
        "--model",
        default="models/model.pt",
        help="a checkpoint, or a model in MLflow: models:/torchtrack@champion, runs:/RUN_ID/model "
        "(default: %(default)s)",
    )
    predict.set_defaults(handler=run_predict)

    serve = add(
        "serve",
        "serve the model logged to MLflow over HTTP (mlflow models serve)",
        "Serve the model that train logged to MLflow with `mlflow models serve --env-manager "
        "local`. POST raw rows by column name (text, gaps as null) to /invocations, e.g. "
        '{"dataframe_split": {"columns": ["x0", ...], "data": [[1.0, ...]]}}; GET /ping is the health check.',
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s)")
    serve.add_argument("--port", type=int, default=5001, help="port to listen on (default: %(default)s)")
    serve.add_argument(
        "--model",
        default="models/model.pt",
        help="an MLflow model URI (e.g. models:/torchtrack@champion), or a checkpoint whose run's "
        "logged model is served (default: %(default)s)",
    )
    serve.set_defaults(handler=run_serve)

    compare = add(
        "compare",
        "print an experiment's model runs as a table, best first",
        "Print the model runs of an MLflow experiment, best first, with the params that differ "
        "between them and their metrics, read from the MLflow store. Lower is better for every metric but "
        "R^2 (names ending in r2).",
    )
    compare.add_argument("--experiment", help="MLflow experiment (default: tracking.experiment in --params)")
    compare.add_argument(
        "--limit", type=positive_int, default=20, help="show the best N (default: %(default)s)"
    )
    compare.add_argument(
        "--all", action="store_true", help="also list FAILED, KILLED and RUNNING runs, with a status column"
    )
    compare.add_argument("--dataset", metavar="MD5", help="only runs on this data (a prefix of its DVC hash)")
    add_params(compare, ranked=True)
    compare.set_defaults(handler=run_compare)

    promote = add(
        "promote",
        "set the registry alias champion on the best model version",
        "Move the alias `champion` of the registered model named after tracking.experiment onto "
        "the version whose model run is best by --metric, and say which version had it. "
        "`challenger` marks the newest version no worse by test MSE than the least-squares line and "
        "the champion. Use models:/<name>@champion in predict and serve.",
    )
    add_params(promote, ranked=True)
    promote.set_defaults(handler=run_promote)

    reproduce = add(
        "reproduce",
        "regenerate a run's model from its commit and params; compare the bytes",
        "Check out the run's commit (or its DVC experiment) in a temporary clone, write the run's "
        "params, run `dvc repro` there and compare the new models/model.pt with the hash the run "
        "recorded. Exit 0 when identical; 1 with what differs (params, code, data, platform) "
        "otherwise. A run made from a dirty work tree is refused (exit 2).",
    )
    reproduce.add_argument(
        "run_id", metavar="RUN_ID", help="an MLflow model run id (or a train/evaluate run under it)"
    )
    reproduce.add_argument(
        "--keep", metavar="DIR", help="make the clone in DIR and leave it there (default: a temporary folder)"
    )
    reproduce.set_defaults(handler=run_reproduce)

    ui = add(
        "ui",
        "start the MLflow UI and TensorBoard; print their addresses",
        "Start the MLflow UI and TensorBoard until Ctrl-C.",
    )
    ui.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s)")
    ui.add_argument("--mlflow-port", type=int, default=5000, help="MLflow UI port (default: %(default)s)")
    ui.add_argument(
        "--tensorboard-port", type=int, default=6006, help="TensorBoard port (default: %(default)s)"
    )
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
        "metrics with their steps and times, tags, artifacts, parent/child structure, dataset "
        "inputs, the logged model and its registered model version with its tags and aliases. A run "
        "already copied is skipped, so a second call copies only new runs.",
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

    tune = add(
        "tune",
        "search hyperparameters with Optuna, each trial a DVC experiment",
        "Search the space in --space (ranges and choices over params keys) with Optuna. Each "
        "trial runs `dvc exp run --temp -S key=value ...` and is scored by its model run's "
        "--metric; its MLflow model run is tagged with the study and trial number. Workers "
        "(this command, run again, here or on other machines) that name the same --study and "
        "--storage share its trials. See docs/scaling.md.",
    )
    tune.add_argument("--space", default="tune.yaml", help="search space file (default: %(default)s)")
    tune.add_argument(
        "--trials", type=positive_int, default=20, help="trials the study should have (default: %(default)s)"
    )
    tune.add_argument(
        "--jobs",
        type=positive_int,
        default=1,
        help="trials run at once by this worker (default: %(default)s)",
    )
    tune.add_argument(
        "--metric", help="model-run metric to optimise (default: the space file's, or test_mse)"
    )
    tune.add_argument("--study", help="study name (default: the space file's, or tune)")
    tune.add_argument(
        "--storage",
        help="Optuna storage URL, e.g. postgresql://... (default: sqlite optuna.db beside mlflow.db)",
    )
    add_params(tune)
    tune.set_defaults(handler=run_tune)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse `argv`, run the subcommand, map failures to exit codes."""
    started, started_cpu = time.perf_counter(), time.process_time()
    args = build_parser().parse_args(argv)
    args.started, args.started_cpu = started, started_cpu
    from torchtrack.environment import quiet_mlflow
    from torchtrack.errors import PipelineError

    quiet_mlflow()

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
