"""Evidence that each lesson works: small, seeded runs of the library, each a claim that could fail.

Thresholds are the issue's; each run takes a few seconds on one CPU core.
"""

import numpy as np
import pytest
import torch

from torchtrack.config import ModelConfig, TrainConfig
from torchtrack.data import Scaler, load_diabetes, split_indices
from torchtrack.evaluation import least_squares_test_mse, predict, regression_metrics
from torchtrack.models import build_model
from torchtrack.synthetic import make_synthetic
from torchtrack.tabular import TabularDataset
from torchtrack.training import fit, seed_everything

LINEAR = ModelConfig(activation="identity")


def split(frame, target, seed=0):
    """Raw and scaled-as-TabularDataset train/val/test splits, as the prepare stage makes them."""
    rows = split_indices(len(frame), 0.15, 0.15, seed)
    raw = {name: frame.iloc[index].reset_index(drop=True) for name, index in rows.items()}
    scaler = Scaler.fit(raw["train"], target)
    return raw, {name: TabularDataset(scaler.transform(part), target) for name, part in raw.items()}


def train_and_test(datasets, model_config, train_config, seed=0):
    """Train as the train stage does; return the model and its test metrics."""
    generator = seed_everything(seed)
    model = build_model(model_config, in_features=datasets["train"].X.shape[1])
    fit(
        model,
        datasets["train"],
        datasets["val"],
        train_config,
        generator=generator,
        device=torch.device("cpu"),
    )
    y_true = datasets["test"].y.numpy().reshape(-1).astype(np.float64)
    return model, regression_metrics(y_true, predict(model, datasets["test"].X))


def sklearn_test_mse(raw, target):
    """scikit-learn's LinearRegression fitted on the same raw train split, scored on the test split."""
    from sklearn.linear_model import LinearRegression

    features = [c for c in raw["train"].columns if c != target]
    fitted = LinearRegression().fit(raw["train"][features], raw["train"][target])
    return float(np.mean((fitted.predict(raw["test"][features]) - raw["test"][target]) ** 2))


def test_least_squares_reference_matches_sklearn_in_chunks():
    from sklearn.linear_model import LinearRegression

    rng = np.random.default_rng(1)
    X = rng.normal(size=(1000, 5)) * [1, 10, 0.1, 3, 1] + 2
    y = X @ rng.normal(size=5) + rng.normal(size=1000)
    fitted = LinearRegression().fit(X[:800], y[:800])
    expected = np.mean((fitted.predict(X[800:]) - y[800:]) ** 2)
    assert least_squares_test_mse(X[:800], y[:800], X[800:], y[800:], chunk_rows=64) == pytest.approx(
        expected, rel=1e-9
    )


def test_least_squares_reference_is_exact():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(50, 3))
    y = X @ np.array([1.0, -2.0, 0.5]) + 4.0
    assert least_squares_test_mse(X[:40], y[:40], X[40:], y[40:]) == pytest.approx(0.0, abs=1e-20)
    noisy = y + rng.normal(size=50)
    design = np.column_stack([X[:40], np.ones(40)])
    coef, *_ = np.linalg.lstsq(design, noisy[:40], rcond=None)
    expected = np.mean((np.column_stack([X[40:], np.ones(10)]) @ coef - noisy[40:]) ** 2)
    assert least_squares_test_mse(X[:40], noisy[:40], X[40:], noisy[40:]) == pytest.approx(expected)


def test_linear_regression_matches_sklearn_on_linear_data():
    frame, _ = make_synthetic(2000, 4, 0.3, seed=0, family="linear")
    raw, datasets = split(frame, "y")
    _, metrics = train_and_test(
        datasets, LINEAR, TrainConfig(lr=0.05, epochs=40, batch_size=64, lr_schedule="cosine")
    )
    assert metrics["mse"] == pytest.approx(sklearn_test_mse(raw, "y"), rel=0.01)


