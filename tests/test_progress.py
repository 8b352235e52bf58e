"""progress: a bar with the current loss on a terminal, one concise line per epoch elsewhere."""

from __future__ import annotations

import time

from torchtrack.progress import TrainingProgress
from torchtrack.training import STEP_LOSS, EpochResult, epoch_metrics


def test_without_a_terminal_each_epoch_is_one_line_and_steps_print_nothing(capsys):
    with TrainingProgress(epochs=2, steps_per_epoch=5) as progress:  # pytest's stderr is no terminal
        progress.log_metrics({STEP_LOSS: 0.9}, 5)
        progress.log_metrics(epoch_metrics(EpochResult(1, train_loss=0.5, val_loss=0.25)), 1)
        progress.log_metrics({STEP_LOSS: 0.1}, 10)
        progress.log_metrics(epoch_metrics(EpochResult(2, train_loss=0.125, val_loss=0.0625)), 2)
    captured = capsys.readouterr()
    assert captured.out.splitlines() == [
        "epoch   1/2  train_loss 0.50000  val_loss 0.25000",
        "epoch   2/2  train_loss 0.12500  val_loss 0.06250",
    ]
    assert captured.err == ""


def test_on_a_terminal_a_bar_shows_the_epoch_the_step_and_the_current_loss(capsys):
    with TrainingProgress(epochs=2, steps_per_epoch=10, bar=True) as progress:
        time.sleep(0.15)  # tqdm redraws at most every 0.1 s between forced refreshes
        progress.log_metrics({STEP_LOSS: 0.98765}, 5)
        step_frame = capsys.readouterr().err.split("\r")[-1]
        progress.log_metrics(epoch_metrics(EpochResult(1, train_loss=0.5, val_loss=0.25)), 1)
        epoch_frame = capsys.readouterr().err.split("\r")[-1]
    assert "epoch 1/2" in step_frame and "5/20" in step_frame and "loss 0.98765" in step_frame
    assert "epoch 2/2" in epoch_frame and "10/20" in epoch_frame
    assert "train_loss 0.50000  val_loss 0.25000" in epoch_frame
    assert capsys.readouterr().out == ""  # no per-epoch lines under the bar


def test_the_bar_ends_full_after_the_last_epoch(capsys):
    with TrainingProgress(epochs=1, steps_per_epoch=7, bar=True) as progress:
        progress.log_metrics(epoch_metrics(EpochResult(1, train_loss=0.5, val_loss=0.25)), 1)
    last_frame = capsys.readouterr().err.strip().split("\r")[-1]
    assert "epoch 1/1" in last_frame and "7/7" in last_frame and "100%" in last_frame
