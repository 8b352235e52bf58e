"""The calls a stage may make of the store daemon, with their arguments' types: the daemon
answers these and no others (client.py and backend/daemon.py are the two ends). run_store.RunStore
has each method but render_figure, which a stage makes only of the daemon (figures.draw).

Types are named, not imported, so that the stage side needs neither pandas nor MLflow here.
"""

from __future__ import annotations

from typing import Any

from torchtrack.errors import TrackingStoreError

RUN = {"run_id": ("str",)}
TEXT = ("str",)
MAYBE_TEXT = ("str", "NoneType")
NUMBER = ("float", "int")
# method -> {argument: the type names it may have}
CALLS: dict[str, dict[str, tuple[str, ...]]] = {
    "experiment_id": {"name": TEXT, "artifact_location": MAYBE_TEXT},
    "end_runs_of_gone_processes": {"experiment": TEXT, "host": TEXT, "who": TEXT},
    "create_run": {"experiment": TEXT, "name": TEXT, "tags": ("dict",)},
    "unfinished_model_run": {"experiment": TEXT, "tag": TEXT, "value": TEXT},
    "reopen_run": RUN,
    "log_batch": RUN | {"metrics": ("list",), "params": ("list",), "tags": ("list",)},
    "log_text": RUN | {"text": TEXT, "artifact_file": TEXT},
    "log_artifact": RUN | {"path": TEXT, "artifact_path": MAYBE_TEXT},
    "log_artifacts": RUN | {"path": TEXT, "artifact_path": MAYBE_TEXT},
    "set_tag": RUN | {"key": TEXT, "value": TEXT},
    "set_terminated": RUN | {"status": TEXT},
    "log_inputs": RUN | {"split_files": ("dict",), "prepared_dir": TEXT, "md5": TEXT, "target": TEXT},
    "prepare_run_id": {"prepared_md5": TEXT},
    "model_run_id": {"model_file": TEXT, "dvc_experiment": MAYBE_TEXT},
    "record_test_metrics": {
        "experiment": TEXT,
        "model_run_id": TEXT,
        "metrics": ("dict",),
        "promote": MAYBE_TEXT,
    },
    "prepare_model_logging": {},
    "log_model": RUN
    | {"checkpoint": TEXT, "columns": ("list",), "example": ("DataFrame",), "metadata": ("dict",)},
    "register_model": {"name": TEXT, "model_uri": TEXT, "run_id": TEXT},
    "start_system_metrics": RUN | {"every_s": NUMBER},
    "stop_system_metrics": RUN,
    "render_figure": {"kind": TEXT, "table": ("DataFrame",), "image_format": TEXT},
}


def bind(method: str, args: tuple = (), kwargs: dict[str, Any] | None = None) -> dict[str, Any]:
    """The arguments of a call of `method` by name, checked against CALLS; TrackingStoreError
    for an unknown method, argument or type."""
    if method not in CALLS:
        raise TrackingStoreError(f"the store daemon has no call {method!r}")
    names = list(CALLS[method])
    if len(args) > len(names):
        raise TrackingStoreError(f"{method} takes {len(names)} arguments, not {len(args)}")
    bound = dict(zip(names, args, strict=False)) | (kwargs or {})
    for name, value in bound.items():
        kinds = CALLS[method].get(name)
        if kinds is None:
            raise TrackingStoreError(f"{method} has no argument {name!r}")
        if type(value).__name__ not in kinds and not (kinds == ("list",) and isinstance(value, tuple)):
            kind = type(value).__name__
            raise TrackingStoreError(f"{method}: {name} is a {kind}, not {' or '.join(kinds)}")
    return bound
