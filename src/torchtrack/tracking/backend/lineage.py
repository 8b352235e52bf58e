"""Which MLflow run made a pipeline file, found by the content-hash tags of hashes.py.

A file restored from DVC's cache, or made again byte for byte, still leads to its run; a file
whose run is not in the store (a fresh clone, a cleaned store) is a one-line error saying how to
log it again.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from torchtrack.errors import DataError, RunNotFoundError
from torchtrack.tracking.backend.store import connect, every_experiment
from torchtrack.tracking.hashes import MODEL_TAG, MODEL_URI_TAG, PREPARED_TAG, RELOG, file_md5

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run


def find_prepare_run(prepared_md5: str, client: MlflowClient | None = None) -> str | None:
    """The id of the newest prepare run that made splits with this hash, or None."""
    # The train and model runs carry the same tag (the data they read): only prepare's run made them.
    query = f"tags.`{PREPARED_TAG}` = '{prepared_md5}' AND tags.`dvc.stage` = 'prepare'"
    runs = _newest_first(client or connect(), query)
    return runs[0].info.run_id if runs else None


def find_model_run(
    model_file: Path, client: MlflowClient | None = None, dvc_experiment: str | None = None
) -> Run:
    """The finished model run that made `model_file`; RunNotFoundError if the store has none.

    Byte-identical models may come from several runs (a forced rerun, two experiments with
    the same params): the one of the DVC experiment `dvc_experiment` (DVC_EXP_NAME), if any,
    else the newest.
    """
    model_file = Path(model_file)
    if not model_file.is_file():
        raise DataError(f"{model_file} not found: run the train stage first (dvc repro train)")
    md5 = file_md5(model_file)
    client = client or connect()
    runs = _newest_first(
        client,
        f"tags.`{MODEL_TAG}` = '{md5}' AND tags.`torchtrack.kind` = 'model' "
        "AND attributes.status = 'FINISHED'",
    )
    if not runs:
        raise RunNotFoundError(
            f"no MLflow run in {client.tracking_uri} made {model_file} (md5 {md5}): it came from DVC's cache "
            f"or the store was cleaned; `{RELOG}` logs it again"
        )
    mine = [run for run in runs if dvc_experiment and run.data.tags.get("dvc.exp_name") == dvc_experiment]
    return (mine or runs)[0]


def logged_model_uri(model_file: Path, client: MlflowClient | None = None) -> str:
    """The `models:/<id>` URI of the model that the run behind `model_file` (of this process's
    DVC experiment, if any) logged."""
    run = find_model_run(model_file, client, os.environ.get("DVC_EXP_NAME"))
    if MODEL_URI_TAG not in run.data.tags:
        raise RunNotFoundError(f"run {run.info.run_id} logged no model: `{RELOG}` logs it again")
    return run.data.tags[MODEL_URI_TAG]


def registered_model_uri(model_file: Path, client: MlflowClient | None = None) -> str:
    """`models:/<name>/<version>`, the registered version that holds the model behind
    `model_file` (named after its run's experiment), else `logged_model_uri`'s `models:/<id>`."""
    from torchtrack.tracking.backend.registry import version_of_run

    client = client or connect()
    run = find_model_run(model_file, client, os.environ.get("DVC_EXP_NAME"))
    name = client.get_experiment(run.info.experiment_id).name
    version = version_of_run(client, name, run.info.run_id)
    return f"models:/{name}/{version}" if version else logged_model_uri(model_file, client)


def _newest_first(client: MlflowClient, filter_string: str) -> list[Run]:
    return client.search_runs(
        every_experiment(client), filter_string, order_by=["attributes.start_time DESC"], max_results=100
    )
