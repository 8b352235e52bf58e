"""data.py: seeded synthetic rows, CSV loading with clear errors, splits, train-only scaling, Dataset."""

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from torch.utils.data import DataLoader

from real_tables import write_messy, write_table
from torchtrack import portable, tabular
from torchtrack.config import DataConfig
from torchtrack.data import (
    SYNTHETIC_TARGET,
    Scaler,
    StoredRows,
    load_source,
    load_table,
    make_synthetic,
    read_split,
    split_indices,
    split_rows,
    store_table,
    write_split,
    write_splits,
)
from torchtrack.errors import DataError
from torchtrack.preprocessing import Preprocessor, drop_missing_target
from torchtrack.tabular import ParquetRows, TabularDataset, open_split


def small_frame(n_rows: int = 12) -> pd.DataFrame:
    """Two features on different scales and a target, all numeric."""
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "a": rng.normal(10.0, 3.0, n_rows),
            "b": rng.normal(-2.0, 0.5, n_rows),
            "target": rng.normal(0.0, 1.0, n_rows),
        }
    )


# make_synthetic


def test_make_synthetic_same_seed_gives_identical_frame():
    first, first_truth = make_synthetic(200, 3, 0.3, seed=5)
    second, second_truth = make_synthetic(200, 3, 0.3, seed=5)
    pd.testing.assert_frame_equal(first, second)
    assert first_truth == second_truth


def test_make_synthetic_different_seed_gives_different_frame():
    first, _ = make_synthetic(200, 3, 0.3, seed=5)
    second, _ = make_synthetic(200, 3, 0.3, seed=6)
    assert not np.allclose(first.to_numpy(), second.to_numpy())


def test_make_synthetic_has_features_then_target():
    frame, _ = make_synthetic(50, 4, 0.3, seed=0)
    assert list(frame.columns) == ["x0", "x1", "x2", "x3", SYNTHETIC_TARGET]
    assert frame.shape == (50, 5)


@pytest.mark.parametrize("noise_std", [0.0, 0.3, 1.0])
def test_make_synthetic_noise_has_stated_std(noise_std):
    frame, truth = make_synthetic(20000, 4, noise_std, seed=1)
    X = frame.drop(columns=SYNTHETIC_TARGET).to_numpy()
    residual = frame[SYNTHETIC_TARGET].to_numpy() - truth.clean_target(X)
    assert truth.noise_std == noise_std
    assert residual.std() == pytest.approx(noise_std, rel=0.05, abs=1e-9)
    assert abs(residual.mean()) < 0.03  # zero-mean noise: 0.03 is over 4 standard errors at std 1


# split_indices


def test_split_indices_is_deterministic():
    first = split_indices(1000, 0.15, 0.15, seed=3)
    second = split_indices(1000, 0.15, 0.15, seed=3)
    for name in ("train", "val", "test"):
        np.testing.assert_array_equal(first[name], second[name])


@pytest.mark.parametrize("n_rows", [4, 1000, 65_537, 1_000_003])
def test_split_indices_cut_the_seeded_permutation_and_hold_it_as_int32(n_rows):
    """The splits of a generator's `permutation(n_rows)`, each sorted, as 4-byte row numbers."""
    order = np.random.default_rng(7).permutation(n_rows)
    n_test, n_val = max(1, round(n_rows * 0.1)), max(1, round(n_rows * 0.2))
    want = {"test": order[:n_test], "val": order[n_test : n_test + n_val], "train": order[n_test + n_val :]}
    got = split_indices(n_rows, 0.2, 0.1, seed=7)
    assert list(got) == list(want)
    for name, rows in got.items():
        assert rows.dtype == np.int32
        np.testing.assert_array_equal(rows, np.sort(want[name]))


def test_split_indices_depends_on_seed():
    assert not np.array_equal(
        split_indices(1000, 0.15, 0.15, 3)["test"], split_indices(1000, 0.15, 0.15, 4)["test"]
    )


def test_split_indices_are_disjoint_and_cover_every_row():
    splits = split_indices(1000, 0.2, 0.1, seed=0)
    train, val, test = (set(splits[name].tolist()) for name in ("train", "val", "test"))
    assert not train & val and not train & test and not val & test
    assert train | val | test == set(range(1000))


