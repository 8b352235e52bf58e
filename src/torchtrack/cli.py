"""torchtrack's command line: one entry point, a subcommand per stage, plus `ui`.

    torchtrack prepare|train|evaluate [--params params.yaml]
    torchtrack ui [--host 127.0.0.1] [--mlflow-port 5000] [--tensorboard-port 6006]

Heavy libraries (torch, mlflow) are imported inside the subcommands, so --help is instant.
Exit codes: 0 success, 1 the stage failed (e.g. the loss diverged, the tracking server is
unreachable), 2 bad params or input, 130 interrupted (Ctrl-C), 143 terminated (SIGTERM).
"""

from __future__ import annotations

import argparse
import importlib
import sys

from torchtrack.signals import Terminated, stop_signals_raise

STAGES = {
    "prepare": "generate or load the data; write seeded, scaled train/val/test splits",
    "train": "train the model on the train split; save it and log it to MLflow",
    "evaluate": "score the model on the test split; write metrics and plots",
}
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report it
EXIT_TERMINATED = 143  # 128 + SIGTERM


def build_parser() -> argparse.ArgumentParser:
    """The argparse tree for every subcommand."""
    parser = argparse.ArgumentParser(
        prog="torchtrack", description="A reproducible, tracked PyTorch regression pipeline."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, text in STAGES.items():
        stage = commands.add_parser(name, help=text, description=text)
        stage.add_argument("--params", default="params.yaml", help="params file (default: %(default)s)")
    ui = commands.add_parser(
        "ui",
        help="start the MLflow UI and TensorBoard; print their addresses",
        description="Start the MLflow UI and TensorBoard until Ctrl-C.",
    )
    ui.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s)")
    ui.add_argument("--mlflow-port", type=int, default=5000, help="(default: %(default)s)")
    ui.add_argument("--tensorboard-port", type=int, default=6006, help="(default: %(default)s)")
    ui.add_argument("--params", default="params.yaml", help="params file (default: %(default)s)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse `argv`, run the subcommand, map failures to exit codes."""
    args = build_parser().parse_args(argv)
    from torchtrack.config import load_config
    from torchtrack.errors import PipelineError

    try:
        with stop_signals_raise():
            config = load_config(args.params)
            if args.command == "ui":
                from torchtrack.ui import serve

                return serve(config.tracking, args.host, args.mlflow_port, args.tensorboard_port)
            importlib.import_module(f"torchtrack.stages.{args.command}").run(config)
    except PipelineError as exc:
        print(f"torchtrack {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except Terminated:
        print(f"torchtrack {args.command}: terminated", file=sys.stderr)
        return EXIT_TERMINATED
    except KeyboardInterrupt:
        print(f"torchtrack {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    return 0
