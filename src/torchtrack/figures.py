"""Figures for humans: loss curves (train) and predicted-vs-actual with residuals (evaluate).

Each returns a matplotlib Figure built without pyplot, so no display and no global state;
`save_figure` writes one as a stage output.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from torchtrack.files import write_atomic
from torchtrack.profiling import timed


@timed("figures")
def predictions_figure(y_true: np.ndarray, y_pred: np.ndarray) -> Figure:
    """Predicted vs actual, residuals vs predicted, and the residual histogram, side by side,
    of the rows given: evaluate gives a seeded sample of the test rows (at most its
    FIGURE_ROWS, in file order), so that neither the figure nor memory grows with the table."""
    fig = Figure(figsize=(14, 4.5))
    left, middle, right = fig.subplots(1, 3)
    left.scatter(y_true, y_pred, s=4, alpha=0.4)
    low, high = float(min(y_true.min(), y_pred.min())), float(max(y_true.max(), y_pred.max()))
    left.plot([low, high], [low, high], color="black", linewidth=1, label="perfect")
    left.set(xlabel="actual", ylabel="predicted", title="Test set: predicted vs actual")
    left.legend()
    residuals = y_pred - y_true
    # A pattern here (a bend, a funnel) is structure the model missed; noise looks like a flat band.
    middle.scatter(y_pred, residuals, s=4, alpha=0.4)
    middle.axhline(0.0, color="black", linewidth=1)
    middle.set(xlabel="predicted", ylabel="predicted - actual", title="Residuals vs predicted")
    right.hist(residuals, bins=50)
    right.set(xlabel="predicted - actual", ylabel="rows", title="Residuals")
    fig.tight_layout()
    return fig


@timed("figures")
def loss_figure(epochs: list[int], train_loss: list[float], val_loss: list[float]) -> Figure:
    """Training and validation loss per epoch, as a matplotlib figure."""
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    ax.plot(epochs, train_loss, label="train")
    ax.plot(epochs, val_loss, label="val")
    ax.set(xlabel="epoch", ylabel="loss", yscale="log", title="Loss")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend()
    fig.tight_layout()
    return fig


@timed("figures")
def save_figure(figure: Figure, path: Path) -> None:
    """Write `figure` to `path` atomically, in the format its suffix names."""
    path = Path(path)
    write_atomic(path, lambda tmp: figure.savefig(tmp, dpi=100, format=path.suffix.lstrip(".")))
