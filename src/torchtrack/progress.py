"""Training progress for people: a tqdm bar with the current loss on a terminal, one line per
epoch elsewhere (DVC logs, CI), where a redrawn bar would only fill the log with noise.
"""

from __future__ import annotations

import sys

from torchtrack.training import EpochResult


class TrainingProgress:
    """Shows a run of `epochs` epochs of `steps_per_epoch` optimizer steps each; a context manager.

    `bar=None` draws the bar only when stderr is a terminal. Feed it `step(step, loss)` at the
    logging interval (the bar's loss text changes no more often) and `epoch(result)` per epoch.
    """

    def __init__(self, epochs: int, steps_per_epoch: int, bar: bool | None = None):
        self.epochs = epochs
        self.steps_per_epoch = steps_per_epoch
        self._bar = None
        show_bar = sys.stderr.isatty() if bar is None else bar
        if show_bar:
            from tqdm import tqdm

            self._bar = tqdm(
                total=epochs * steps_per_epoch,
                desc=f"epoch 1/{epochs}",
                unit="step",
                file=sys.stderr,
                dynamic_ncols=True,
            )

    def step(self, step: int, loss: float) -> None:
        """Global optimizer step `step` (1-based) has just had batch loss `loss`."""
        if self._bar is not None:
            self._bar.set_postfix_str(f"loss {loss:.5f}", refresh=False)
            self._bar.update(step - self._bar.n)  # redraws at most every 0.1 s

    def epoch(self, result: EpochResult) -> None:
        """Epoch `result.epoch` has ended with these mean train and val losses."""
        summary = f"train_loss {result.train_loss:.5f}  val_loss {result.val_loss:.5f}"
        if self._bar is None:
            print(f"epoch {result.epoch:3d}/{self.epochs}  {summary}", flush=True)
            return
        self._bar.update(result.epoch * self.steps_per_epoch - self._bar.n)
        if result.epoch < self.epochs:
            self._bar.set_description_str(f"epoch {result.epoch + 1}/{self.epochs}", refresh=False)
        self._bar.set_postfix_str(summary, refresh=True)

    def close(self) -> None:
        """Leave the finished bar on screen and move to the next line."""
        if self._bar is not None:
            self._bar.close()

    def __enter__(self) -> TrainingProgress:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
