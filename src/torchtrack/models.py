"""Models: `nn.Linear` followed by an activation, built from params by one factory.

Checkpoints hold the state dict plus everything needed to rebuild the model and
prepare its inputs (feature names, target, scaler), and load with `weights_only=True`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from torchtrack.config import ModelConfig
from torchtrack.errors import DataError
from torchtrack.files import write_atomic


def tanh_plus_x(x: torch.Tensor) -> torch.Tensor:
    """The journal's week-3 activation: tanh(x) + x."""
    return torch.tanh(x) + x


class TanhPlusX(nn.Module):
    """tanh(x) + x as a module, with no learnable parameters."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return tanh_plus_x(x)


ACTIVATIONS: dict[str, type[nn.Module]] = {
    "tanh_plus_x": TanhPlusX,
    "identity": nn.Identity,
}


class RegressionModel(nn.Module):
    """A linear layer followed by an activation: (B, F) -> (B, 1)."""

    def __init__(self, in_features: int = 1, activation: str = "tanh_plus_x"):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; allowed: {', '.join(ACTIVATIONS)}")
        self.linear = nn.Linear(in_features, 1)
        self.activation = ACTIVATIONS[activation]()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activation(self.linear(x))  # (B, 1)


class Standardize(nn.Module):
    """(x - mean) / std with the training split's statistics, so a model takes raw features."""

    def __init__(self, mean: list[float], std: list[float]):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def build_model(config: ModelConfig, in_features: int) -> nn.Module:
    """The model that `config` describes, for `in_features` inputs."""
    return RegressionModel(in_features, activation=config.activation)


def save_checkpoint(path: Path, model: nn.Module, config: ModelConfig, extra: dict[str, Any]) -> None:
    """Write state dict + rebuild info atomically: a temporary file, then a rename."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    in_features = model.linear.in_features
    payload = {"state_dict": state, "model": {"in_features": in_features, **vars(config)}, **extra}
    write_atomic(path, lambda tmp: torch.save(payload, tmp))


def load_checkpoint(path: Path) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model from a checkpoint; return it (in eval mode) and the whole payload."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path} not found: run the train stage first (dvc repro train)")
    payload = torch.load(path, map_location="cpu", weights_only=True)
    spec = dict(payload["model"])
    in_features = spec.pop("in_features")
    model = build_model(ModelConfig(**spec), in_features)
    model.load_state_dict(payload["state_dict"])
    model.eval()
    return model, payload
