"""Models: linear regression with any activation and the MLP, built from params by one factory,
saved and rebuilt from checkpoints, exportable with torch.export."""

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from torchtrack.config import ModelConfig, config_from_dict
from torchtrack.errors import ConfigError
from torchtrack.models import MLP, RegressionModel, build_model, load_checkpoint, save_checkpoint


def test_one_feature_regression_model_constructs_with_no_arguments():
    model = RegressionModel()
    assert model(torch.tensor([[0.5]])).shape == (1, 1)


def test_mlp_constructs_with_no_arguments_and_takes_any_batch_size():
    model = MLP()
    for batch in (1, 7, 512):
        out = model(torch.randn(batch, 1))
        assert out.shape == (batch, 1) and out.dtype == torch.float32


def test_mlp_stacks_linear_activation_and_dropout_per_hidden_size():
    model = MLP(5, hidden_sizes=(8, 4), activation="gelu", dropout=0.2)
    kinds = [type(layer) for layer in model.layers]
    assert kinds == [nn.Linear, nn.GELU, nn.Dropout, nn.Linear, nn.GELU, nn.Dropout, nn.Linear]
    widths = [(m.in_features, m.out_features) for m in model.layers if isinstance(m, nn.Linear)]
    assert widths == [(5, 8), (8, 4), (4, 1)]


def test_mlp_without_dropout_has_no_dropout_layers():
    assert not any(isinstance(m, nn.Dropout) for m in MLP(2, (3,), dropout=0.0).modules())


def test_dropout_is_active_in_train_mode_only():
    model = MLP(4, (256,), dropout=0.5)
    x = torch.randn(3, 4)
    model.train()
    assert not torch.equal(model(x), model(x))
    model.eval()
    torch.testing.assert_close(model(x), model(x))


@pytest.mark.parametrize("bad", [(), (8, 0), (-3,), (2.5,), (True,)])
def test_mlp_hidden_sizes_must_be_positive_integers(bad):
    with pytest.raises(ValueError, match="hidden_sizes must be a non-empty list of positive integers"):
        MLP(2, hidden_sizes=bad)


@pytest.mark.parametrize(
    ("hidden_sizes", "message"),
    [
        ([32, 0], r"model.hidden_sizes\[1\] must be >= 1, got 0"),
        ([-1], r"model.hidden_sizes\[0\] must be >= 1, got -1"),
        ([16, 2.5], r"model.hidden_sizes\[1\] must be an integer, got float 2.5"),
        ([], "model.hidden_sizes must be a non-empty list"),
        (64, "model.hidden_sizes must be a non-empty list"),
    ],
)
def test_params_hidden_sizes_must_be_a_list_of_positive_integers(hidden_sizes, message):
    with pytest.raises(ConfigError, match=message):
        config_from_dict({"model": {"hidden_sizes": hidden_sizes}})


def test_params_hidden_sizes_become_a_tuple():
    assert config_from_dict({"model": {"hidden_sizes": [32, 16]}}).model.hidden_sizes == (32, 16)


def test_factory_builds_linear_regression_and_mlp():
    linear = build_model(ModelConfig(kind="linear", activation="identity"), in_features=3)
    assert isinstance(linear, RegressionModel) and isinstance(linear.activation, nn.Identity)
    mlp = build_model(ModelConfig(kind="mlp", activation="relu", hidden_sizes=(6, 5), dropout=0.1), 3)
    assert isinstance(mlp, MLP)
    assert [m.out_features for m in mlp.layers if isinstance(m, nn.Linear)] == [6, 5, 1]


def test_factory_names_the_allowed_model_kinds():
    """A ModelConfig cannot hold an unknown kind; a look-alike object that does is refused too."""
    with pytest.raises(ValueError, match="kind"):
        ModelConfig(kind="cnn")
    with pytest.raises(ValueError, match="unknown model kind 'cnn'; allowed: linear, mlp"):
        build_model(SimpleNamespace(kind="cnn"), 2)


@pytest.mark.parametrize(
    "config",
    [
        ModelConfig(),
        ModelConfig(activation="learnable_tanh_plus_x"),
        ModelConfig(kind="mlp", activation="manual_grad_tanh_plus_x", hidden_sizes=(4, 3), dropout=0.1),
    ],
)
def test_checkpoint_rebuilds_the_same_model(tmp_path, config):
    torch.manual_seed(0)
    model = build_model(config, in_features=3)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn_like(param))  # not the initial values a rebuild would have
    save_checkpoint(tmp_path / "model.pt", model, config, {"features": ["a", "b", "c"]})
    loaded, payload = load_checkpoint(tmp_path / "model.pt")
    assert type(loaded) is type(model) and payload["features"] == ["a", "b", "c"]
    x = torch.randn(10, 3)
    model.eval()
    torch.testing.assert_close(loaded(x), model(x))


def test_mlp_exports_with_torch_export():
    model = MLP(3, (8, 8), activation="relu", dropout=0.1).eval()
    x = torch.randn(4, 3)
    torch.testing.assert_close(torch.export.export(model, (x,)).module()(x), model(x))
