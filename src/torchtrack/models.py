"""Models: linear regression (a linear layer, then any activation) and a deep network (MLP),
built from params by one factory, `build_model`.

Checkpoints hold the state dict plus everything needed to rebuild the model and
prepare its inputs (feature names, target, preprocessing), and load with `weights_only=True`.
"""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from torchtrack.activations import build_activation
from torchtrack.choices import ModelKind, unknown
from torchtrack.config import ModelConfig
from torchtrack.errors import DataError
from torchtrack.files import write_atomic


class RegressionModel(nn.Module):
    """A linear layer followed by an activation: (B, F) -> (B, 1). `identity` is linear regression."""

    def __init__(self, in_features: int = 1, activation: str = "tanh_plus_x"):
        super().__init__()
        self.in_features = in_features
        self.linear = nn.Linear(in_features, 1)
        self.activation = build_activation(activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activation(self.linear(x))  # (B, 1)


class MLP(nn.Module):
    """A deep network: (Linear, activation, optional Dropout) per hidden size, then Linear to one output."""

    def __init__(
        self,
        in_features: int = 1,
        hidden_sizes: Sequence[int] = (64, 64),
        activation: str = "relu",
        dropout: float = 0.0,
    ):
        super().__init__()
        if not hidden_sizes or not all(
            isinstance(h, int) and not isinstance(h, bool) and h > 0 for h in hidden_sizes
        ):
            raise ValueError(
                f"hidden_sizes must be a non-empty list of positive integers, got {hidden_sizes!r}"
            )
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        self.in_features = in_features
        layers: list[nn.Module] = []
        width = in_features
        for size in hidden_sizes:
            layers += [nn.Linear(width, size), build_activation(activation)]
            if dropout:
                layers.append(nn.Dropout(dropout))
            width = size
        layers.append(nn.Linear(width, 1))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)  # (B, 1)


def build_model(config: ModelConfig, in_features: int) -> nn.Module:
    """The model that `config` describes, for `in_features` inputs."""
    if config.kind == "linear":
        return RegressionModel(in_features, activation=config.activation)
    if config.kind == "mlp":
        return MLP(in_features, config.hidden_sizes, config.activation, config.dropout)
    raise unknown("model kind", config.kind, ModelKind)


def save_checkpoint(path: Path, model: nn.Module, config: ModelConfig, extra: dict[str, Any]) -> None:
    """Write state dict + rebuild info atomically: a temporary file, then a rename."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    payload = {"state_dict": state, "model": {"in_features": model.in_features, **vars(config)}, **extra}
    write_atomic(path, lambda tmp: torch.save(payload, tmp))


def load_checkpoint(path: Path) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model from a checkpoint; return it (in eval mode) and the whole payload."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path} not found: run the train stage first (dvc repro train)")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError):
        payload = None  # not torch.save's, or it holds code: never to be loaded with weights_only=False
    if not isinstance(payload, dict) or not {"state_dict", "model"} <= payload.keys():
        raise DataError(f"{path}: not a torchtrack model file (the train stage writes models/model.pt)")
    spec = dict(payload["model"])
    in_features = spec.pop("in_features")
    model = build_model(ModelConfig(**spec), in_features)
    model.load_state_dict(payload["state_dict"])
    model.eval()
    return model, payload