def test_linear_regression_matches_sklearn_on_diabetes():
    frame, target = load_diabetes()
    raw, datasets = split(frame, target, seed=42)
    # The target is in the hundreds: a large lr reaches it, the cosine schedule settles the fit.
    _, metrics = train_and_test(
        datasets, LINEAR, TrainConfig(lr=2.0, epochs=300, batch_size=32, lr_schedule="cosine"), seed=42
    )
    assert metrics["mse"] == pytest.approx(sklearn_test_mse(raw, target), rel=0.01)


def test_tanh_plus_x_model_reaches_the_noise_variance_on_tanh_plus_x_data():
    frame, truth = make_synthetic(5000, 8, 0.3, seed=0, family="tanh_plus_x")
    raw, datasets = split(frame, "y")
    _, metrics = train_and_test(datasets, ModelConfig(), TrainConfig())  # the default pipeline's settings
    test_X = raw["test"].drop(columns="y").to_numpy()
    # The noise variance on these very test rows: the true rule's own test MSE.
    noise_variance = float(np.mean((raw["test"]["y"] - truth.clean_target(test_X)) ** 2))
    assert metrics["mse"] <= 1.02 * noise_variance


@pytest.mark.parametrize("activation", ["learnable_tanh_plus_x", "manual_grad_tanh_plus_x"])
def test_learnable_activation_recovers_a_and_b(activation):
    a, b = 2.0, 0.5
    frame, _ = make_synthetic(5000, 8, 0.3, seed=0, family="scaled_tanh", scaled_tanh_a=a, scaled_tanh_b=b)
    _, datasets = split(frame, "y")
    model, _ = train_and_test(
        datasets,
        ModelConfig(activation=activation),
        TrainConfig(lr=0.05, epochs=30, batch_size=64, lr_schedule="cosine"),
    )
    found_a, found_b = model.activation.a.item(), model.activation.b.item()
    sign = np.sign(found_b)  # tanh(-z) = -tanh(z): (-a, -b) on -z is the same function
    assert sign * found_a == pytest.approx(a, rel=0.05)
    assert sign * found_b == pytest.approx(b, rel=0.05)


def test_hand_written_backward_trains_exactly_like_autograd():
    frame, _ = make_synthetic(1000, 3, 0.3, seed=1, family="scaled_tanh")
    _, datasets = split(frame, "y")
    found = [
        train_and_test(datasets, ModelConfig(activation=name), TrainConfig(epochs=5, batch_size=64))[0]
        for name in ("learnable_tanh_plus_x", "manual_grad_tanh_plus_x")
    ]
    for autograd_param, manual_param in zip(*(m.parameters() for m in found), strict=True):
        torch.testing.assert_close(manual_param, autograd_param, rtol=1e-4, atol=1e-5)


def test_huber_beats_mse_on_outliers_in_test_mae():
    frame, _ = make_synthetic(3000, 8, 0.3, seed=0, family="outliers")
    _, datasets = split(frame, "y")
    settings = {"epochs": 20, "batch_size": 64}
    _, mse = train_and_test(datasets, ModelConfig(), TrainConfig(loss="mse", **settings))
    _, huber = train_and_test(datasets, ModelConfig(), TrainConfig(loss="huber", **settings))
    assert huber["mae"] < mse["mae"]


def test_mlp_at_least_halves_the_linear_models_mse_on_nonlinear_data():
    frame, _ = make_synthetic(3000, 8, 0.3, seed=0, family="nonlinear")
    _, datasets = split(frame, "y")
    _, linear = train_and_test(datasets, LINEAR, TrainConfig(epochs=20, batch_size=64))
    _, mlp = train_and_test(
        datasets,
        ModelConfig(kind="mlp", activation="relu", hidden_sizes=(32, 32)),
        TrainConfig(epochs=30, batch_size=64, lr_schedule="cosine"),
    )
    assert mlp["mse"] <= 0.5 * linear["mse"]
