"""loader.py: batches gathered a block at a time, the same rows in the same order as a bare
`randperm` loop, on the device the data lives on; a split too large to hold, a window of row
groups at a time."""

import copy

import numpy as np
import pandas as pd
import pytest
import torch
from torch.utils.data import default_collate

from torchtrack import loader as loader_module
from torchtrack.loader import BLOCK_ROWS, BatchIndexSampler, WindowBatches, make_loader, resident
from torchtrack.tabular import ParquetRows, TabularDataset


@pytest.mark.parametrize("block_rows", [BLOCK_ROWS, 25], ids=["one-block", "blocks-of-two-batches"])
def test_batch_index_sampler_yields_the_rows_of_a_bare_randperm_loop_in_order(monkeypatch, block_rows):
    """The fast path fetches exactly the rows that `randperm` + slicing would, epoch after epoch,
    whether an epoch is one block or many (BLOCK_ROWS 25 makes blocks of 20 rows here)."""
    monkeypatch.setattr(loader_module, "BLOCK_ROWS", block_rows)
    frame = pd.DataFrame({"a": np.arange(103.0), "b": np.arange(103.0) * 2, "y": np.arange(103.0) * 3})
    dataset = TabularDataset(frame)
    loader = make_loader(dataset, batch_size=10, shuffle=True, generator=torch.Generator().manual_seed(7))
    bare = torch.Generator().manual_seed(7)
    for _epoch in range(3):
        order = torch.randperm(len(dataset), generator=bare)
        expected = [(dataset.X[order[i : i + 10]], dataset.y[order[i : i + 10]]) for i in range(0, 103, 10)]
        got = list(loader)
        assert len(got) == len(expected) == len(BatchIndexSampler(103, 10))
        for (X, y), (X_ref, y_ref) in zip(got, expected, strict=True):
            assert torch.equal(X, X_ref) and torch.equal(y, y_ref)


def test_fast_path_matches_per_row_getitem_and_default_collate():
    frame = pd.DataFrame(np.random.default_rng(0).standard_normal((50, 4)), columns=list("abcd"))
    dataset = TabularDataset(frame)
    for indices in BatchIndexSampler(50, 8, shuffle=True, generator=torch.Generator().manual_seed(1)):
        X, y = dataset[indices]
        X_slow, y_slow = default_collate([dataset[int(i)] for i in indices])
        assert torch.equal(X, X_slow) and torch.equal(y, y_slow)


@pytest.mark.parametrize("layout", ["column-major", "row-major"])
def test_a_block_is_the_row_gather_of_its_table_bit_for_bit_and_stride_for_stride(layout):
    """Whatever the table's layout (pandas and `from_parquet` give column-major X), a block is
    what `index_select` along the rows gives: the same bits, laid out row by row, so that the
    model's matmuls round every batch alike."""
    frame = pd.DataFrame(np.random.default_rng(2).standard_normal((300, 6)), columns=list("abcdef"))
    dataset = TabularDataset(frame)
    assert dataset.X.T.is_contiguous()  # column-major, as pandas hands it over
    if layout == "row-major":
        dataset.X = dataset.X.contiguous()
    index = torch.randperm(300, generator=torch.Generator().manual_seed(3))[:100]
    for got, table in zip(dataset[index], (dataset.X, dataset.y), strict=True):
        expected = table.index_select(0, index)
        assert got.stride() == expected.stride() == (table.shape[1], 1)
        assert torch.equal(got.view(torch.int32), expected.view(torch.int32))


def test_unshuffled_batches_keep_file_order():
    batches = list(BatchIndexSampler(7, 3, shuffle=False))
    assert [b.tolist() for b in batches] == [[0, 1, 2], [3, 4, 5], [6]]


def test_dataset_moved_to_a_device_keeps_the_original_and_its_batches_stay_there():
    """`to` gives a copy whose tensors live on the device (the meta device stands in for a GPU
    here) and leaves the CPU dataset as it was; the loader's indices follow the data."""
    dataset = TabularDataset(pd.DataFrame({"a": np.arange(20.0), "y": np.arange(20.0)}))
    assert dataset.to(torch.device("cpu")) is dataset
    moved = dataset.to(torch.device("meta"))
    assert moved.device.type == "meta" and dataset.device.type == "cpu"
    assert moved.X.shape == dataset.X.shape and moved.features == dataset.features
    batches = list(make_loader(moved, batch_size=8, shuffle=True, generator=torch.Generator().manual_seed(0)))
    assert [len(X) for X, _ in batches] == [8, 8, 4]
    assert all(X.device.type == "meta" and y.device.type == "meta" for X, y in batches)


def test_resident_moves_a_dataset_to_the_device_once_and_leaves_it_on_the_cpu():
    dataset = TabularDataset(pd.DataFrame({"a": np.arange(4.0), "y": np.arange(4.0)}))
    assert resident(dataset, torch.device("cpu")) is dataset
    assert resident(dataset, torch.device("meta")).device.type == "meta"