@pytest.mark.parametrize(
    ("n_rows", "val_fraction", "test_fraction", "sizes"),
    [
        (1000, 0.15, 0.15, (700, 150, 150)),
        (1000, 0.2, 0.1, (700, 200, 100)),
        (10, 0.01, 0.01, (8, 1, 1)),  # every split keeps at least one row
    ],
)
def test_split_sizes_follow_fractions(n_rows, val_fraction, test_fraction, sizes):
    splits = split_indices(n_rows, val_fraction, test_fraction, seed=0)
    assert (len(splits["train"]), len(splits["val"]), len(splits["test"])) == sizes


def test_split_indices_rejects_too_few_rows():
    with pytest.raises(DataError, match="too few"):
        split_indices(2, 0.15, 0.15, seed=0)


# Scaler


def test_scaler_standardises_train_features_and_keeps_target():
    frame = small_frame(200)
    scaler = Scaler.fit(frame, "target")
    scaled = scaler.transform(frame)
    assert scaler.features == ["a", "b"]
    assert list(scaled.columns) == ["a", "b", "target"]
    np.testing.assert_allclose(scaled[["a", "b"]].mean().to_numpy(), 0.0, atol=1e-5)
    np.testing.assert_allclose(scaled[["a", "b"]].std(ddof=0).to_numpy(), 1.0, atol=1e-5)
    np.testing.assert_allclose(scaled["target"].to_numpy(), frame["target"].to_numpy(), rtol=1e-6)
    assert all(dtype == np.float32 for dtype in scaled.dtypes)


def test_scaler_applies_train_statistics_to_other_splits():
    frame = small_frame(300)
    train, val = frame.iloc[:200], frame.iloc[200:] + 5.0  # val deliberately shifted
    scaler = Scaler.fit(train, "target")
    scaled_val = scaler.transform(val)
    features = train[["a", "b"]]
    expected = (val[["a", "b"]] - features.mean()) / features.std(ddof=0)
    np.testing.assert_allclose(scaled_val[["a", "b"]].to_numpy(), expected.to_numpy(), rtol=1e-5)
    assert scaled_val["a"].mean() > 1.0  # the shift survives: val was not re-centred on itself


def test_scaler_leaves_constant_column_finite():
    frame = small_frame(20).assign(a=4.0)
    scaler = Scaler.fit(frame, "target")
    scaled = scaler.transform(frame)
    assert scaler.std[0] == 1.0
    assert np.isfinite(scaled.to_numpy()).all()
    np.testing.assert_array_equal(scaled["a"].to_numpy(), 0.0)


def test_scaler_disabled_is_identity():
    frame = small_frame()
    scaled = Scaler.fit(frame, "target", enabled=False).transform(frame)
    np.testing.assert_allclose(scaled.to_numpy(), frame.to_numpy(), rtol=1e-6)


def test_scaler_transform_without_target_and_with_missing_feature():
    frame = small_frame()
    scaler = Scaler.fit(frame, "target")
    assert list(scaler.transform(frame.drop(columns="target")).columns) == ["a", "b"]
    with pytest.raises(DataError, match="b"):
        scaler.transform(frame.drop(columns="b"))


def test_scaler_save_load_round_trip(tmp_path):
    scaler = Scaler.fit(small_frame(), "target")
    scaler.save(tmp_path / "scaler.json")
    assert Scaler.load(tmp_path / "scaler.json") == scaler


# load_table


def write_csv(tmp_path, text: str):
    path = tmp_path / "rows.csv"
    path.write_text(text)
    return path


def test_load_table_target_defaults_to_last_column(tmp_path):
    frame, target = load_table(write_csv(tmp_path, "a,b,c\n1,2,3\n4,5,6\n"))
    assert target == "c"
    assert frame.shape == (2, 3)


def test_load_table_named_target(tmp_path):
    _, target = load_table(write_csv(tmp_path, "a,b,c\n1,2,3\n4,5,6\n"), target="a")
    assert target == "a"


