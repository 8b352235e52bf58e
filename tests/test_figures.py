"""figures: loss curves from train, predicted-vs-actual and residual plots from evaluate, saved as
PNG and logged to both trackers."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest

from torchtrack.figures import draw, loss_figure, predictions_figure

pytest_plugins = ["trained_project"]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_predictions_figure_shows_fit_residual_pattern_and_residual_spread():
    rng = np.random.default_rng(0)
    y_true = rng.normal(size=200)
    y_pred = y_true + rng.normal(scale=0.1, size=200)
    titles = [ax.get_title() for ax in predictions_figure(y_true, y_pred).axes]
    assert titles == ["Test set: predicted vs actual", "Residuals vs predicted", "Residuals"]


def test_loss_figure_labels_epochs_with_whole_numbers():
    fig = loss_figure([1, 2, 3], [0.5, 0.2, 0.1], [0.6, 0.3, 0.2])
    fig.canvas.draw()
    ticks = fig.axes[0].get_xticks()
    assert np.array_equal(ticks, np.round(ticks))


@pytest.mark.parametrize(("stage", "name"), [("train", "loss"), ("evaluate", "predictions")])
def test_each_figure_is_a_png_in_plots_and_logged_to_mlflow_and_tensorboard(trained_project, stage, name):
    from mlflow import MlflowClient
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    png = trained_project.root / "plots" / f"{name}.png"
    assert png.read_bytes().startswith(PNG_SIGNATURE)

    model_run = trained_project.model_run().info.run_id
    logged = MlflowClient(trained_project.tracking_uri).list_artifacts(model_run, "figures")
    assert f"figures/{name}.png" in [artifact.path for artifact in logged]

    (log_dir,) = (trained_project.root / "runs" / stage).iterdir()
    events = EventAccumulator(str(log_dir), size_guidance={"images": 0})
    events.Reload()
    (image,) = events.Images(name)
    assert image.encoded_image_string == png.read_bytes()  # the figure is drawn once, for both


def test_both_figures_save_as_png_files(tmp_path):
    rng = np.random.default_rng(0)
    y_true = rng.normal(size=200)
    figures = {
        "predictions": predictions_figure(y_true, y_true + rng.normal(0.0, 0.1, 200)),
        "loss": loss_figure([1, 2, 3], [1.0, 0.5, 0.2], [1.1, 0.6, 0.3]),
    }
    for name, fig in figures.items():
        fig.savefig(tmp_path / f"{name}.png")
        assert (tmp_path / f"{name}.png").read_bytes().startswith(PNG_SIGNATURE)
    assert [line.get_label() for line in figures["loss"].axes[0].get_lines()] == ["train", "val"]


def test_a_figure_has_the_same_bytes_rendered_by_the_store_daemon_or_the_stage_whatever_the_matplotlibrc(
    workdir,
):
    """The daemon renders in its own process (started from /), the stage in the project's folder,
    whose matplotlibrc would restyle the figure: both draw in matplotlib's default style."""
    (workdir / "matplotlibrc").write_text("lines.linewidth: 6\nfigure.facecolor: red\nfont.size: 20\n")
    probe = textwrap.dedent(
        """
        import sys

        import numpy as np
        import pandas as pd

        from torchtrack.figures import draw
        from torchtrack.tracking.client import DaemonClient
        from torchtrack.tracking.location import tracking_uri

        actual = np.random.default_rng(0).normal(size=500).astype("float32")
        table = pd.DataFrame({"actual": actual, "predicted": actual * np.float32(0.9)})
        loss = pd.DataFrame({"epoch": [1, 2, 3], "train_loss": [1.0, 0.5, 0.25], "val_loss": [1.1, 0.6, 0.3]})
        daemon = DaemonClient(tracking_uri())
        draw("predictions", table, "daemon.png", daemon)
        draw("loss", loss, "daemon-loss.png", daemon)
        print("matplotlib" in sys.modules)
        draw("predictions", table, "stage.png")
        draw("loss", loss, "stage-loss.png")
        """
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False"]  # the daemon's figures import nothing of matplotlib's in the stage
    assert (workdir / "daemon.png").read_bytes() == (workdir / "stage.png").read_bytes()
    assert (workdir / "daemon-loss.png").read_bytes() == (workdir / "stage-loss.png").read_bytes()
    (workdir / "matplotlibrc").unlink()
    draw("predictions", pd.DataFrame({"actual": [0.0, 1.0], "predicted": [0.1, 0.9]}), workdir / "plain.png")
    assert (workdir / "plain.png").read_bytes().startswith(PNG_SIGNATURE)


def test_a_table_without_the_figure_s_columns_is_refused_and_writes_nothing(tmp_path):
    with pytest.raises(ValueError, match=r"no loss figure of the columns \['epoch', 'loss'\]"):
        draw("loss", pd.DataFrame({"epoch": [1], "loss": [1.0]}), tmp_path / "loss.png")
    with pytest.raises(ValueError, match="no histogram figure"):
        draw("histogram", pd.DataFrame({"x": [1.0]}), tmp_path / "histogram.png")
    assert list(tmp_path.iterdir()) == []
