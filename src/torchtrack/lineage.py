"""Which MLflow run made a pipeline file, found by the file's content hash.

No run id is written into a DVC output: a new id on every run would change the output's
hash and invalidate every stage after it. Instead the runs carry, as tags, the md5 that
dvc.lock records for what they made: prepare's run the hash of data/prepared, the model run
that of models/model.pt (and of the splits it was trained on). A file restored from DVC's
cache, or made again byte for byte, still leads to its run; a file whose run is not in the
store (a fresh clone, a cleaned store) is a one-line error saying how to log it again.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

from torchtrack.errors import DataError, RunNotFoundError
from torchtrack.store import connect, every_experiment, tracking_uri

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run

PREPARED_TAG = "torchtrack.prepared_md5"  # prepare's run and the model run: the splits' hash
MODEL_TAG = "torchtrack.model_md5"  # the model run: models/model.pt's hash
MODEL_URI_TAG = "torchtrack.model_uri"  # the model run: its logged model, models:/<id>
PREPARE_RUN_TAG = "torchtrack.prepare_run_id"  # the model run: the prepare run that made its splits
RELOG = "dvc repro -f train evaluate"  # what logs a model (and its test metrics) again


def file_md5(path: Path) -> str:
    """The md5 of a file's bytes, as dvc.lock records it."""
    digest = hashlib.md5()
    with Path(path).open("rb") as file:
        while chunk := file.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def directory_md5(path: Path) -> str:
    """A folder's hash as dvc.lock records it: the md5 of its sorted file listing, plus ".dir"."""
    path = Path(path)
    files = sorted((f.relative_to(path).as_posix(), f) for f in path.rglob("*") if f.is_file())
    listing = [{"md5": file_md5(f), "relpath": relpath} for relpath, f in files]
    return hashlib.md5(json.dumps(listing, sort_keys=True).encode()).hexdigest() + ".dir"


def find_prepare_run(prepared_md5: str, client: MlflowClient | None = None) -> str | None:
    """The id of the newest prepare run that made splits with this hash, or None."""
    # The train and model runs carry the same tag (the data they read): only prepare's run made them.
    query = f"tags.`{PREPARED_TAG}` = '{prepared_md5}' AND tags.`dvc.stage` = 'prepare'"
    runs = _newest_first(client or connect(), query)
    return runs[0].info.run_id if runs else None


def find_model_run(model_file: Path, client: MlflowClient | None = None) -> Run:
    """The finished model run that made `model_file`; RunNotFoundError if the store has none.

    Byte-identical models may come from several runs (a forced rerun, two experiments with
    the same params): the one of this DVC experiment, if any, else the newest.
    """
    model_file = Path(model_file)
    if not model_file.is_file():
        raise DataError(f"{model_file} not found: run the train stage first (dvc repro train)")
    md5 = file_md5(model_file)
    runs = _newest_first(
        client or connect(),
        f"tags.`{MODEL_TAG}` = '{md5}' AND tags.`torchtrack.kind` = 'model' "
        "AND attributes.status = 'FINISHED'",
    )
    if not runs:
        raise RunNotFoundError(
            f"no MLflow run in {tracking_uri()} made {model_file} (md5 {md5}): it came from DVC's cache "
            f"or the store was cleaned; `{RELOG}` logs it again"
        )
    experiment = os.environ.get("DVC_EXP_NAME")
    mine = [run for run in runs if experiment and run.data.tags.get("dvc.exp_name") == experiment]
    return (mine or runs)[0]


def prepare_run_id(prepared_md5: str) -> str | None:
    """`find_prepare_run` through the stage's way to the store, so that train need not import MLflow."""
    return _ask_store("prepare_run_id", prepared_md5)


def model_run_id(model_file: Path) -> str:
    """The id of `find_model_run`'s run, found through the stage's way to the store, so that
    evaluate need not import MLflow."""
    return _ask_store("model_run_id", str(model_file))


def _ask_store(method: str, *args: str) -> str | None:
    """RunStore.`method`(*args) through store_daemon.open_run_store."""
    from torchtrack.store_daemon import open_run_store

    store = open_run_store()
    try:
        return getattr(store, method)(*args)
    finally:
        store.close()


def logged_model_uri(model_file: Path, client: MlflowClient | None = None) -> str:
    """The `models:/<id>` URI of the model that the run behind `model_file` logged."""
    run = find_model_run(model_file, client)
    if MODEL_URI_TAG not in run.data.tags:
        raise RunNotFoundError(f"run {run.info.run_id} logged no model: `{RELOG}` logs it again")
    return run.data.tags[MODEL_URI_TAG]


def _newest_first(client: MlflowClient, filter_string: str) -> list[Run]:
    return client.search_runs(
        every_experiment(client), filter_string, order_by=["attributes.start_time DESC"], max_results=100
    )
