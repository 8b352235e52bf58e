"""Content hashes and the tags that carry them: how a run is tied to the files it made.

No run id is written into a DVC output: a new id on every run would change the output's
hash and invalidate every stage after it. Instead the runs carry, as tags, the md5 that
dvc.lock records for what they made: prepare's run the hash of data/prepared, the model run
that of models/model.pt (and of the splits it was trained on). backend/lineage.py finds a
run by these tags. Plain files and strings, no MLflow.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

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
