"""The MLflow tracking store: opening and probing it, and keeping it tidy.

`connect()` is how every command reaches the store: MLFLOW_TRACKING_URI if set, else the
SQLite file at the repository root (location.py). The cleanup of runs left RUNNING by dead
processes lives here too.
"""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

from torchtrack.errors import TrackingStoreError
from torchtrack.profiling import timed
from torchtrack.tracking.backend.login import check_login
from torchtrack.tracking.location import sqlite_creation_lock, tracking_uri
from torchtrack.tracking.processes import HOST_TAG, ProcessIdentity

if TYPE_CHECKING:
    from mlflow import MlflowClient


def connect(uri: str | None = None) -> MlflowClient:
    """A client for `uri` (default: `tracking_uri()`), after checking that a server answers."""
    uri = uri or tracking_uri()
    check_reachable(uri)
    return open_store(uri)


@timed("store open")
def open_store(uri: str) -> MlflowClient:
    """An MlflowClient for `uri`; a SQLite store is opened (and created) under a file lock.

    MLflow creates a new SQLite store's tables without a lock across processes, so two
    stages starting at once on a new store (queued experiments run in parallel) can fail
    with "duplicate column name". Once the tables exist, MLflow's busy timeout handles
    concurrent writers.
    """
    from mlflow import MlflowClient
    from sqlalchemy.exc import DBAPIError

    with sqlite_creation_lock(uri):
        try:
            return MlflowClient(uri)  # builds the store, cached for this process
        except DBAPIError as exc:
            if not uri.startswith("sqlite:") or not isinstance(exc.orig, sqlite3.Error):
                raise
            raise unusable_sqlite_store(uri, exc.orig) from exc


def unusable_sqlite_store(uri: str, error: sqlite3.Error) -> TrackingStoreError:
    """One line naming the SQLite file and SQLite's reason, instead of SQLAlchemy's traceback.

    The file is left as it is: a damaged store may still hold runs worth recovering.
    """
    path = uri.split(":///", 1)[-1]
    name = getattr(error, "sqlite_errorname", "sqlite")
    if name in ("SQLITE_CORRUPT", "SQLITE_NOTADB"):
        return TrackingStoreError(
            f"{path} is not a usable MLflow store: {error} ({name}). Move it aside to start a new store"
        )
    return TrackingStoreError(f"cannot open the MLflow store {path}: {error} ({name})")


@timed("store open")
def check_reachable(uri: str, timeout: float = 5.0) -> None:
    """Raise TrackingStoreError naming the address when an HTTP tracking server does not answer.

    MLflow's client retries a refused connection with growing back-off for minutes; this
    probe gives up within seconds. Any answer (an error status, a TLS failure) counts as
    reachable: MLflow's own requests report what is wrong with it, except a refused login
    (`login.check_login`), which ends the stage in one line before it creates a run.
    """
    if not uri.startswith(("http://", "https://")):
        return
    import requests

    parts = urlsplit(uri)
    address = urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, "", ""))  # no secrets
    try:
        requests.get(address, timeout=(timeout, 2 * timeout), allow_redirects=False)
    except requests.exceptions.SSLError:
        return
    except (requests.ConnectionError, requests.Timeout) as exc:
        raise TrackingStoreError(
            f"cannot reach the MLflow tracking server at {address} (MLFLOW_TRACKING_URI): "
            f"{type(exc).__name__}; start the server, or unset MLFLOW_TRACKING_URI to use the local store"
        ) from None
    check_login(address, timeout)


@timed("store open")
def experiment_id(client: MlflowClient, name: str, artifact_location: str | None = None) -> str:
    """The id of experiment `name`, created with `artifact_location` (None: the store's default)
    if it is new."""
    from mlflow.exceptions import MlflowException

    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    try:
        return client.create_experiment(name, artifact_location=artifact_location)
    except MlflowException:  # created meanwhile by a concurrent stage
        return client.get_experiment_by_name(name).experiment_id


def every_experiment(client: MlflowClient) -> list[str]:
    """The ids of every active experiment in the store."""
    ids, token = [], None
    while True:
        page = client.search_experiments(max_results=1000, page_token=token)
        ids.extend(e.experiment_id for e in page)
        token = page.token
        if not token:
            return ids


@timed("stale-run search")
def end_runs_of_gone_processes(client: MlflowClient, experiment: str, host: str, who: str) -> list[str]:
    """Mark KILLED the runs of `experiment` that a process of `host` left RUNNING and that is gone.

    A SIGKILLed stage cannot end its own runs; the next stage on the same host does, and
    returns a line per run, as `who`, for its stderr.
    """
    said = []
    runs = client.search_runs([experiment], f"attributes.status = 'RUNNING' AND tags.`{HOST_TAG}` = '{host}'")
    for run in runs:
        owner = ProcessIdentity.from_tags(run.data.tags)
        if owner is not None and owner.is_gone():
            client.set_terminated(run.info.run_id, "KILLED")
            said.append(
                f"{who}: run {run.info.run_id} ({run.info.run_name}) was left RUNNING "
                f"by process {owner.pid}, which is gone; marked KILLED"
            )
    return said
