"""The splits as MLflow datasets: the schema is the one MLflow infers from every row."""

from __future__ import annotations

import mlflow
import mlflow.data
import numpy as np
import pandas as pd
import pytest
from mlflow.exceptions import MlflowException

from torchtrack.tracking.backend import datasets
from torchtrack.tracking.backend.datasets import schema_rows, split_inputs
from torchtrack.tracking.backend.run_store import RunStore


def frame_with_gaps() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "whole": rng.standard_normal(500),
            "late_gap": rng.standard_normal(500).astype(np.float32),
            "counts": pd.array(rng.integers(0, 9, 500), dtype="Int64"),
            "when": pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 99, 500), unit="D"),
            "flag": rng.random(500) > 0.5,
            "y": rng.standard_normal(500),
        }
    )
    frame.loc[400, "late_gap"] = np.nan
    frame.loc[250, "counts"] = pd.NA
    frame.loc[499, "when"] = pd.NaT
    return frame


@pytest.mark.parametrize("block_rows", [65_536, 64])  # one block, or gaps in later blocks only
@pytest.mark.parametrize(
    "frame",
    [
        frame_with_gaps(),
        frame_with_gaps().assign(text=["a", None] * 250),  # a column of objects: every row is read
        frame_with_gaps().iloc[:0],
    ],
    ids=["gaps", "objects", "empty"],
)
def test_split_inputs_log_the_schema_and_profile_mlflow_infers_from_every_row(
    tmp_path, monkeypatch, frame, block_rows
):
    monkeypatch.setattr(datasets, "BLOCK_ROWS", block_rows)
    path = tmp_path / "train.parquet"
    frame.to_parquet(path, index=False)
    (logged,) = split_inputs({"train": path}, tmp_path, "abc.dir", "y")
    whole = pd.read_parquet(path)  # what MLflow would infer from
    expected = mlflow.data.from_pandas(whole, targets="y", digest="abc.dir")._to_mlflow_entity()
    assert (logged.dataset.schema, logged.dataset.profile) == (expected.schema, expected.profile)
    assert (logged.dataset.name, logged.dataset.digest) == ("prepared-train", "abc.dir")


def test_schema_rows_are_the_first_and_each_columns_first_gap():
    frame = frame_with_gaps()
    assert schema_rows(frame).index.tolist() == [0, 250, 400, 499]
    schema = mlflow.data.from_pandas(frame).schema
    assert [c.required for c in schema.inputs] == [True, False, False, False, True, True]  # gaps do matter


class RacedClient(mlflow.MlflowClient):
    """A real client whose first log_inputs is refused as a concurrent stage's duplicate insert
    would be (that race cannot be timed in a test), here with PostgreSQL's words via a server."""

    def __init__(self, uri: str, refusal: str):
        super().__init__(uri)
        self.refusal, self.calls = refusal, 0

    def log_inputs(self, run_id, datasets=None, models=None):  # noqa: ANN001
        self.calls += 1
        if self.calls == 1:
            raise MlflowException(self.refusal)
        super().log_inputs(run_id, datasets=datasets, models=models)


def split_parquet(folder) -> str:  # noqa: ANN001
    """frame_with_gaps() as a split's Parquet file (what a stage sends the store), its absolute path."""
    path = folder / "train.parquet"
    frame_with_gaps().to_parquet(path, index=False)
    return str(path)


DUPLICATE = (
    "BAD_REQUEST: (psycopg.errors.UniqueViolation) "
    'duplicate key value violates unique constraint "dataset_pk"'
)


def test_splits_refused_as_a_concurrent_duplicate_are_logged_on_a_second_try(tmp_path):
    client = RacedClient(f"sqlite:///{tmp_path / 'mlflow.db'}", DUPLICATE)
    run_id = client.create_run(client.create_experiment("e")).info.run_id
    RunStore(client).log_inputs(run_id, {"train": split_parquet(tmp_path)}, str(tmp_path), "abc.dir", "y")
    assert client.calls == 2
    assert [d.dataset.name for d in client.get_run(run_id).inputs.dataset_inputs] == ["prepared-train"]


def test_any_other_refusal_of_the_splits_is_raised(tmp_path):
    client = RacedClient(f"sqlite:///{tmp_path / 'mlflow.db'}", "BAD_REQUEST: run is not active")
    run_id = client.create_run(client.create_experiment("e")).info.run_id
    with pytest.raises(MlflowException, match="run is not active"):
        RunStore(client).log_inputs(run_id, {"train": split_parquet(tmp_path)}, str(tmp_path), "abc.dir", "y")
    assert client.calls == 1
