"""Data sources that params select: synthetic families, any CSV, scikit-learn's diabetes table;
bad CSVs fail with a message naming the column; the CSV is a dependency of the pipeline."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from pipeline_copy import copy_repo, dvc, stages_run, update_params
from torchtrack.config import DataConfig
from torchtrack.data import Scaler, load_diabetes, load_source, read_truth, write_splits
from torchtrack.errors import DataError
from torchtrack.tabular import TabularDataset


def test_diabetes_is_a_real_multi_column_table():
    frame, target = load_diabetes()
    assert frame.shape == (442, 11) and target == "target" and frame.columns[-1] == "target"
    assert all(pd.api.types.is_float_dtype(frame[c]) for c in frame.columns)
    assert not frame.isna().any().any()


def test_load_source_selects_diabetes():
    frame, target, truth = load_source(DataConfig(source="diabetes"), seed=0)
    assert len(frame) == 442 and target == "target" and truth is None


@pytest.mark.parametrize("family", ["line", "nonlinear", "scaled_tanh"])
def test_load_source_passes_the_family_and_its_parameters(family):
    config = DataConfig(family=family, n_samples=40, n_features=3, scaled_tanh_a=3.0, scaled_tanh_b=-1.0)
    frame, target, truth = load_source(config, seed=0)
    assert target == "y" and len(frame) == 40 and truth.family == family
    if family == "scaled_tanh":
        assert (truth.scaled_tanh_a, truth.scaled_tanh_b) == (3.0, -1.0)


def test_load_source_reads_a_csv(tmp_path):
    path = tmp_path / "rows.csv"
    pd.DataFrame({"a": [1.0, 2.0, 3.0], "b": [0, 1, 0], "price": [9.5, 8.0, 7.5]}).to_csv(path, index=False)
    frame, target, truth = load_source(DataConfig(source="csv", path=str(path), target="a"), seed=0)
    assert target == "a" and truth is None and frame.shape == (3, 3)


def test_csv_dataset_takes_just_a_path(tmp_path):
    path = tmp_path / "rows.csv"
    pd.DataFrame({"x1": [1, 2], "x2": [0.5, 0.25], "y": [3.0, 4.0]}).to_csv(path, index=False)
    dataset = TabularDataset(path)
    X, y = dataset[1]
    assert dataset.target == "y" and dataset.features == ["x1", "x2"]
    assert X.dtype == y.dtype == torch.float32
    torch.testing.assert_close(X, torch.tensor([2.0, 0.25]))


def write(tmp_path, frame):
    path = tmp_path / "rows.csv"
    frame.to_csv(path, index=False)
    return path


def test_csv_target_that_does_not_exist_is_named(tmp_path):
    path = write(tmp_path, pd.DataFrame({"a": [1.0], "b": [2.0]}))
    with pytest.raises(DataError, match="target column 'price' not found; columns are: a, b"):
        TabularDataset(path, target="price")


def test_a_dataset_of_raw_csv_rows_names_a_text_column_and_gaps(tmp_path):
    path = write(tmp_path, pd.DataFrame({"a": [1.0, 2.0], "city": ["Oslo", "Pune"], "y": [1.0, 2.0]}))
    with pytest.raises(DataError, match="column 'city' is not numeric"):
        TabularDataset(path)
    path = write(tmp_path, pd.DataFrame({"a": [1.0, None, None], "y": [1.0, 2.0, 3.0]}))
    with pytest.raises(DataError, match="column 'a' has 2 missing or infinite value"):
        TabularDataset(path)


def test_write_splits_keeps_the_truth_only_for_synthetic_splits(tmp_path):
    frame, target, truth = load_source(DataConfig(n_samples=30, n_features=2), seed=0)
    scaler = Scaler.fit(frame, target)
    write_splits({"train": scaler.transform(frame)}, scaler, tmp_path, truth)
    assert read_truth(tmp_path) == truth
    write_splits({"train": scaler.transform(frame)}, scaler, tmp_path)  # e.g. a CSV source next
    assert read_truth(tmp_path) is None


def test_diabetes_features_scale_like_any_table():
    frame, target = load_diabetes()
    scaled = Scaler.fit(frame, target).transform(frame)
    np.testing.assert_allclose(scaled.drop(columns=target).std(ddof=0), 1.0, rtol=1e-4)


@pytest.mark.slow
def test_editing_the_csv_that_data_path_names_reruns_prepare_train_and_evaluate(tmp_path):
    repo = copy_repo(tmp_path)
    csv = repo / "data" / "raw" / "mine.csv"
    shutil.copy(repo / "data" / "raw" / "example.csv", csv)
    update_params(repo, data={"source": "csv", "path": "data/raw/mine.csv"}, train={"epochs": 2})
    assert stages_run(dvc(repo, "repro")) == ["validate", "prepare", "train", "evaluate"]
    before = json.loads((repo / "metrics" / "prepare.json").read_text())
    rows = pd.read_csv(csv)
    rows[rows.columns[-1]] *= 10  # the target, ten times larger
    rows.to_csv(csv, index=False)
    status = yaml.safe_load(dvc(repo, "status", "--json"))
    assert status["prepare"] == [{"changed deps": {"data/raw/mine.csv": "modified"}}], status
    assert stages_run(dvc(repo, "repro")) == ["prepare", "train", "evaluate"]
    after = json.loads((repo / "metrics" / "prepare.json").read_text())
    assert after["target_std_train"] == pytest.approx(10 * before["target_std_train"], rel=1e-3)