@pytest.mark.parametrize(
    ("text", "target", "expected_fragments"),
    [
        pytest.param("", None, ["empty"], id="empty-file"),
        pytest.param("a,b\n", None, ["header but no rows"], id="header-only"),
        pytest.param("a\n1\n2\n", None, ["at least one feature column", "1 column"], id="one-column"),
        pytest.param(
            "a,b\n1,2\n3,4\n", "price", ["target column 'price' not found", "a, b"], id="missing-target"
        ),
        pytest.param("a,b\n1,2\n3,4,5,6\n", None, ["not a readable CSV file"], id="ragged"),
    ],
)
@pytest.mark.parametrize("load", [load_table, "store_table"], ids=["held", "stored"])
def test_load_table_rejects_bad_input_naming_the_problem(tmp_path, text, target, expected_fragments, load):
    if load == "store_table":  # kept in a ColumnFile as it is read: the same checks, the same words
        load = lambda path, target: store_table(path, tmp_path, target)  # noqa: E731
    with pytest.raises(DataError) as excinfo:
        load(write_csv(tmp_path, text), target)
    message = str(excinfo.value)
    for fragment in expected_fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"


@pytest.mark.parametrize("load", [load_table, "store_table"], ids=["held", "stored"])
def test_load_table_missing_file_names_the_path(tmp_path, load):
    if load == "store_table":
        load = lambda path: store_table(path, tmp_path)  # noqa: E731
    missing = tmp_path / "nowhere.csv"
    with pytest.raises(DataError, match="not found") as excinfo:
        load(missing)
    assert str(missing) in str(excinfo.value)


# TabularDataset


def test_dataset_holds_data_X_y_as_float32():
    frame = small_frame(12)
    dataset = TabularDataset(frame)
    assert dataset.data is frame
    assert dataset.X.dtype == torch.float32 and dataset.y.dtype == torch.float32
    assert dataset.X.shape == (12, 2)
    assert dataset.y.shape == (12, 1)
    assert dataset.features == ["a", "b"] and dataset.target == "target"
    np.testing.assert_allclose(dataset.y[:, 0].numpy(), frame["target"].to_numpy(np.float32))


def test_dataset_len_and_getitem():
    dataset = TabularDataset(small_frame(12))
    X, y = dataset[3]
    assert len(dataset) == 12
    assert X.shape == (2,) and y.shape == (1,)
    assert torch.equal(X, dataset.X[3]) and torch.equal(y, dataset.y[3])


def test_dataset_named_target_is_excluded_from_features():
    dataset = TabularDataset(small_frame(), target="a")
    assert dataset.features == ["b", "target"]
    np.testing.assert_allclose(dataset.y[:, 0].numpy(), small_frame()["a"].to_numpy(np.float32))


def test_dataset_accepts_frame_with_default_integer_columns():
    dataset = TabularDataset(pd.DataFrame(np.arange(12.0).reshape(4, 3)))
    assert dataset.X.shape == (4, 2)
    np.testing.assert_array_equal(dataset.y[:, 0].numpy(), [2.0, 5.0, 8.0, 11.0])


def test_dataset_unknown_target_raises_data_error():
    with pytest.raises(DataError, match="price"):
        TabularDataset(small_frame(), target="price")


def test_dataset_accepts_csv_path(tmp_path):
    path = tmp_path / "rows.csv"
    small_frame().to_csv(path, index=False)
    dataset = TabularDataset(path)
    assert dataset.X.shape == (12, 2) and dataset.target == "target"
    np.testing.assert_allclose(dataset.X.numpy(), small_frame()[["a", "b"]].to_numpy(np.float32), rtol=1e-6)


def test_dataset_accepts_parquet_path(tmp_path):
    path = tmp_path / "rows.parquet"
    small_frame().to_parquet(path, index=False)
    dataset = TabularDataset(str(path))
    assert dataset.X.shape == (12, 2) and dataset.target == "target"
    np.testing.assert_allclose(dataset.X.numpy(), small_frame()[["a", "b"]].to_numpy(np.float32))


def parquet_table(path, frame: pd.DataFrame, row_group_rows: int = 10):
    """`frame` written as prepare writes a split (no index), cut into row groups of this many rows."""
    frame.to_parquet(path, index=False, row_group_size=row_group_rows)
    return path


def mixed_frame(n_rows: int = 53) -> pd.DataFrame:
    """Columns of each kind a split may hold: float64 (rounded to float32), float32, integers."""
    rng = np.random.default_rng(3)
    return pd.DataFrame(
        {
            "wide": rng.normal(0.0, 1e3, n_rows),
            "narrow": rng.normal(0.0, 1.0, n_rows).astype(np.float32),
            "count": rng.integers(-(2**40), 2**40, n_rows),
            "target": rng.normal(0.0, 1.0, n_rows),
        }
    )