def window_rows(tmp_path, n_rows: int = 103, group_rows: int = 10, buffer_rows: int = 25):
    """A split of `n_rows` (y the row's number) in row groups of `group_rows`, read in windows."""
    frame = pd.DataFrame({"a": np.arange(n_rows, dtype=np.float32), "y": np.arange(n_rows, dtype=np.float32)})
    frame.to_parquet(tmp_path / "rows.parquet", index=False, row_group_size=group_rows)
    return ParquetRows(tmp_path / "rows.parquet", buffer_rows)


def row_numbers(batches) -> list[list[int]]:
    return [y.reshape(-1).int().tolist() for _, y in batches]


@pytest.mark.parametrize("block_rows", [BLOCK_ROWS, 25], ids=["one-block", "blocks-of-two-batches"])
def test_window_batches_take_every_row_once_an_epoch_in_the_batches_of_a_whole_permutation(
    tmp_path, monkeypatch, block_rows
):
    """Batches run on across windows (a window of two groups leaves 20 rows, not a whole batch
    of 30): an epoch has the batches one permutation of all 103 rows would, the last one short."""
    monkeypatch.setattr(loader_module, "BLOCK_ROWS", block_rows)
    rows = window_rows(tmp_path)
    loader = make_loader(rows, batch_size=30, shuffle=True, generator=torch.Generator().manual_seed(7))
    assert isinstance(loader, WindowBatches)
    epochs = [row_numbers(loader) for _ in range(3)]
    for batches in epochs:
        assert [len(b) for b in batches] == [30, 30, 30, 13] and len(loader) == 4
        assert sorted(sum(batches, [])) == list(range(103))
    assert epochs[0] != epochs[1] != epochs[2]  # reshuffled every epoch
    again = make_loader(rows, batch_size=30, shuffle=True, generator=torch.Generator().manual_seed(7))
    assert [row_numbers(again) for _ in range(3)] == epochs  # the generator decides it all


def test_window_batches_mix_the_rows_of_a_window_and_read_one_window_at_a_time(tmp_path, monkeypatch):
    rows = window_rows(tmp_path)
    read = []
    original = rows.read_groups
    monkeypatch.setattr(rows, "read_groups", lambda groups: read.append(groups) or original(groups))
    batches = row_numbers(
        make_loader(rows, batch_size=5, shuffle=True, generator=torch.Generator().manual_seed(1))
    )
    assert sorted(sum(read, [])) == list(range(11)) and all(len(groups) <= 2 for groups in read)
    whole = sum(rows.group_rows[group] for group in read[0]) // 5  # the first window's whole batches
    first = sum(batches[:whole], [])  # rows of its two groups only, mixed
    assert {n // 10 for n in first} == set(read[0]) and sorted(first) != first


def test_window_batches_unshuffled_are_the_rows_in_the_files_order(tmp_path):
    batches = row_numbers(make_loader(window_rows(tmp_path), batch_size=16, shuffle=False))
    assert sum(batches, []) == list(range(103)) and [len(b) for b in batches] == [16] * 6 + [7]


@pytest.mark.parametrize("shuffle", [True, False], ids=["shuffled", "in-order"])
def test_window_batches_of_the_ranks_are_equal_disjoint_shares_each_read_from_its_own_groups(
    tmp_path, shuffle
):
    """Two ranks split each epoch's rows (101, in groups of 10) into two shares of 50 (the last
    row left out): neither reads the other's groups, save the one group their shares meet in;
    each takes as many batches of 5 rows; and both draw alike, so they agree every epoch."""
    rows = window_rows(tmp_path, n_rows=101)
    read = {0: [], 1: []}

    def reader(rank):
        def read_groups(groups):
            read[rank].append(groups)
            return ParquetRows.read_groups(rows, groups)

        return read_groups

    ranks = []
    for rank in (0, 1):
        loader = make_loader(rows, 10, shuffle, torch.Generator().manual_seed(3), rank=rank, world_size=2)
        loader.rows = copy.copy(rows)
        loader.rows.read_groups = reader(rank)
        ranks.append(loader)
    epochs = []
    for _ in range(3):
        read[0].clear(), read[1].clear()
        first, second = (row_numbers(loader) for loader in ranks)
        epochs.append(first)
        assert len(first) == len(second) == len(ranks[0]) == 10 and ranks[0].n_rows == 50
        assert all(len(batch) == 5 for batch in first + second)
        taken = sum(first, []) + sum(second, [])
        assert len(set(taken)) == 100 and set(taken) <= set(range(101))
        groups = [{group for window in read[rank] for group in window} for rank in (0, 1)]
        assert groups == [{n // 10 for n in sum(batches, [])} for batches in (first, second)]  # read, taken
        assert len(groups[0] & groups[1]) <= 1  # at most the group where the shares meet
        assert all(len(window) <= 2 for window in read[0] + read[1])
        if not shuffle:
            assert sum(first, []) == list(range(50)) and sum(second, []) == list(range(50, 100))
    assert shuffle == (sum(first, []) != sorted(sum(first, []))) == (epochs[0] != epochs[1] != epochs[2])
