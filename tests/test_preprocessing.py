"""preprocessing: column roles inferred on the train split (or named in params.yaml), gaps
filled with train statistics and marked, categories one-hot with unseen ones as other,
feature and target scaling, all saved as JSON and applied alike to every split."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from torchtrack.config import DataConfig, config_from_dict
from torchtrack.data import StoredRows, split_indices, split_rows
from torchtrack.errors import ConfigError, DataError
from torchtrack.preprocessing import MISSING, OTHER, Preprocessor, drop_missing_target, scales_target
from torchtrack.tables import ColumnFile

CSV = DataConfig(source="csv")


def table(n: int = 40) -> pd.DataFrame:
    """Every kind of column: numbers, text categories, true/false, dates, a name per row, an id."""
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "id": np.arange(n) + 100,
            "size": rng.normal(10, 2, n),
            "colour": rng.choice(["red", "blue", "green"], n),
            "sold": pd.date_range("2020-01-01", periods=n, freq="7D").strftime("%Y-%m-%d"),
            "new": rng.random(n) < 0.5,
            "name": [f"item {i}" for i in range(n)],
            "y": rng.normal(100, 20, n),
        }
    )


def roles(preprocessor: Preprocessor) -> dict[str, str]:
    return {c.name: c.role for c in preprocessor.columns}


def test_roles_are_inferred_from_the_values():
    fitted = Preprocessor.fit(table(), "y", CSV)
    assert roles(fitted) == {
        "id": "dropped",
        "size": "numeric",
        "colour": "categorical",
        "sold": "date",
        "new": "categorical",
        "name": "dropped",
    }
    assert set(fitted.features) == {
        "size",
        *(f"colour={c}" for c in ("red", "blue", "green")),
        *(f"sold.{part}" for part in ("year", "month", "dayofyear")),
        "new=False",
        "new=True",
    }
    assert "distinct values in 40 rows" in next(c.reason for c in fitted.columns if c.name == "name")


def test_params_override_each_role():
    frame = table().assign(grade=np.tile([1, 2, 3, 4], 10))
    config = DataConfig(source="csv", categorical=("grade",), drop=("size",), dates=(), numeric=("id",))
    fitted = Preprocessor.fit(frame, "y", config)
    assert roles(fitted)["grade"] == "categorical" and roles(fitted)["size"] == "dropped"
    assert roles(fitted)["id"] == "numeric"
    assert [f for f in fitted.features if f.startswith("grade=")] == [f"grade={g}" for g in (1, 2, 3, 4)]
    dropped_dates = Preprocessor.fit(frame, "y", DataConfig(source="csv", date_features="drop"))
    assert roles(dropped_dates)["sold"] == "dropped"


def test_a_column_named_twice_or_absent_is_refused():
    with pytest.raises(ConfigError, match="column 'a' is in both data.categorical and data.drop"):
        config_from_dict({"data": {"categorical": ["a"], "drop": ["a"]}})
    with pytest.raises(ConfigError, match="the target 'y' cannot be in data.drop"):
        config_from_dict({"data": {"target": "y", "drop": ["y"]}})
    with pytest.raises(ConfigError, match="data.drop must be a list of column names"):
        config_from_dict({"data": {"drop": "a"}})
    with pytest.raises(DataError, match="data.drop names 'colour2', not a feature column"):
        Preprocessor.fit(table(), "y", DataConfig(source="csv", drop=("colour2",)))


def test_gaps_are_filled_with_train_statistics_and_marked():
    train = table().astype({"size": float})
    train.loc[[1, 2], "size"] = np.nan
    train.loc[[3], "colour"] = None
    fitted = Preprocessor.fit(train, "y", DataConfig(source="csv", scale=False))
    assert f"size={MISSING}" in fitted.features and f"colour={MISSING}" in fitted.features
    assert "sold" + "=" + MISSING not in fitted.features  # no gap in train: no indicator
    other = table(4).assign(size=[np.nan, 1.0, 2.0, 3.0], colour=[None, "red", "red", "red"])
    other.loc[0, "sold"] = None
    out = fitted.transform(other)
    assert out.loc[0, "size"] == pytest.approx(np.nanmedian(train["size"]))
    assert out.loc[0, f"size={MISSING}"] == 1 and out.loc[1, f"size={MISSING}"] == 0
    most_frequent = train["colour"].value_counts().index[0]
    assert out.loc[0, f"colour={most_frequent}"] == 1 and out.loc[0, f"colour={MISSING}"] == 1
    assert out.loc[0, "sold.year"] == np.median(pd.to_datetime(train["sold"]).dt.year)
    assert np.isfinite(out.to_numpy()).all()


def test_an_unseen_category_counts_as_other():
    frame = table(60).assign(shop=[f"s{i % 6}" for i in range(60)])
    few = Preprocessor.fit(frame, "y", DataConfig(source="csv", scale=False, max_categories=4))
    assert [f for f in few.features if f.startswith("shop=")] == [f"shop=s{i}" for i in range(4)] + [
        f"shop={OTHER}"
    ]
    out = few.transform(frame.head(2).assign(shop=["s5", "never seen"]))
    assert out[f"shop={OTHER}"].tolist() == [1, 1]
    all_kept = Preprocessor.fit(frame, "y", DataConfig(source="csv", scale=False))
    unseen = all_kept.transform(frame.head(1).assign(shop=["never seen"]))
    assert unseen[[f for f in all_kept.features if f.startswith("shop=")]].to_numpy().sum() == 0


def test_a_category_is_the_same_whether_written_as_a_number_text_or_with_spaces():
    frame = pd.DataFrame({"grade": [1, 2, 1, 2], "y": [1.0, 2.0, 3.0, 4.0]})
    fitted = Preprocessor.fit(frame, "y", DataConfig(source="csv", categorical=("grade",), scale=False))
    out = fitted.transform(pd.DataFrame({"grade": [1.0, " 2", "1"]}))
    assert out["grade=1"].tolist() == [1, 0, 1] and out["grade=2"].tolist() == [0, 1, 0]


def test_fitted_on_train_only_and_applied_to_other_splits_with_its_statistics():
    frame = table(60)
    fitted = Preprocessor.fit(frame.iloc[:40], "y", CSV)
    train = fitted.transform(frame.iloc[:40])
    np.testing.assert_allclose(train["size"].mean(), 0, atol=1e-6)
    shifted = fitted.transform(frame.iloc[40:].assign(size=frame["size"].iloc[40:] + 100))
    assert shifted["size"].mean() > 10  # train's mean and std, not the split's own


def test_saved_as_json_and_loaded_back_it_transforms_alike(tmp_path):
    frame = table()
    fitted = Preprocessor.fit(frame, "y", CSV)
    fitted.save(tmp_path / "preprocessing.json")
    json.loads((tmp_path / "preprocessing.json").read_text())  # plain JSON: nothing to unpickle
    loaded = Preprocessor.load(tmp_path / "preprocessing.json")
    assert loaded == fitted
    pd.testing.assert_frame_equal(loaded.transform(frame), fitted.transform(frame))


def test_consuming_its_rows_transforms_alike_and_lets_each_column_read_go():
    frame = table()
    fitted = Preprocessor.fit(frame, "y", CSV)
    consumed = frame.copy()
    pd.testing.assert_frame_equal(fitted.transform(consumed, consume=True), fitted.transform(frame))
    assert list(consumed.columns) == [c.name for c in fitted.columns if c.role == "dropped"]  # never read


@pytest.mark.parametrize("target_on_disk", [False, True])
def test_rows_kept_on_disk_are_fitted_and_transformed_as_the_same_rows_in_memory(tmp_path, target_on_disk):
    rng = np.random.default_rng(3)
    frame = pd.DataFrame({"a": rng.normal(5, 2, 500), "b": rng.normal(0, 1, 500), "y": rng.normal(0, 1, 500)})
    frame.loc[[3, 77, 200], "y"] = np.nan  # rows without a target: left out alike
    on_disk = ("a", "b", "y") if target_on_disk else ("a", "b")
    files = [ColumnFile(tmp_path / f"{name}.arrow") for name in on_disk]  # a file a column
    for start in range(0, 500, 64):
        for file, name in zip(files, on_disk, strict=True):
            file.append({name: frame[name].to_numpy()[start : start + 64]})
    stored = StoredRows(files, frame[[c for c in frame.columns if c not in on_disk]].copy())
    kept, dropped = drop_missing_target(frame, "y")
    stored_kept, stored_dropped = drop_missing_target(stored, "y")
    assert dropped == stored_dropped == 3
    indices = split_indices(len(kept), 0.2, 0.2, seed=0)
    want, got = split_rows(kept, indices), split_rows(stored_kept, indices)
    fitted = Preprocessor.fit(want["train"], "y", CSV)
    assert Preprocessor.fit(got["train"], "y", CSV) == fitted
    for name in indices:
        expected = fitted.transform(want[name], consume=True)
        pd.testing.assert_frame_equal(fitted.transform(got[name], consume=True), expected, check_exact=True)
        assert got[name].columns == []


@pytest.mark.parametrize(("source", "scaled"), [("csv", True), ("diabetes", True), ("synthetic", False)])
def test_auto_standardizes_the_target_but_for_synthetic_data(source, scaled):
    assert scales_target(DataConfig(source=source)) is scaled
    assert scales_target(DataConfig(source=source, scale_target="none")) is False
    assert scales_target(DataConfig(source=source, scale_target="standardize")) is True


def test_the_standardized_target_maps_back_to_its_units():
    frame = table()
    fitted = Preprocessor.fit(frame, "y", CSV)
    scaled = fitted.transform(frame)["y"].to_numpy()
    assert abs(scaled.mean()) < 1e-6 and scaled.std() == pytest.approx(1, rel=1e-5)
    np.testing.assert_allclose(fitted.target_values(scaled), frame["y"], rtol=1e-6)
    unscaled = Preprocessor.fit(frame, "y", DataConfig(source="synthetic"))
    np.testing.assert_array_equal(unscaled.transform(frame)["y"], frame["y"].astype(np.float32))


def test_rows_without_a_target_are_dropped_and_counted():
    frame = table(10).astype({"y": object})
    frame.loc[[2, 5], "y"] = None
    kept, dropped = drop_missing_target(frame, "y")
    assert dropped == 2 and list(kept.index) == [0, 1, 3, 4, 6, 7, 8, 9]


@pytest.mark.parametrize(
    ("column", "values", "message"),
    [
        ("y", [None] * 4, "target column 'y' has no values"),
        ("y", [1.0, "lots", 2.0, 3.0], "target column 'y', row 2: 'lots' is not a number"),
        ("y", [True, False, True, True], "target column 'y' holds true/false values"),
    ],
)
def test_a_target_that_is_missing_or_not_numeric_is_named(column, values, message):
    frame = pd.DataFrame({"a": [1.0, 2.0, 3.0, 4.0], column: values})
    with pytest.raises(DataError, match=message):
        drop_missing_target(frame, column)


def test_a_value_that_cannot_be_used_names_its_column_and_row():
    frame = pd.DataFrame({"size": [str(v) for v in range(20)], "y": np.arange(20.0)})
    frame.loc[13, "size"] = "12,5"
    with pytest.raises(DataError, match=r"column 'size', row 14: '12,5' is not a number"):
        Preprocessor.fit(frame, "y", CSV)
    fitted = Preprocessor.fit(table(), "y", CSV)
    with pytest.raises(DataError, match=r"column 'sold', row 2: 'soon' is not a date"):
        fitted.transform(table(3).assign(sold=["2020-01-01", "soon", None]))


def test_a_table_with_no_usable_feature_left_is_named():
    frame = pd.DataFrame({"name": [f"n{i}" for i in range(30)], "empty": [np.nan] * 30, "y": np.arange(30.0)})
    with pytest.raises(
        DataError, match=r"no usable feature column left \(name: an identifier.*empty: no values"
    ):
        Preprocessor.fit(frame, "y", CSV)


def test_a_column_without_values_in_train_is_dropped_even_when_named():
    frame = table().assign(empty=np.nan)
    fitted = Preprocessor.fit(frame, "y", DataConfig(source="csv", numeric=("empty",)))
    assert roles(fitted)["empty"] == "dropped"
    assert np.isfinite(fitted.transform(frame.assign(empty=1.0)).to_numpy()).all()


def test_a_column_of_blank_text_only_is_dropped_as_one_without_values():
    # Spaces and a form feed are blank cells, as an empty one is: nothing to fill gaps with.
    frame = table().assign(blank=[" ", "\x0c", "\t", ""] * 10)
    fitted = Preprocessor.fit(frame, "y", CSV)
    assert roles(fitted)["blank"] == "dropped"
    assert fitted.columns[-1].reason == "no values in the train split"
    assert np.isfinite(fitted.transform(frame).to_numpy()).all()
