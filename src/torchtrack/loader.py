"""Batches for training and validation, fast: the data stays where the model is, and rows are
gathered a block of many batches at a time, not row by row.

    loader = make_loader(resident(train_set, device), batch_size=64, shuffle=True, generator=g)
    for X, y in loader: ...  # (64, F), (64, 1) views of one gathered block
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from functools import partial

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
) -> BlockBatches:
    """Batches of `batch_size` rows from `dataset`; shuffling draws from `generator` for
    reproducibility. With `world_size` > 1, rank `rank`'s share of them: an equal slice of
    every batch (`distributed.shard_rows`), `batch_size // world_size` rows.

    A DataLoader fetches blocks of whole batches (about `BLOCK_ROWS` rows): the sampler
    yields index tensors, on the dataset's `device` if it has one, `dataset[index_tensor]`
    must return the whole block in one indexing operation (TabularDataset does), and
    `batch_size=None` hands it over uncollated. The batches are then views of the block, in
    the order a bare `randperm` loop takes them. In-memory tensors need no worker processes,
    so none are started.
    """
    local = batch_size // world_size  # rows of each batch that this process takes
    block_rows = max(1, BLOCK_ROWS // batch_size) * local
    shard = None
    if world_size > 1:
        shard = partial(shard_rows, batch_size=local * world_size, rank=rank, world_size=world_size)
    device = getattr(dataset, "device", "cpu")
    sampler = BatchIndexSampler(len(dataset), block_rows, shuffle, generator, device, shard)
    loader = DataLoader(dataset, sampler=sampler, batch_size=None, collate_fn=_as_is)
    return BlockBatches(loader, local, sampler.rows)


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
