"""Activations: tanh(x) + x as function and module, the learnable a * tanh(x) + b * x, its
hand-written backward, and the built-ins, each selectable by name."""

import pytest
import torch
from torch import nn

from torchtrack.activations import (
    ACTIVATIONS,
    LearnableTanhPlusX,
    ManualGradTanhPlusX,
    ScaledTanhPlusXFunction,
    TanhPlusX,
    build_activation,
    learned_activation_values,
    scaled_tanh_plus_x,
    tanh_plus_x,
)
from torchtrack.choices import Activation, names
from torchtrack.models import MLP, RegressionModel


def test_tanh_plus_x_function_and_module_compute_tanh_x_plus_x():
    x = torch.linspace(-4, 4, 101)
    expected = torch.tanh(x) + x
    torch.testing.assert_close(tanh_plus_x(x), expected)
    torch.testing.assert_close(TanhPlusX()(x), expected)


def test_tanh_plus_x_module_has_no_learnable_parameters():
    assert list(TanhPlusX().parameters()) == []


def test_learnable_activation_starts_as_tanh_plus_x():
    x = torch.randn(7, 3)
    torch.testing.assert_close(LearnableTanhPlusX()(x), tanh_plus_x(x))


def test_learnable_activation_parameters_are_named_and_receive_gradients():
    model = RegressionModel(3, activation="learnable_tanh_plus_x")
    names = dict(model.named_parameters())
    assert {"activation.a", "activation.b"} <= set(names)
    model(torch.randn(16, 3)).pow(2).mean().backward()
    for name in ("activation.a", "activation.b"):
        assert names[name].grad is not None and names[name].grad.abs().item() > 0


def test_learnable_activation_computes_a_tanh_x_plus_b_x():
    x = torch.randn(5, 1)
    torch.testing.assert_close(LearnableTanhPlusX(a=2.0, b=-0.5)(x), 2.0 * torch.tanh(x) - 0.5 * x)


def test_hand_written_backward_passes_gradcheck_in_float64():
    x = torch.randn(6, 3, dtype=torch.float64, requires_grad=True)
    a = torch.tensor(1.7, dtype=torch.float64, requires_grad=True)
    b = torch.tensor(-0.3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(ScaledTanhPlusXFunction.apply, (x, a, b))
    assert torch.autograd.gradgradcheck(scaled_tanh_plus_x, (x, a, b))


def test_manual_grad_module_passes_gradcheck_through_its_parameters():
    activation = ManualGradTanhPlusX(a=0.8, b=1.3).double()
    x = torch.randn(4, 2, dtype=torch.float64, requires_grad=True)

    def call(x, a, b):
        return torch.func.functional_call(activation, {"a": a, "b": b}, (x,))

    assert torch.autograd.gradcheck(
        call, (x, activation.a.detach().requires_grad_(), activation.b.detach().requires_grad_())
    )


def test_manual_grad_matches_autograd_in_values_and_gradients():
    torch.manual_seed(0)
    x = torch.randn(32, 4)
    grads = []
    for cls in (LearnableTanhPlusX, ManualGradTanhPlusX):
        activation = cls(a=1.5, b=0.7)
        xi = x.clone().requires_grad_()
        out = activation(xi)
        (out * torch.arange(4.0)).sum().backward()
        grads.append((out.detach(), xi.grad, activation.a.grad, activation.b.grad))
    for autograd_value, manual_value in zip(*grads, strict=True):
        torch.testing.assert_close(manual_value, autograd_value)


def test_registry_matches_the_names_params_yaml_accepts():
    assert tuple(ACTIVATIONS) == names(Activation)


@pytest.mark.parametrize("name", names(Activation))
def test_every_activation_keeps_float32_and_shape_for_any_batch(name):
    activation = build_activation(name)
    for batch in (1, 5, 300):
        out = activation(torch.randn(batch, 1))
        assert out.shape == (batch, 1) and out.dtype == torch.float32


def test_identity_makes_plain_linear_regression():
    model = RegressionModel(2, activation="identity")
    x = torch.randn(4, 2)
    torch.testing.assert_close(model(x), model.linear(x))


def test_unknown_activation_names_the_allowed_values():
    with pytest.raises(ValueError, match="unknown activation 'swish'; allowed: identity, tanh_plus_x"):
        build_activation("swish")


@pytest.mark.parametrize("name", ["tanh_plus_x", "learnable_tanh_plus_x", "manual_grad_tanh_plus_x", "gelu"])
def test_models_with_the_activation_export_with_torch_export(name):
    x = torch.randn(5, 3)
    for model in (RegressionModel(3, activation=name), MLP(3, (4,), activation=name)):
        model.eval()
        exported = torch.export.export(model, (x,))
        torch.testing.assert_close(exported.module()(x), model(x))


def test_learned_activation_values_lists_every_learnable_parameter():
    assert learned_activation_values(RegressionModel(2, activation="learnable_tanh_plus_x")) == {
        "activation.a": 1.0,
        "activation.b": 1.0,
    }
    mlp = MLP(2, (3, 3), activation="manual_grad_tanh_plus_x")
    assert set(learned_activation_values(mlp)) == {"layers.1.a", "layers.1.b", "layers.3.a", "layers.3.b"}
    assert learned_activation_values(RegressionModel(2)) == {}
    assert learned_activation_values(LearnableTanhPlusX(a=3.0)) == {"a": 3.0, "b": 1.0}


def test_built_ins_are_torch_modules():
    assert isinstance(build_activation("relu"), nn.ReLU)
    assert isinstance(build_activation("identity"), nn.Identity)
