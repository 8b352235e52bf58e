"""evaluation.py: regression metrics agree with scikit-learn; predict runs in eval mode without a graph."""

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score
from torch import nn

from torchtrack.evaluation import predict, regression_metrics
from torchtrack.models import RegressionModel

Y_TRUE = np.array([3.0, -0.5, 2.0, 7.0])
Y_PRED = np.array([2.5, 0.0, 2.0, 8.0])


def test_regression_metrics_match_sklearn():
    metrics = regression_metrics(Y_TRUE, Y_PRED)
    assert metrics == pytest.approx(
        {
            "mse": mean_squared_error(Y_TRUE, Y_PRED),
            "rmse": math.sqrt(mean_squared_error(Y_TRUE, Y_PRED)),
            "mae": mean_absolute_error(Y_TRUE, Y_PRED),
            "r2": r2_score(Y_TRUE, Y_PRED),
        }
    )


def test_regression_metrics_match_sklearn_on_a_constant_target():
    constant = np.full(4, 2.0)
    for y_pred in (constant.copy(), Y_PRED):
        assert regression_metrics(constant, y_pred)["r2"] == r2_score(constant, y_pred)


def test_regression_metrics_known_values():
    metrics = regression_metrics(Y_TRUE, Y_PRED)
    # Residuals 0.5, 0.5, 0, 1: MSE 1.5/4, MAE 2/4; R^2 = 1 - 1.5 / sum((y - 2.875)^2) = 1 - 1.5/29.1875.
    assert metrics["mse"] == pytest.approx(0.375)
    assert metrics["rmse"] == pytest.approx(math.sqrt(0.375))
    assert metrics["mae"] == pytest.approx(0.5)
    assert metrics["r2"] == pytest.approx(1 - 1.5 / 29.1875)
    assert all(type(value) is float for value in metrics.values())


def test_perfect_prediction_gives_zero_error_and_r2_one():
    metrics = regression_metrics(Y_TRUE, Y_TRUE.copy())
    assert metrics == {"mse": 0.0, "rmse": 0.0, "mae": 0.0, "r2": 1.0}


def test_predict_returns_flat_model_outputs():
    torch.manual_seed(0)
    model = RegressionModel(in_features=3)
    X = torch.randn(10, 3)
    predictions = predict(model, X, batch_size=4)  # several batches, last one short
    assert isinstance(predictions, np.ndarray)
    assert predictions.shape == (10,)
    np.testing.assert_allclose(predictions, model(X).detach().numpy().reshape(-1), rtol=1e-6)


def test_predict_runs_in_eval_mode_without_building_a_graph():
    model = nn.Sequential(nn.Linear(3, 1), nn.Dropout(p=0.5))
    model.train()
    seen = []
    model.register_forward_hook(lambda module, inputs, output: seen.append((module.training, output)))
    predictions = predict(model, torch.ones(64, 3))
    ((training, output),) = seen
    assert not training
    assert output.grad_fn is None and not output.requires_grad
    assert not model.training  # left in eval mode
    np.testing.assert_allclose(predictions, predictions[0])  # no dropout: every identical row agrees
