"""data.split_key: each row's split drawn from a seeded hash of its value in a key column the
user names (a customer, a patient, a site), so the rows of one key go to one split and a row
keeps its split as the table grows; the key is not a feature. Unit tests, then the prepare
stage on a user's CSV."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import yaml
from mlflow import MlflowClient

from helpers import isolated_env
from real_tables import write_table
from torchtrack import data
from torchtrack.config import DataConfig
from torchtrack.data import key_draws, key_split_indices, load_table, split_positions
from torchtrack.errors import DataError
from torchtrack.preprocessing import Preprocessor


def users(n_rows: int, n_users: int, seed: int = 0) -> pd.Series:
    return pd.Series(np.random.default_rng(seed).integers(0, n_users, n_rows), name="user")


def split_of_each_row(splits: dict[str, np.ndarray], n_rows: int) -> np.ndarray:
    where = np.full(n_rows, "", dtype=object)
    for name, rows in splits.items():
        where[rows] = name
    return where


def test_a_key_s_rows_all_go_to_one_split_and_every_row_to_one():
    keys = users(20_000, 500)
    splits = key_split_indices(keys, 0.15, 0.15, seed=3)
    rows = np.concatenate(list(splits.values()))
    assert sorted(rows.tolist()) == list(range(len(keys)))
    for name, part in splits.items():
        assert part.dtype == np.int32 and np.all(np.diff(part) > 0), name
    per_key = pd.Series(split_of_each_row(splits, len(keys))).groupby(keys.to_numpy()).nunique()
    assert (per_key == 1).all()


def test_a_row_keeps_its_split_when_rows_are_added_removed_or_reordered():
    table = pd.DataFrame({"user": users(5_000, 300), "x": np.arange(5_000.0)})
    before = split_of_each_row(key_split_indices(table["user"], 0.2, 0.1, seed=1), len(table))
    grown = pd.concat([table.iloc[::-1], pd.DataFrame({"user": users(2_000, 900, seed=5), "x": -1.0})])
    grown = grown[grown["x"] % 7 != 0].reset_index(drop=True)  # some old rows removed too
    after = split_of_each_row(key_split_indices(grown["user"], 0.2, 0.1, seed=1), len(grown))
    old = grown["x"].to_numpy() >= 0
    np.testing.assert_array_equal(after[old], before[grown["x"].to_numpy()[old].astype(int)])


def test_the_splits_are_about_the_fractions():
    splits = key_split_indices(pd.Series(np.arange(100_000), name="id"), 0.2, 0.1, seed=0)
    for name, share in (("test", 0.1), ("val", 0.2), ("train", 0.7)):
        sigma = (100_000 * share * (1 - share)) ** 0.5
        assert abs(len(splits[name]) - 100_000 * share) < 5 * sigma, (name, len(splits[name]))


def test_the_seed_draws_the_keys_anew():
    keys = pd.Series(np.arange(1_000), name="id")
    assert not np.array_equal(key_draws(keys, 1), key_draws(keys, 2))


def test_a_whole_number_is_one_key_whatever_its_column_s_type():
    """A column of ids read as floats (it has a gap somewhere) splits as the integers do."""
    as_int = key_draws(pd.Series([7, 0, -3, 2**40]), 42)
    as_float = key_draws(pd.Series([7.0, -0.0, -3.0, 2.0**40]), 42)
    np.testing.assert_array_equal(as_int, as_float)
    assert key_draws(pd.Series([7.5]), 42)[0] != key_draws(pd.Series([7]), 42)[0]


def test_the_draws_are_pinned():
    """Integer arithmetic and an exact conversion: these figures on every CPU, so a key's split
    stays where it was (a change here moves every split by a key)."""
    assert key_draws(pd.Series([0, 1, 2**40, -5]), 42).tolist() == [
        0.8006564021331005,
        0.853977872406269,
        0.17571619319779663,
        0.9939825264295322,
    ]
    assert key_draws(pd.Series(["a", "Zürich", ""]), 42).tolist() == [
        0.03649137278058934,
        0.0234699258579798,
        0.728478235616619,
    ]


def test_text_and_date_keys_split_by_value():
    text = pd.Series(["north", "south", "north", "east"] * 50, name="site")
    where = split_of_each_row(key_split_indices(text, 0.3, 0.3, seed=0), len(text))
    assert pd.Series(where).groupby(text.to_numpy()).nunique().eq(1).all()
    days = pd.Series(pd.to_datetime(["2024-01-01", "2024-01-02"]).repeat(3))
    np.testing.assert_array_equal(key_draws(days, 0)[:3], key_draws(days, 0)[0])


def test_a_table_longer_than_a_row_group_is_drawn_in_pieces_alike(monkeypatch):
    keys = users(1_000, 40)
    whole = key_split_indices(keys, 0.15, 0.15, seed=9)
    monkeypatch.setattr(data, "SPLIT_ROW_GROUP", 7)
    for name, rows in key_split_indices(keys, 0.15, 0.15, seed=9).items():
        np.testing.assert_array_equal(rows, whole[name])


def test_a_row_without_a_key_is_named():
    keys = pd.Series([1.0, 2.0, np.nan, 4.0, np.nan], index=[10, 11, 12, 13, 14], name="user")
    said = r"^data.split_key 'user': 2 row\(s\) have no value, the first row 13; fill"
    with pytest.raises(DataError, match=said):
        key_split_indices(keys, 0.2, 0.2, seed=0)


def test_too_few_keys_name_the_split_left_empty():
    keys = pd.Series(["a", "b"] * 10, name="site")
    said = r"data.split_key 'site': its 2 distinct value\(s\) leave the \w+ split"
    with pytest.raises(DataError, match=said):
        key_split_indices(keys, 0.2, 0.2, seed=0)


def test_split_positions_names_a_column_the_table_lacks_and_refuses_the_target():
    frame = pd.DataFrame({"user": [1, 2, 3], "x": [0.1, 0.2, 0.3], "y": [1.0, 2.0, 3.0]})
    said = "data.split_key names 'users', not a column of the table; columns are: user, x, y"
    with pytest.raises(DataError, match=said):
        split_positions(frame, "y", DataConfig(split_key="users"), seed=0)
    with pytest.raises(DataError, match="data.split_key 'y' is the target"):
        split_positions(frame, "y", DataConfig(split_key="y"), seed=0)
    # no key: split_indices
    permutation = split_positions(frame.iloc[[0, 1, 2] * 4], "y", DataConfig(), seed=0)
    assert sum(map(len, permutation.values())) == 12


def test_the_key_is_no_feature():
    frame = pd.DataFrame({"user": [1, 1, 2, 2, 3], "x": [0.1, 0.2, 0.3, 0.4, 0.5], "y": [1.0, 2, 3, 4, 5]})
    preprocessor = Preprocessor.fit(frame, "y", DataConfig(split_key="user"))
    assert preprocessor.features == ["x"]
    user = preprocessor.roles()["user"]
    assert (user["role"], user["why"]) == ("dropped", "data.split_key: the rows are split by it")
    with pytest.raises(DataError, match=r"data.split_key 'user' is named in data.categorical too"):
        Preprocessor.fit(frame, "y", DataConfig(split_key="user", categorical=("user",)))


@pytest.mark.slow
def test_prepare_splits_a_users_csv_by_its_key(tmp_path):
    """The prepare stage, a real process on a user's CSV (real_tables.shop: 30 stores), with
    data.split_key: store: the split sizes are the key split's, the key is noted as not used,
    and the run's params say how the rows were split."""
    table, target = write_table("shop", tmp_path)
    params = {"data": {"source": "csv", "path": str(table), "target": target, "split_key": "store"}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    result = subprocess.run(
        [sys.executable, "-m", "torchtrack", "prepare"],
        cwd=tmp_path,
        env=isolated_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "column 'store' not used: data.split_key: the rows are split by it" in result.stderr
    frame, _ = load_table(table, target)
    want = key_split_indices(frame["store"], 0.15, 0.15, seed=42)
    metrics = json.loads((tmp_path / "metrics" / "prepare.json").read_text())
    assert {name: metrics[f"rows_{name}"] for name in want} == {name: len(want[name]) for name in want}
    columns = json.loads((tmp_path / "data" / "prepared" / "columns.json").read_text())
    assert columns["store"]["role"] == "dropped"
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("torchtrack-prepare")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.data.params["data.split_key"] == "store"
