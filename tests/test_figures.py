"""figures.py: each figure function returns a matplotlib Figure that saves as a PNG."""

import numpy as np
from matplotlib.figure import Figure

from torchtrack.figures import loss_figure, predictions_figure

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def saves_as_png(fig: Figure, path) -> bool:
    fig.savefig(path)
    data = path.read_bytes()
    return len(data) > len(PNG_MAGIC) and data.startswith(PNG_MAGIC)


def test_predictions_figure_saves_to_png(tmp_path):
    rng = np.random.default_rng(0)
    y_true = rng.normal(size=200)
    fig = predictions_figure(y_true, y_true + rng.normal(0.0, 0.1, 200))
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 2
    assert saves_as_png(fig, tmp_path / "predictions.png")


def test_loss_figure_saves_to_png(tmp_path):
    fig = loss_figure([1, 2, 3], [1.0, 0.5, 0.2], [1.1, 0.6, 0.3])
    assert isinstance(fig, Figure)
    assert [line.get_label() for line in fig.axes[0].get_lines()] == ["train", "val"]
    assert saves_as_png(fig, tmp_path / "loss.png")
