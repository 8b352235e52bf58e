"""Activations, the journal's week 3: tanh(x) + x without learnable parameters, a learnable
a * tanh(x) + b * x, the same with a hand-written backward, and torch's built-ins by name.

    build_activation("learnable_tanh_plus_x")  # an nn.Module; ACTIVATIONS lists every name
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from torchtrack.choices import Activation, unknown


def tanh_plus_x(x: torch.Tensor) -> torch.Tensor:
    """The journal's week-3 activation: tanh(x) + x."""
    return torch.tanh(x) + x


class TanhPlusX(nn.Module):
    """tanh(x) + x as a module, with no learnable parameters."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return tanh_plus_x(x)


class LearnableTanhPlusX(nn.Module):
    """a * tanh(x) + b * x with learnable scalars `a` and `b`; autograd derives the backward.

    Starts at a = b = 1, which is `TanhPlusX`. tanh is odd, so (a, b) acting on -x gives the
    same output as (-a, -b) acting on x: after a linear layer the pair is found up to sign.
    """

    def __init__(self, a: float = 1.0, b: float = 1.0):
        super().__init__()
        self.a = nn.Parameter(torch.tensor(float(a)))
        self.b = nn.Parameter(torch.tensor(float(b)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.a * torch.tanh(x) + self.b * x

    def extra_repr(self) -> str:
        return f"a={self.a.item():.4g}, b={self.b.item():.4g}"


class ScaledTanhPlusXFunction(torch.autograd.Function):
    """a * tanh(x) + b * x with a hand-written backward, for scalar tensors `a` and `b`.

    d/dx = a * (1 - tanh(x)^2) + b,  d/da = tanh(x),  d/db = x.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x, a, b)
        return a * torch.tanh(x) + b * x

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, a, b = ctx.saved_tensors
        tanh = torch.tanh(x)  # recomputed from x, so that the backward is itself differentiable
        grad_x = grad_a = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = grad_out * (a * (1 - tanh * tanh) + b)
        if ctx.needs_input_grad[1]:
            grad_a = (grad_out * tanh).sum().reshape(a.shape)  # a was broadcast over every element
        if ctx.needs_input_grad[2]:
            grad_b = (grad_out * x).sum().reshape(b.shape)
        return grad_x, grad_a, grad_b


def scaled_tanh_plus_x(x: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a * tanh(x) + b * x through `ScaledTanhPlusXFunction`'s hand-written backward."""
    return ScaledTanhPlusXFunction.apply(x, a, b)


class ManualGradTanhPlusX(LearnableTanhPlusX):
    """`LearnableTanhPlusX` computed by `ScaledTanhPlusXFunction`: same values, own backward."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return scaled_tanh_plus_x(x, self.a, self.b)


ACTIVATIONS: dict[Activation, Callable[[], nn.Module]] = {  # one builder per choices.Activation
    "identity": nn.Identity,
    "tanh_plus_x": TanhPlusX,
    "learnable_tanh_plus_x": LearnableTanhPlusX,
    "manual_grad_tanh_plus_x": ManualGradTanhPlusX,
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "elu": nn.ELU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "softplus": nn.Softplus,
}


def build_activation(name: Activation = "tanh_plus_x") -> nn.Module:
    """A new activation module for `name`, one of choices.Activation."""
    if name not in ACTIVATIONS:
        raise unknown("activation", name, Activation)
    return ACTIVATIONS[name]()


def learned_activation_values(model: nn.Module) -> dict[str, float]:
    """Current values of every learnable activation's parameters, keyed as in named_parameters()."""
    return {
        f"{module_name}.{name}" if module_name else name: param.item()
        for module_name, module in model.named_modules()
        if isinstance(module, LearnableTanhPlusX)
        for name, param in module.named_parameters(recurse=False)
    }