def assert_same_tensor(block_read: torch.Tensor, pandas_read: torch.Tensor) -> None:
    assert block_read.dtype == pandas_read.dtype == torch.float32
    assert block_read.shape == pandas_read.shape
    assert block_read.stride() == pandas_read.stride()  # a matmul's rounding follows the layout
    assert block_read.is_contiguous() == pandas_read.is_contiguous()
    assert torch.equal(block_read.view(torch.int32), pandas_read.view(torch.int32))  # every bit


@pytest.mark.parametrize("block_rows", [1, 7, 10, 64])
def test_a_parquet_split_read_a_block_at_a_time_is_the_pandas_read_bit_for_bit(tmp_path, block_rows):
    path = parquet_table(tmp_path / "rows.parquet", mixed_frame(53))  # 6 row groups, the last of 3 rows
    streamed, whole = TabularDataset.from_parquet(path, block_rows=block_rows), TabularDataset(path)
    assert_same_tensor(streamed.X, whole.X)
    assert_same_tensor(streamed.y, whole.y)
    assert streamed.features == whole.features == ["wide", "narrow", "count"]
    assert streamed.target == whole.target == "target" and len(streamed) == 53
    assert streamed.data is None  # no DataFrame kept


def test_a_parquet_split_read_a_block_at_a_time_takes_a_named_target(tmp_path):
    path = parquet_table(tmp_path / "rows.parquet", mixed_frame(20))
    streamed = TabularDataset.from_parquet(path, "narrow", block_rows=3)
    whole = TabularDataset(path, "narrow")
    assert streamed.features == whole.features == ["wide", "count", "target"]
    assert_same_tensor(streamed.X, whole.X)
    assert_same_tensor(streamed.y, whole.y)
    with pytest.raises(DataError, match="target column 'price' not found"):
        TabularDataset.from_parquet(path, "price")


def test_an_empty_parquet_split_reads_as_no_rows(tmp_path):
    path = parquet_table(tmp_path / "rows.parquet", mixed_frame(0))
    streamed, whole = TabularDataset.from_parquet(path), TabularDataset(path)
    assert streamed.X.shape == whole.X.shape == (0, 3) and streamed.y.shape == whole.y.shape == (0, 1)


@pytest.mark.parametrize(
    "spoil",
    [
        lambda f: f.assign(count=f["count"].astype("Int64").mask(f.index == 50)),  # a gap in the last block
        lambda f: f.assign(wide=f["wide"].where(f.index < 47, np.inf)),  # infinities in a late block
        lambda f: f.assign(narrow=f["narrow"].where(f.index > 2), target=np.where(f.index == 51, -np.inf, 0)),
        lambda f: f.assign(wide=f["wide"].where(f.index != 52), count=f["count"] > 0),  # gaps, then booleans
        lambda f: f.assign(narrow=f["narrow"].astype(str)),  # text
        lambda f: f.assign(wide=np.where(f.index == 49, 1e300, f["wide"])),  # inf as float32, finite as read
    ],
)
def test_a_bad_value_in_any_block_is_named_as_the_pandas_read_names_it(tmp_path, spoil):
    path = parquet_table(tmp_path / "rows.parquet", spoil(mixed_frame(53)))
    try:
        TabularDataset(path)
    except DataError as error:
        with pytest.raises(DataError) as streamed:
            TabularDataset.from_parquet(path, block_rows=7)
        assert str(streamed.value) == str(error)
    else:  # the last: pandas checks float64 values, so float32's overflow passes as it does there
        assert_same_tensor(TabularDataset.from_parquet(path, block_rows=7).X, TabularDataset(path).X)


def test_a_parquet_split_with_a_damaged_page_is_named_by_its_file_and_rows(tmp_path):
    path = tmp_path / "train.parquet"
    small_frame(90).to_parquet(path, index=False, row_group_size=30)
    content = bytearray(path.read_bytes())
    page = pq.ParquetFile(path).metadata.row_group(2).column(0).data_page_offset
    content[page : page + 8] = b"\xff" * 8  # a page header no reader can read
    path.write_bytes(bytes(content))
    with pytest.raises(DataError, match=r"train\.parquet: rows 61-90 \(row group 3 of 3\) cannot be read \("):
        TabularDataset.from_parquet(path, block_rows=7)


