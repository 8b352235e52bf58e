"""The splits as MLflow datasets: the schema is the one MLflow infers from every row."""

from __future__ import annotations

import mlflow.data
import numpy as np
import pandas as pd
import pytest

from torchtrack.datasets import schema_rows, split_inputs


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


@pytest.mark.parametrize(
    "frame",
    [
        frame_with_gaps(),
        frame_with_gaps().assign(text=["a", None] * 250),  # a column of objects: every row is read
        frame_with_gaps().iloc[:0],
    ],
    ids=["gaps", "objects", "empty"],
)
def test_split_inputs_log_the_schema_and_profile_mlflow_infers_from_every_row(tmp_path, frame):
    (logged,) = split_inputs({"train": frame}, tmp_path, "abc.dir", "y")
    full = mlflow.data.from_pandas(frame, targets="y", name="prepared-train", digest="abc.dir")
    expected = full._to_mlflow_entity()
    assert (logged.dataset.schema, logged.dataset.profile) == (expected.schema, expected.profile)


def test_schema_rows_are_the_first_and_each_columns_first_gap():
    frame = frame_with_gaps()
    assert schema_rows(frame).index.tolist() == [0, 250, 400, 499]
    schema = mlflow.data.from_pandas(frame).schema
    assert [c.required for c in schema.inputs] == [True, False, False, False, True, True]  # gaps do matter
