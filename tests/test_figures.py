"""figures: loss curves from train, predicted-vs-actual and residual plots from evaluate, saved as
PNG and logged to both trackers."""

from __future__ import annotations

import numpy as np
import pytest

from torchtrack.figures import loss_figure, predictions_figure

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
