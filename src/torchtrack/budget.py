"""The step budget: how many rows a batch takes and how many epochs a run lasts, from
`train.max_steps` optimizer steps on a split of a given size.

    plan = Budget.plan(config.train, n_rows=274)  # batch 27, 11 steps per epoch, 182 epochs

A fixed epoch count gives a table of a few hundred rows a few dozen steps and one of a
million rows a few hundred thousand; a budget of steps gives every table about the same
amount of fitting (docs/training-recipe.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from torchtrack.config import TrainConfig

# A batch is at most this share of the train rows, so an epoch is at least this many steps:
# 256-row batches on 274 rows would be one full batch and one of 18 rows per epoch.
MIN_STEPS_PER_EPOCH = 10


@dataclass(frozen=True)
class Budget:
    """The shape of one training run: rows per batch, steps per epoch, epochs."""

    batch_size: int
    steps_per_epoch: int
    epochs: int

    @property
    def steps(self) -> int:
        """Optimizer steps over the whole run: `max_steps` rounded up to whole epochs (or the cap)."""
        return self.steps_per_epoch * self.epochs

    @classmethod
    def plan(cls, config: TrainConfig, n_rows: int, world_size: int = 1) -> Budget:
        """The run `config` asks for on `n_rows` train rows, split over `world_size` processes.

        The batch is `config.batch_size`, but at most 1/MIN_STEPS_PER_EPOCH of the rows (at
        least one row per process, and a multiple of `world_size`, so every process takes an
        equal share); the epochs are as many as `config.max_steps` steps take, rounded up,
        and at most `config.epochs` when that is set.
        """
        largest = max(n_rows // MIN_STEPS_PER_EPOCH, 1)
        batch_size = max(min(config.batch_size, largest) // world_size * world_size, world_size)
        steps_per_epoch = max(math.ceil(n_rows / batch_size), 1)
        epochs = math.ceil(config.max_steps / steps_per_epoch)
        if config.epochs is not None:
            epochs = min(epochs, config.epochs)
        return cls(batch_size, steps_per_epoch, epochs)