def test_a_split_larger_than_the_shuffle_buffer_is_read_in_windows_of_row_groups(tmp_path):
    path = parquet_table(tmp_path / "rows.parquet", mixed_frame(53))  # 6 row groups, the last of 3 rows
    assert isinstance(open_split(path, 53), TabularDataset)  # fits: held whole, shuffled whole
    rows = open_split(path, 25)
    assert isinstance(rows, ParquetRows) and len(rows) == 53
    assert rows.group_rows == [10, 10, 10, 10, 10, 3] and rows.window_groups == 2  # 25 rows hold two groups
    whole = TabularDataset(path)
    assert rows.features == whole.features and rows.target == whole.target
    X, y = rows.read_groups([5, 1])  # in the order asked for, laid out as from_parquet lays X
    assert_same_tensor(X, torch.cat([whole.X[50:], whole.X[10:20]]).T.contiguous().T)
    assert torch.equal(y, torch.cat([whole.y[50:], whole.y[10:20]]))
    assert ParquetRows(path, 1).window_groups == 1  # a buffer smaller than a group still reads one


@pytest.mark.parametrize("block_rows", [4, 7, 64])
def test_a_streamed_split_has_the_blocks_and_the_spread_rows_of_the_held_one(
    tmp_path, monkeypatch, block_rows
):
    """What the least-squares line and the start at the target's mean read: the same rows, the same bits."""
    monkeypatch.setattr(tabular, "BLOCK_ROWS", block_rows)
    path = parquet_table(tmp_path / "rows.parquet", mixed_frame(53))
    streamed, held = ParquetRows(path, 20), TabularDataset.from_parquet(path)
    for (X, y), (X_held, y_held) in zip(streamed.blocks(), held.blocks(), strict=True):
        assert torch.equal(X, X_held) and torch.equal(y, y_held)
    for got, expected in zip(streamed.evenly_spaced(), held.evenly_spaced(), strict=True):
        assert torch.equal(got, expected) and len(got) == len(range(0, 53, max(53 // block_rows, 1)))


def test_a_streamed_split_with_a_bad_value_is_refused_when_opened_as_the_held_one_is(tmp_path):
    path = parquet_table(
        tmp_path / "rows.parquet", mixed_frame(53).assign(count=lambda f: f["count"].where(f.index != 50))
    )
    with pytest.raises(DataError) as held:
        TabularDataset.from_parquet(path)
    with pytest.raises(DataError) as streamed:
        ParquetRows(path, 20)
    assert str(streamed.value) == str(held.value) and "'count' has 1 missing" in str(held.value)


def test_a_streamed_split_with_a_damaged_row_group_names_its_file_and_rows(tmp_path):
    path = tmp_path / "train.parquet"
    small_frame(90).to_parquet(path, index=False, row_group_size=30)
    rows = ParquetRows(path, 30)  # opened whole, then damaged: a window read names it
    content = bytearray(path.read_bytes())
    page = pq.ParquetFile(path).metadata.row_group(2).column(0).data_page_offset
    content[page : page + 8] = b"\xff" * 8
    path.write_bytes(bytes(content))
    with pytest.raises(DataError, match=r"train\.parquet: rows 61-90 \(row group 3 of 3\) cannot be read \("):
        rows.read_groups([0, 2])


def test_dataloader_over_dataset_yields_batches_of_right_shape():
    loader = DataLoader(TabularDataset(small_frame(10)), batch_size=4)
    shapes = [(tuple(X.shape), tuple(y.shape)) for X, y in loader]
    assert shapes == [((4, 2), (4, 1)), ((4, 2), (4, 1)), ((2, 2), (2, 1))]


@pytest.mark.parametrize("first", [0, 2])  # labels that are the positions, and labels that are not
def test_split_rows_are_the_rows_iloc_takes_and_leave_the_table_without_columns(first):
    frame = pd.DataFrame(
        {
            "n": np.arange(30.0),
            "k": np.arange(30),
            "text": [f"t{i}" for i in range(30)],
            "day": pd.date_range("2021-01-01", periods=30),
            "y": np.linspace(0, 1, 30),
        }
    ).iloc[first:]
    indices = split_indices(len(frame), 0.2, 0.2, seed=1)
    want = {name: frame.iloc[rows] for name, rows in indices.items()}
    got = split_rows(frame, indices)
    for name in indices:  # labels that are the positions: the index arrays themselves, int32
        pd.testing.assert_frame_equal(got[name], want[name], check_index_type=bool(first))
    assert frame.shape[1] == 0


@pytest.mark.parametrize("family", ["tanh_plus_x", "line", "outliers"])
def test_synthetic_rows_kept_on_disk_split_as_the_rows_held_in_memory(tmp_path, family):
    config = DataConfig(family=family, n_samples=3_000, n_features=3)
    frame, target, truth = load_source(config, seed=4)
    stored, stored_target, stored_truth = load_source(config, seed=4, folder=tmp_path)
    assert isinstance(stored, StoredRows) and (stored_target, stored_truth) == (target, truth)
    assert stored.frame.columns.empty  # features and target in files: memory holds the row labels
    names = list(frame.columns)
    assert stored.columns == names and len(stored) == len(frame)
    indices = split_indices(len(frame), 0.2, 0.2, seed=1)
    want, got = split_rows(frame, indices), split_rows(stored, indices)
    for name in indices:
        assert got[name].columns == list(want[name].columns) and len(got[name]) == len(want[name])
        for column in want[name].columns:  # values and row labels, bit for bit
            pd.testing.assert_series_equal(got[name][column], want[name][column])
    part = got["test"]
    assert part.pop("y").name == "y" and part.columns == names[:-1]


def prepared_bytes(config: DataConfig, folder: Path | None, out: Path) -> dict[str, object]:
    """What prepare makes of `config`'s rows, kept in `folder` (or held): each split's file,
    the preprocessing, the rows dropped and the train target's spread."""
    rows, target, _ = load_source(config, seed=3, folder=folder)
    assert isinstance(rows, StoredRows) == (folder is not None and Path(config.path).suffix != ".parquet")
    rows, dropped = drop_missing_target(rows, target)
    parts = split_rows(rows, split_indices(len(rows), 0.15, 0.15, seed=3))
    preprocessor = Preprocessor.fit(parts["train"], target, config)
    out.mkdir()
    for name, part in parts.items():
        write_split(out / f"{name}.parquet", part, preprocessor, group_rows=4096)
    spread = portable.std(parts["train"][target].to_numpy(), ddof=1)
    files = {path.name: path.read_bytes() for path in sorted(out.iterdir())}
    return {"files": files, "preprocessing": preprocessor.to_dict(), "dropped": dropped, "spread": spread}


def test_a_csv_read_whole_after_the_kept_read_gives_up_says_each_note_once(tmp_path, capsys):
    """Rows with labels (one more field than the header names) are read whole, as pandas reads
    them: the notes of the read that gave up are not said, only the whole read's."""
    path = tmp_path / "labelled.csv"
    path.write_bytes(b"a,b,y\nr1,1,2,3\nr2,2,3,4\ncaf\xe9,1,1,2\nr4,5,6,7\n")  # cp1252, not UTF-8
    rows, target, _ = load_source(DataConfig(source="csv", path=str(path)), seed=1, folder=tmp_path)
    assert isinstance(rows, pd.DataFrame) and len(rows) == 4 and target == "y"
    assert capsys.readouterr().err.count("is not UTF-8; read it as cp1252") == 1


@pytest.mark.parametrize("table", ["cars", "houses", "shop", "messy", "folder", "nullable.parquet"])
def test_a_csv_kept_on_disk_prepares_the_bytes_of_the_table_held_in_memory(tmp_path, table):
    """The column kinds the pieces settle, the target held as numbers where it is not float64
    in its file, and every value read back as the whole read gives it: the same bytes."""
    if table == "messy":
        path, target = tmp_path / "messy.csv", write_messy(tmp_path / "messy.csv")
    elif table == "folder":  # houses cut in three files, one of them without a gap in its prices
        path, target = tmp_path / "parts", "price"
        path.mkdir()
        whole = pd.read_csv(write_table("houses", tmp_path)[0])
        whole.iloc[:100].dropna(subset="price").to_csv(path / "0.csv", index=False)
        whole.iloc[100:350].to_csv(path / "1.csv", index=False)
        whole.iloc[350:].to_csv(path / "2.csv", index=False)
    elif table == "nullable.parquet":  # pandas' nullable integers, which a ColumnFile does not hold: held
        path, target = tmp_path / table, "price"
        houses = pd.read_csv(write_table("houses", tmp_path)[0])
        houses.astype({"id": "Int64"}).to_parquet(path, index=False)
    else:
        path, target = write_table(table, tmp_path)
    config = DataConfig(source="csv", path=str(path), target=target)
    (tmp_path / "scratch").mkdir()
    held = prepared_bytes(config, None, tmp_path / "held")
    assert prepared_bytes(config, tmp_path / "scratch", tmp_path / "stored") == held


def test_a_csv_whose_rows_have_labels_is_held_as_pandas_labels_them(tmp_path):
    """One more field a row than the header has names: pandas takes the first as the rows'
    labels, and an error names a row by its label."""
    path = write_csv(tmp_path, "a,y\n10,1,x\n20,2,3\n30,3,4\n")
    (tmp_path / "scratch").mkdir()
    rows, target, _ = load_source(
        DataConfig(source="csv", path=str(path)), seed=0, folder=tmp_path / "scratch"
    )
    assert isinstance(rows, pd.DataFrame) and rows.index.tolist() == [10, 20, 30]
    with pytest.raises(DataError, match="row 11: 'x' is not a number"):
        drop_missing_target(rows, target)


def test_scaling_a_column_at_a_time_gives_the_bits_of_the_whole_table():
    frame = small_frame(1_000)
    scaler = Scaler.fit(frame, "target")
    whole = np.array(frame[scaler.features], dtype=np.float64)
    whole -= scaler.mean
    whole /= scaler.std
    out = scaler.transform(frame)
    assert list(out.columns) == [*scaler.features, "target"]
    assert out[scaler.features].to_numpy().tobytes() == whole.astype(np.float32).tobytes()
    assert Scaler.fit_columns(((c, frame[c].to_numpy()) for c in frame.columns), "target") == scaler


# write_splits / read_split


def test_write_splits_read_split_round_trip(tmp_path):
    frame = small_frame(30)
    scaler = Scaler.fit(frame.iloc[:20], "target")
    splits = {"train": scaler.transform(frame.iloc[:20]), "val": scaler.transform(frame.iloc[20:30])}
    write_splits(splits, scaler, tmp_path / "prepared")
    for name, part in splits.items():
        pd.testing.assert_frame_equal(read_split(tmp_path / "prepared", name), part)
    assert Scaler.load(tmp_path / "prepared" / "preprocessing.json") == scaler
    assert sorted(p.name for p in (tmp_path / "prepared").iterdir()) == [
        "preprocessing.json",
        "train.parquet",
        "val.parquet",
    ]


def test_a_split_written_a_row_group_at_a_time_is_the_file_of_the_whole(tmp_path):
    """write_split transforms and writes a row group at a time, from a DataFrame or from rows kept
    on disk (StoredRows): at the default group size the bytes `to_parquet` writes of the whole,
    at another the same table in groups of that many rows; then moved into place by write_splits."""
    config = DataConfig(n_samples=400, n_features=3)
    frame, target, _ = load_source(config, seed=5)
    preprocessor = Preprocessor.fit(frame, target, config)
    (tmp_path / "whole").mkdir()
    preprocessor.transform(frame).to_parquet(tmp_path / "whole" / "train.parquet", index=False)
    stored, _, _ = load_source(config, seed=5, folder=tmp_path)
    for rows in (frame, stored):
        write_split(tmp_path / "train.parquet", rows, preprocessor)
        assert (tmp_path / "train.parquet").read_bytes() == (
            tmp_path / "whole" / "train.parquet"
        ).read_bytes()
        write_split(tmp_path / "train.parquet", rows, preprocessor, group_rows=64)
        written = pq.ParquetFile(tmp_path / "train.parquet")
        assert [written.metadata.row_group(i).num_rows for i in range(written.num_row_groups)] == [64] * 6 + [
            16
        ]
        assert written.read().equals(pq.read_table(tmp_path / "whole" / "train.parquet"))
    write_splits({"train": tmp_path / "train.parquet"}, preprocessor, tmp_path / "prepared")
    assert not (tmp_path / "train.parquet").exists()
    assert read_split(tmp_path / "prepared", "train").equals(
        pd.read_parquet(tmp_path / "whole" / "train.parquet")
    )


def test_a_split_of_several_row_groups_written_with_a_seed_has_a_random_sample_of_its_rows_in_each(tmp_path):
    """A table sorted by its target, as many exports are: with `shuffle_seed`, each row group of
    the split holds rows from all over it, every row once, in an order the seed alone decides
    (the same bytes again, and from rows kept on disk); windowed training, which takes a few
    groups at a time, then sees random samples. A split of one group is written as it is."""
    config = DataConfig(n_samples=1000, n_features=3)
    frame, target, _ = load_source(config, seed=5)
    preprocessor = Preprocessor.fit(frame, target, config)
    order = np.argsort(frame[target].to_numpy(), kind="stable")
    ranked = frame.iloc[order].reset_index(drop=True)  # rows 0..999 by their target
    ranked.to_csv(tmp_path / "sorted.csv", index=False)
    stored, _, _ = load_source(
        DataConfig(source="csv", path=str(tmp_path / "sorted.csv")), seed=5, folder=tmp_path
    )
    assert isinstance(stored, StoredRows)

    def written(rows, name: str, **options) -> Path:
        write_split(tmp_path / name, rows, preprocessor, group_rows=64, **options)
        return tmp_path / name

    shuffled = written(ranked, "shuffled.parquet", shuffle_seed=11)
    file = pq.ParquetFile(shuffled)
    assert [file.metadata.row_group(i).num_rows for i in range(file.num_row_groups)] == [64] * 15 + [40]
    targets = preprocessor.transform(ranked)[target].to_numpy()  # ascending, as written
    assert (np.diff(targets) > 0).all()
    groups = [np.searchsorted(targets, file.read_row_group(i)[target].to_numpy()) for i in range(15)]
    assert sorted(
        np.concatenate([*groups, np.searchsorted(targets, file.read_row_group(15)[target])])
    ) == list(range(1000))
    for rows in groups:  # each group's 64 rows spread over the whole table, not a run of neighbours
        assert rows.min() < 250 and rows.max() >= 750 and 300 < rows.mean() < 700
    assert shuffled.read_bytes() == written(ranked, "again.parquet", shuffle_seed=11).read_bytes()
    assert shuffled.read_bytes() == written(stored, "stored.parquet", shuffle_seed=11).read_bytes()
    assert shuffled.read_bytes() != written(ranked, "other.parquet", shuffle_seed=12).read_bytes()
    assert pq.read_table(written(ranked, "plain.parquet")).equals(
        pa.Table.from_pandas(preprocessor.transform(ranked), preserve_index=False)
    )
    one = ranked.iloc[:64]
    assert (
        written(one, "one.parquet", shuffle_seed=11).read_bytes()
        == written(one, "one-plain.parquet").read_bytes()
    )
    left = [path.name for path in tmp_path.iterdir() if path.name.startswith("tmp")]
    assert left == []  # no buckets
    ranked.loc[900, "x1"] = np.inf  # a bad value in the last group: no file, and no buckets
    with pytest.raises(DataError, match="infinite"):
        written(ranked, "bad.parquet", shuffle_seed=11)
    assert not (tmp_path / "bad.parquet").exists()
    assert [path.name for path in tmp_path.iterdir() if path.name.startswith("tmp")] == []


def test_a_staged_split_is_copied_into_place_where_the_folder_is_on_another_file_system(
    tmp_path, monkeypatch
):
    import errno
    import os

    frame = small_frame(30)
    scaler = Scaler.fit(frame, "target")
    scaler.transform(frame).to_parquet(tmp_path / "staged.parquet", index=False)
    renames = []

    def replace(source, target):
        renames.append(target)
        if len(renames) == 1:  # the split's rename: across devices
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        os.rename(source, target)

    monkeypatch.setattr("torchtrack.data.os.replace", replace)
    write_splits({"train": tmp_path / "staged.parquet"}, scaler, tmp_path / "prepared")
    written = tmp_path / "prepared" / "train.parquet"
    assert written.read_bytes() == (tmp_path / "staged.parquet").read_bytes()
    assert renames[1] == written  # copied beside it, then renamed into place


def test_a_value_that_cannot_be_used_in_a_later_row_group_leaves_no_file(tmp_path):
    frame = small_frame(30).assign(a=lambda f: f["a"].astype(object))
    preprocessor = Preprocessor.fit(frame, "target", DataConfig(source="csv"))
    frame.loc[25, "a"] = "ten"
    with pytest.raises(DataError, match=r"column 'a', row 26: 'ten' is not a number"):
        write_split(tmp_path / "val.parquet", frame, preprocessor, group_rows=8)
    assert list(tmp_path.iterdir()) == []


def test_read_split_missing_says_to_run_prepare(tmp_path):
    with pytest.raises(DataError, match="prepare"):
        read_split(tmp_path, "train")
