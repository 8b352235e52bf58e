"""Batches for training and validation, fast: the data stays where the model is, and rows are
gathered a block of many batches at a time, not row by row. A split too large to hold
(`tabular.ParquetRows`) is read a window of its row groups at a time (`WindowBatches`).

    loader = make_loader(resident(train_set, device), batch_size=64, shuffle=True, generator=g)
    for X, y in loader: ...  # (64, F), (64, 1) views of one gathered block
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Protocol, runtime_checkable

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from torchtrack.distributed import shard_rows

# Rows gathered per indexing operation (and per chunk wherever a split is processed in pieces):
# a few MB, however large the split.
BLOCK_ROWS = 65_536


def make_loader(
    dataset: Dataset,
    batch_size: int,
    shuffle: bool,
    generator: torch.Generator | None = None,
    *,
    rank: int = 0,
    world_size: int = 1,
) -> BlockBatches | WindowBatches:
    """Batches of `batch_size` rows from `dataset`; shuffling draws from `generator` for
    reproducibility. With `world_size` > 1, rank `rank`'s share of them, in batches of
    `batch_size // world_size` rows: an equal slice of every batch (`distributed.shard_rows`), or
    of a split read in windows, an equal share of each epoch's rows (`WindowBatches`).

    A dataset read a window of row groups at a time (`RowGroups`) is batched by
    `WindowBatches`; any other is held whole, as follows.

    A DataLoader fetches blocks of whole batches (about `BLOCK_ROWS` rows): the sampler
    yields index tensors, on the dataset's `device` if it has one, `dataset[index_tensor]`
    must return the whole block in one indexing operation (TabularDataset does), and
    `batch_size=None` hands it over uncollated. The batches are then views of the block, in
    the order a bare `randperm` loop takes them. In-memory tensors need no worker processes,
    so none are started.
    """
    if isinstance(dataset, RowGroups):
        return WindowBatches(dataset, batch_size, shuffle, generator, rank=rank, world_size=world_size)
    local = batch_size // world_size  # rows of each batch that this process takes
    block_rows = max(1, BLOCK_ROWS // batch_size) * local
    shard = _shard(local * world_size, rank, world_size)
    device = getattr(dataset, "device", "cpu")
    sampler = BatchIndexSampler(len(dataset), block_rows, shuffle, generator, device, shard)
    loader = DataLoader(dataset, sampler=sampler, batch_size=None, collate_fn=_as_is)
    return BlockBatches(loader, local, sampler.rows)


def _shard(batch_size: int, rank: int, world_size: int) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """Rank `rank`'s slice of each batch of an epoch's order (`distributed.shard_rows`); None
    in a single process, which takes every row."""
    if world_size == 1:
        return None
    return partial(shard_rows, batch_size=batch_size, rank=rank, world_size=world_size)


def _as_is(batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    return batch  # already a batch of tensors: nothing to collate or convert


def resident(dataset: Dataset, device: torch.device) -> Dataset:
    """`dataset` moved to `device` once, where it can be (TabularDataset.to), so that batches
    are gathered where the model is; else as it is, and each batch is copied there."""
    if device.type == "cpu" or not hasattr(dataset, "to"):
        return dataset
    return dataset.to(device)


class BatchIndexSampler(Sampler[torch.Tensor]):
    """Index tensors of `batch_size` rows: slices of one `torch.randperm` per epoch.

    The same batches a bare loop gets from `randperm` and slicing, without one Python
    object per row; shuffling draws only from `generator`, a CPU generator, so the order is
    reproducible and the same on every device. The indices are put on `device` (the data's)
    once per epoch. With `shard`, the epoch's order is first cut down to this process's
    share of it (`distributed.shard_rows`); `rows` is how many rows an epoch yields.
    """

    def __init__(
        self,
        n_rows: int,
        batch_size: int,
        shuffle: bool = True,
        generator: torch.Generator | None = None,
        device: torch.device | str = "cpu",
        shard: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ):
        self.n_rows, self.batch_size, self.shuffle, self.generator = n_rows, batch_size, shuffle, generator
        self.device = torch.device(device)
        self.shard = shard
        self.rows = n_rows if shard is None else len(shard(torch.arange(n_rows)))

    def __len__(self) -> int:
        return -(-self.rows // self.batch_size)

    def __iter__(self) -> Iterator[torch.Tensor]:
        if self.shuffle:
            order = torch.randperm(self.n_rows, generator=self.generator)
        else:
            order = torch.arange(self.n_rows)
        if self.shard is not None:
            order = self.shard(order)
        return iter(order.to(self.device).split(self.batch_size))


class BlockBatches:
    """Batches of `batch_size` rows cut from the blocks that `loader` yields: each block (many
    batches' rows) is fetched in one indexing operation, and each batch is then a view of it.

    So the DataLoader's own cost per item (its profiler hook alone is a few microseconds) and
    the gather are paid once per block, not once per batch. With `loader` over a
    `BatchIndexSampler` of blocks that are whole multiples of `batch_size`, the batches are
    the ones a sampler of `batch_size` would give, in the same order.
    """

    def __init__(self, loader: Iterable[tuple[torch.Tensor, torch.Tensor]], batch_size: int, n_rows: int):
        self.loader, self.batch_size, self.n_rows = loader, batch_size, n_rows

    def __len__(self) -> int:
        return -(-self.n_rows // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for X, y in self.loader:
            yield from zip(X.split(self.batch_size), y.split(self.batch_size), strict=True)


@runtime_checkable
class RowGroups(Protocol):
    """Rows stored in groups (a Parquet file's row groups), read some groups at a time: what
    `WindowBatches` batches. `tabular.ParquetRows` is one."""

    group_rows: list[int]  # each group's rows, in the file's order
    window_groups: int  # how many groups a window (the shuffle buffer) holds

    def __len__(self) -> int: ...

    def read_groups(self, groups: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """These groups' rows, in this order: X (n, F) and y (n, 1)."""
        ...


class WindowBatches:
    """Batches of `batch_size` rows of a split too large to hold, read a window of its row
    groups at a time: memory holds two windows (this one and the next, read ahead), whatever
    the split's size.

    Shuffled, an epoch draws a permutation of the groups from `generator`, and a seed for the
    permutations of the rows within each window (a shuffle buffer of the window's rows); not
    shuffled, the groups and their rows come in the file's order. The epoch's rows, group after
    group, are then cut into `world_size` equal, consecutive shares (the last `len % world_size`
    rows left out): rank `rank` reads only the groups that hold its share, a window of
    `rows.window_groups` groups at a time (the first window one group), and batches them in
    `batch_size // world_size` rows, so every rank takes the same number of steps and each step's
    batches make `batch_size` rows across the ranks. The batches run on across windows: rows a
    window leaves short of a whole batch start the next one's first batch, so an epoch has the
    batches a permutation of all of the share's rows would (`len`), the last one short. Every
    rank draws the same from `generator` (the window's permutations come from a generator of
    the drawn seed and the rank), so they agree on the groups' order every epoch.
    """

    def __init__(
        self,
        rows: RowGroups,
        batch_size: int,
        shuffle: bool,
        generator: torch.Generator | None = None,
        *,
        rank: int = 0,
        world_size: int = 1,
    ):
        self.rows, self.shuffle, self.generator = rows, shuffle, generator
        self.rank, self.local = rank, batch_size // world_size  # rows of each batch that this process takes
        self.n_rows = len(rows) // world_size  # this rank's share of an epoch's rows

    def __len__(self) -> int:
        return -(-self.n_rows // self.local)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        groups = len(self.rows.group_rows)
        if self.shuffle:
            order = torch.randperm(groups, generator=self.generator)
            seed = int(torch.randint(1 << 62, (), generator=self.generator))
            mixing = torch.Generator().manual_seed(seed + self.rank)
        else:
            order, mixing = torch.arange(groups), None
        pieces = share_pieces(order.tolist(), self.rows.group_rows, self.rank * self.n_rows, self.n_rows)
        # The first window is one group, since nothing trains while it is read; the next window
        # is read while it trains (on this machine's CPU, training on a group's rows takes longer
        # than reading a window: docs/performance.md).
        windows = [pieces[:1]] + [
            pieces[start : start + self.rows.window_groups]
            for start in range(1, len(pieces), self.rows.window_groups)
        ]
        block = max(1, BLOCK_ROWS // self.local) * self.local  # rows gathered at a time
        carried: tuple[torch.Tensor, torch.Tensor] | None = None  # fewer rows than a batch
        # The next window is read in a thread while this one trains (pyarrow and the copy into
        # the tensors release the GIL): memory holds two windows, and the draws stay in this
        # thread, in order.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="torchtrack-window") as reader:
            pending = reader.submit(self._read, windows[0]) if pieces else None
            for number in range(len(windows) if pieces else 0):
                X, y = pending.result()
                if number + 1 < len(windows):
                    pending = reader.submit(self._read, windows[number + 1])
                taken = torch.randperm(len(X), generator=mixing) if self.shuffle else torch.arange(len(X))
                for index in taken.split(block):
                    rows = gather_rows(X, index), gather_rows(y, index)
                    if carried is not None and len(carried[0]):
                        rows = torch.cat([carried[0], rows[0]]), torch.cat([carried[1], rows[1]])
                    whole = len(rows[0]) // self.local * self.local
                    if whole:  # an empty tensor still splits into one (empty) piece
                        X_whole, y_whole = rows[0][:whole], rows[1][:whole]
                        yield from zip(X_whole.split(self.local), y_whole.split(self.local), strict=True)
                    carried = rows[0][whole:], rows[1][whole:]
                del X, y, taken  # this window goes as soon as it is trained on
        if carried is not None and len(carried[0]):
            yield carried

    def _read(self, window: list[tuple[int, int, int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """The rows of `window`'s pieces, in order: its groups read whole, less the rows before
        the first piece and after the last (only a share's first and last groups are partial)."""
        X, y = self.rows.read_groups([group for group, _, _ in window])
        (_, head, _), (last, _, end) = window[0], window[-1]
        stop = len(X) - (self.rows.group_rows[last] - end)
        return X[head:stop], y[head:stop]


def share_pieces(
    order: list[int], group_rows: list[int], start: int, rows: int
) -> list[tuple[int, int, int]]:
    """The rows `start` to `start + rows` of the groups in `order` (of `group_rows` rows each),
    one after another: (group, first, end) for each group that holds some of them."""
    pieces, offset = [], 0
    for group in order:
        first, end = max(start - offset, 0), min(start + rows - offset, group_rows[group])
        if first < end:
            pieces.append((group, first, end))
        offset += group_rows[group]
    return pieces


def gather_rows(table: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """`table[index]` for a (N, C) table, as one contiguous (len(index), C) block, whatever the
    table's layout: the block, and so every batch cut from it, is the same bits and strides.

    `index_select` is the dedicated gather kernel (advanced indexing, `X[index]`, goes through
    PyTorch's general indexing machinery and was slower). On a column-major table, as
    `from_parquet` and pandas lay X out, a gather along the rows reads C scattered values per
    row; gathering along each column, where the rows sit side by side, and then laying the
    block out row by row was 3-5x faster at 700,000 x 16 (docs/performance.md).
    """
    if table.T.is_contiguous() and not table.is_contiguous():  # column-major
        return table.T.index_select(1, index).T.contiguous()  # (C, n) gathered, then (n, C)
    return table.index_select(0, index)
