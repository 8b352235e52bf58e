"""Figures for humans: loss curves (train) and predicted-vs-actual with residuals (evaluate).

`draw` writes one from a table as a stage output. It is rendered here, or in the store daemon
(tracking/backend/daemon.py), which has matplotlib imported and warm already (over half a second
of a stage's CPU otherwise) and sends back the image's bytes, which the stage writes. Either way
this code renders it, in matplotlib's default style (no matplotlibrc of the user's or the
folder's), so the bytes do not depend on where. Figures are built without pyplot: no display
and no global state."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from torchtrack.files import write_atomic
from torchtrack.profiling import timed

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

# kind -> the table's columns, in order
COLUMNS = {
    "predictions": ("actual", "predicted"),
    "loss": ("epoch", "train_loss", "val_loss"),
}


class Painter(Protocol):
    """What draws a figure in another process: the store daemon's client."""

    def render_figure(self, kind: str, table: pd.DataFrame, image_format: str) -> str:
        """`render`'s bytes, in base64 (the daemon's answers are JSON)."""
        ...


@timed("figures")
def draw(kind: str, table: pd.DataFrame, path: Path, painter: Painter | None = None) -> None:
    """The figure `kind` of `table` (COLUMNS[kind] named) written to `path` atomically, in the
    format its suffix names; rendered by `painter` when given (the store daemon), else here."""
    path, image_format = Path(path), Path(path).suffix.lstrip(".")
    check_table(kind, table)
    if painter is not None:
        data = base64.b64decode(painter.render_figure(kind, table, image_format), validate=True)
        write_atomic(path, lambda tmp: tmp.write_bytes(data))
    else:
        write_atomic(path, lambda tmp: render(kind, table, tmp, image_format))


def check_table(kind: str, table: pd.DataFrame) -> None:
    """ValueError unless `kind` is a figure and `table` has its COLUMNS, in order."""
    if kind not in COLUMNS or list(table.columns) != list(COLUMNS[kind]):
        raise ValueError(f"no {kind} figure of the columns {list(table.columns)}: the figures are {COLUMNS}")


def render(kind: str, table: pd.DataFrame, out: Any, image_format: str) -> None:
    """The figure `kind` of `table` saved to `out` (a path or a file object), in the default style."""
    from matplotlib import style

    with style.context("default"):
        if kind == "predictions":
            figure = predictions_figure(table["actual"].to_numpy(), table["predicted"].to_numpy())
        else:
            epochs, train, val = (table[column].tolist() for column in COLUMNS["loss"])
            figure = loss_figure(epochs, train, val)
        figure.savefig(out, dpi=100, format=image_format)


def predictions_figure(y_true: Any, y_pred: Any) -> Figure:
    """Predicted vs actual, residuals vs predicted, and the residual histogram, side by side,
    of the rows given: evaluate gives a seeded sample of the test rows (at most its
    FIGURE_ROWS, in file order), so that neither the figure nor memory grows with the table."""
    from matplotlib.figure import Figure

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


def loss_figure(epochs: list[int], train_loss: list[float], val_loss: list[float]) -> Figure:
    """Training and validation loss per epoch, as a matplotlib figure."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    ax.plot(epochs, train_loss, label="train")
    ax.plot(epochs, val_loss, label="val")
    ax.set(xlabel="epoch", ylabel="loss", yscale="log", title="Loss")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend()
    fig.tight_layout()
    return fig


def warm_up() -> None:
    """Import matplotlib and draw a small figure of each kind in memory (fonts, the Agg renderer,
    lines and markers): what the store daemon does while train trains, so that neither train's
    figure nor evaluate's first waits for that work."""
    import io

    import pandas as pd

    tables = {
        "loss": pd.DataFrame({"epoch": [1, 2], "train_loss": [1.0, 0.5], "val_loss": [1.0, 0.6]}),
        "predictions": pd.DataFrame({"actual": [0.0, 1.0], "predicted": [0.1, 0.9]}),
    }
    for kind, table in tables.items():
        render(kind, table, io.BytesIO(), "png")
