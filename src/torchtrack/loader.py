"""Batches for training and validation, fast: the data stays where the model is, and rows are
gathered a block of many batches at a time, not row by row.

    loader = make_loader(resident(train_set, device), batch_size=64, shuffle=True, generator=g)
    for X, y in loader: ...  # (64, F), (64, 1) views of one gathered block
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

# Rows gathered per indexing operation (and per chunk wherever a split is processed in pieces):
# a few MB, however large the split.
BLOCK_ROWS = 65_536


def make_loader(
    dataset: Dataset, batch_size: int, shuffle: bool, generator: torch.Generator | None = None
) -> BlockBatches:
    """Batches of `batch_size` rows from `dataset`; shuffling draws from `generator` for
    reproducibility.

    A DataLoader fetches blocks of whole batches (about `BLOCK_ROWS` rows): the sampler
    yields index tensors, on the dataset's `device` if it has one, `dataset[index_tensor]`
    must return the whole block in one indexing operation (TabularDataset does), and
    `batch_size=None` hands it over uncollated. The batches are then views of the block, in
    the order a bare `randperm` loop takes them. In-memory tensors need no worker processes,
    so none are started.
    """
    block_rows = max(1, BLOCK_ROWS // batch_size) * batch_size
    device = getattr(dataset, "device", "cpu")
    sampler = BatchIndexSampler(len(dataset), block_rows, shuffle, generator, device)
    loader = DataLoader(dataset, sampler=sampler, batch_size=None, collate_fn=_as_is)
    return BlockBatches(loader, batch_size, len(dataset))


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
    once per epoch.
    """

    def __init__(
        self,
        n_rows: int,
        batch_size: int,
        shuffle: bool = True,
        generator: torch.Generator | None = None,
        device: torch.device | str = "cpu",
    ):
        self.n_rows, self.batch_size, self.shuffle, self.generator = n_rows, batch_size, shuffle, generator
        self.device = torch.device(device)

    def __len__(self) -> int:
        return -(-self.n_rows // self.batch_size)

    def __iter__(self) -> Iterator[torch.Tensor]:
        if self.shuffle:
            order = torch.randperm(self.n_rows, generator=self.generator)
        else:
            order = torch.arange(self.n_rows)
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
