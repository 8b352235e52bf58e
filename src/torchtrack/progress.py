"""Training progress for people: a tqdm bar with the current loss on a terminal, one line per
epoch elsewhere (DVC logs, CI), where a redrawn bar would only fill the log with noise.
"""

from __future__ import annotations

import sys

from torchtrack.training import STEP_LOSS


class TrainingProgress:
    """Shows a run of `epochs` epochs of `steps_per_epoch` optimizer steps each; a context manager.

    A logger for `fit` (training.TrainingLogger): the bar moves at each logged step loss (its
    loss text changes no more often) and each epoch's end. `bar=None` draws the bar only when
    stderr is a terminal.
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

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        """A batch loss (STEP_LOSS) at global optimizer step `step` (1-based), or the end of
        epoch `step` with its mean `train_loss` and `val_loss`."""
        if STEP_LOSS in metrics:
            self._step(step, metrics[STEP_LOSS])
        if "val_loss" in metrics:
            self._epoch(step, metrics["train_loss"], metrics["val_loss"])

    def _step(self, step: int, loss: float) -> None:
        if self._bar is not None:
            self._bar.set_postfix_str(f"loss {loss:.5f}", refresh=False)
            self._bar.update(step - self._bar.n)  # redraws at most every 0.1 s

    def _epoch(self, epoch: int, train_loss: float, val_loss: float) -> None:
        summary = f"train_loss {train_loss:.5f}  val_loss {val_loss:.5f}"
        if self._bar is None:
            print(f"epoch {epoch:3d}/{self.epochs}  {summary}", flush=True)
            return
        self._bar.update(epoch * self.steps_per_epoch - self._bar.n)
        if epoch < self.epochs:
            self._bar.set_description_str(f"epoch {epoch + 1}/{self.epochs}", refresh=False)
        self._bar.set_postfix_str(summary, refresh=True)

    def close(self) -> None:
        """Leave the finished bar on screen and move to the next line."""
        if self._bar is not None:
            self._bar.close()

    def __enter__(self) -> TrainingProgress:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
