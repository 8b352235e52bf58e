"""models.py: tanh(x)+x, the linear regression model, and rebuildable checkpoints."""

import pytest
import torch
from torch import nn

from torchtrack.activations import TanhPlusX, tanh_plus_x
from torchtrack.config import ModelConfig
from torchtrack.errors import DataError
from torchtrack.models import (
    RegressionModel,
    build_model,
    load_checkpoint,
    save_checkpoint,
)


def test_tanh_plus_x_matches_torch():
    x = torch.linspace(-5.0, 5.0, 101)
    torch.testing.assert_close(tanh_plus_x(x), torch.tanh(x) + x)
    torch.testing.assert_close(TanhPlusX()(x), torch.tanh(x) + x)


def test_tanh_plus_x_module_has_no_parameters():
    assert list(TanhPlusX().parameters()) == []


def test_regression_model_constructs_with_no_arguments():
    model = RegressionModel()
    assert model.linear.in_features == 1
    assert isinstance(model.activation, TanhPlusX)
    assert model(torch.zeros(3, 1)).shape == (3, 1)


@pytest.mark.parametrize("batch_size", [1, 7, 64])
def test_regression_model_maps_batch_by_features_to_batch_by_one(batch_size):
    model = RegressionModel(in_features=5)
    assert model(torch.randn(batch_size, 5)).shape == (batch_size, 1)


def test_regression_model_applies_activation_to_linear_output():
    torch.manual_seed(0)
    model = RegressionModel(in_features=3)
    x = torch.randn(10, 3)
    torch.testing.assert_close(model(x), tanh_plus_x(x @ model.linear.weight.T + model.linear.bias))


def test_identity_activation_makes_model_plain_linear():
    torch.manual_seed(0)
    model = RegressionModel(in_features=3, activation="identity")
    x = torch.randn(10, 3)
    torch.testing.assert_close(model(x), x @ model.linear.weight.T + model.linear.bias)


def test_unknown_activation_raises_value_error_naming_allowed():
    with pytest.raises(ValueError, match="'swish'.*identity, tanh_plus_x.*relu"):
        RegressionModel(activation="swish")


def test_build_model_follows_config():
    model = build_model(ModelConfig(activation="identity"), in_features=4)
    assert model.linear.in_features == 4
    assert isinstance(model.activation, nn.Identity)


# checkpoints


def saved_model(tmp_path, activation: str = "tanh_plus_x"):
    torch.manual_seed(0)
    model = RegressionModel(in_features=3, activation=activation)
    path = tmp_path / "model.pt"
    extra = {"features": ["a", "b", "c"], "target": "y", "scaler": {"mean": [0.0, 1.0, 2.0]}}
    save_checkpoint(path, model, ModelConfig(activation=activation), extra)
    return model, path, extra


@pytest.mark.parametrize("activation", ["tanh_plus_x", "identity"])
def test_checkpoint_round_trip_gives_identical_outputs(tmp_path, activation):
    model, path, extra = saved_model(tmp_path, activation)
    loaded, payload = load_checkpoint(path)
    x = torch.randn(16, 3)
    assert torch.equal(loaded(x), model(x))
    assert type(loaded.activation) is type(model.activation)
    assert not loaded.training
    assert {k: payload[k] for k in extra} == extra


def test_checkpoint_loads_with_weights_only(tmp_path):
    model, path, _ = saved_model(tmp_path)
    payload = torch.load(path, weights_only=True)
    assert torch.equal(payload["state_dict"]["linear.weight"], model.linear.weight.detach())
    assert payload["model"] == {
        "in_features": 3,
        "kind": "linear",
        "activation": "tanh_plus_x",
        "hidden_sizes": (64, 64),
        "dropout": 0.0,
    }


def test_save_checkpoint_leaves_no_temp_file(tmp_path):
    _, path, _ = saved_model(tmp_path)
    assert list(tmp_path.iterdir()) == [path]


def test_load_checkpoint_missing_path_raises_data_error(tmp_path):
    with pytest.raises(DataError, match="train"):
        load_checkpoint(tmp_path / "model.pt")
