"""The one reader of params.yaml: parse it once, validate every key, return typed config.

Every other module receives these dataclasses, never raw dicts. `load_config()` raises
`ConfigError` naming the offending key before any stage does any work.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torchtrack.errors import ConfigError
from torchtrack.paths import PARAMS_FILE

# model.activation's allowed values; torchtrack.activations.ACTIVATIONS builds each one.
ACTIVATION_NAMES = (
    "identity",
    "tanh_plus_x",
    "learnable_tanh_plus_x",
    "manual_grad_tanh_plus_x",
    "relu",
    "leaky_relu",
    "gelu",
    "silu",
    "elu",
    "tanh",
    "sigmoid",
    "softplus",
)


def _choice(*allowed: str) -> dict[str, Any]:
    return {"choices": allowed}


def _range(
    low: float | None = None, high: float | None = None, *, open_low: bool = False, open_high: bool = False
) -> dict[str, Any]:
    return {"range": (low, high, open_low, open_high)}


@dataclass(frozen=True)
class DataConfig:
    """prepare: where the rows come from and how they are split and scaled."""

    source: str = field(default="synthetic", metadata=_choice("synthetic", "csv", "diabetes"))
    family: str = field(
        default="tanh_plus_x",
        metadata=_choice(  # synthetic target rule
            "tanh_plus_x", "line", "linear", "nonlinear", "outliers", "scaled_tanh"
        ),
    )
    path: str | None = "data/raw/example.csv"  # CSV file, when source is csv (a dependency of prepare)
    target: str | None = None  # CSV target column; None means the last column
    n_samples: int = field(default=50000, metadata=_range(10))  # synthetic rows
    n_features: int = field(default=8, metadata=_range(1))  # synthetic feature columns (line: always 1)
    noise_std: float = field(default=0.3, metadata=_range(0.0))  # synthetic Gaussian noise
    scaled_tanh_a: float = 2.0  # scaled_tanh family: y = a * tanh(z) + b * z
    scaled_tanh_b: float = 0.5
    outlier_fraction: float = field(default=0.1, metadata=_range(0.0, 1.0, open_high=True))  # outliers
    outlier_scale: float = field(default=10.0, metadata=_range(0.0))  # mean outlier, in noise_std units
    val_fraction: float = field(default=0.15, metadata=_range(0.0, 1.0, open_low=True, open_high=True))
    test_fraction: float = field(default=0.15, metadata=_range(0.0, 1.0, open_low=True, open_high=True))
    scale: bool = True  # standardise features with mean/std fitted on train only


@dataclass(frozen=True)
class ModelConfig:
    """train: what the network is."""

    kind: str = field(default="linear", metadata=_choice("linear", "mlp"))
    activation: str = field(default="tanh_plus_x", metadata=_choice(*ACTIVATION_NAMES))
    hidden_sizes: tuple[int, ...] = field(default=(64, 64), metadata=_range(1))  # mlp layer widths
    dropout: float = field(default=0.0, metadata=_range(0.0, 1.0, open_high=True))  # mlp only


@dataclass(frozen=True)
class TrainConfig:
    """train: how the network is fitted."""

    loss: str = field(default="mse", metadata=_choice("mse", "l1", "huber"))
    huber_delta: float = field(default=1.0, metadata=_range(0.0, open_low=True))
    optimizer: str = field(default="adam", metadata=_choice("sgd", "adam", "adamw"))
    lr: float = field(default=0.01, metadata=_range(0.0, open_low=True))
    momentum: float = field(default=0.0, metadata=_range(0.0, 1.0, open_high=True))  # sgd only
    weight_decay: float = field(default=0.0, metadata=_range(0.0))
    lr_schedule: str = field(default="none", metadata=_choice("none", "step", "cosine"))
    lr_step_epochs: int = field(default=10, metadata=_range(1))  # step: decay every this many epochs
    lr_step_gamma: float = field(default=0.1, metadata=_range(0.0, 1.0, open_low=True))  # step factor
    early_stopping_patience: int = field(default=0, metadata=_range(0))  # epochs; 0 = off
    epochs: int = field(default=20, metadata=_range(1))
    batch_size: int = field(default=256, metadata=_range(1))
    shuffle: bool = True  # reshuffle the training rows every epoch
    device: str = field(default="auto", metadata=_choice("auto", "cpu", "cuda"))
    num_threads: int = field(default=1, metadata=_range(0))  # CPU threads; 0 = one per core
    resume: bool = False  # continue an interrupted run from its last epoch checkpoint


@dataclass(frozen=True)
class TrackingConfig:
    """Every stage: where TensorBoard and MLflow records go."""

    experiment: str = "torchtrack"  # MLflow experiment name
    tensorboard_dir: str = "runs"  # TensorBoard root; one sub-directory per stage execution
    log_every_n_steps: int = field(default=50, metadata=_range(1))  # step-metric interval
    flush_every_n_metrics: int = field(default=1000, metadata=_range(1))  # MLflow batch size
    flush_every_seconds: float = field(default=5.0, metadata=_range(0.0, open_low=True))  # or this often


@dataclass(frozen=True)
class Config:
    """The whole of params.yaml."""

    seed: int = field(default=42, metadata=_range(0, 2**32 - 1))  # NumPy seeds are unsigned 32-bit
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)

    def flat(self, *sections: str) -> dict[str, Any]:
        """Dotted `section.key -> value` pairs (all sections when none are named)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if not dataclasses.is_dataclass(value):
                if not sections or f.name in sections:
                    out[f.name] = value
            elif not sections or f.name in sections:
                out.update({f"{f.name}.{k}": v for k, v in dataclasses.asdict(value).items()})
        return out


def load_config(path: str | Path = PARAMS_FILE) -> Config:
    """Read and validate params.yaml; raise ConfigError naming the first bad key."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: file not found")
    try:
        raw = yaml.safe_load(path.read_bytes()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({' '.join(str(exc).split())})") from None  # one line
    return config_from_dict(raw, source=str(path))


def config_from_dict(raw: Any, source: str = "params") -> Config:
    """Validate a parsed params mapping into a Config."""
    config = _build(Config, raw, prefix="", source=source)
    _check_across_keys(config, source)
    return config


def _build(cls: type, raw: Any, prefix: str, source: str) -> Any:
    where = prefix.rstrip(".") or "top level"
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: {where} must be a mapping, got {type(raw).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields), key=repr)  # keys may be of any type YAML reads
    if unknown:
        raise ConfigError(
            f"{source}: unknown key {prefix}{_shown(unknown[0])}; allowed keys in {where}: "
            + ", ".join(fields)
        )
    hints = typing.get_type_hints(cls)
    values = {}
    for name, f in fields.items():
        if name not in raw:
            continue
        key = f"{prefix}{name}"
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            values[name] = _build(hint, raw[name], prefix=f"{key}.", source=source)
        else:
            values[name] = _check_value(key, raw[name], hint, f.metadata, source)
    return cls(**values)


def _check_value(key: str, value: Any, hint: Any, meta: Any, source: str) -> Any:
    if typing.get_origin(hint) is tuple:  # tuple[X, ...]: a non-empty YAML list, each item checked as X
        item = typing.get_args(hint)[0]
        if not isinstance(value, (list, tuple)) or not value:
            raise ConfigError(
                f"{source}: {key} must be a non-empty list, each {_type_name(item)}; got {value!r}"
            )
        return tuple(_check_value(f"{key}[{i}]", v, item, meta, source) for i, v in enumerate(value))
    allowed = [a for a in typing.get_args(hint) if a is not type(None)] if _is_union(hint) else [hint]
    if value is None:
        if type(None) in typing.get_args(hint):
            return None
        raise ConfigError(f"{source}: {key} must be {_type_name(allowed[0])}, got null")
    kind = allowed[0]
    if kind is float and isinstance(value, str):
        value = _parse_float(value)  # YAML 1.1 reads `1e-3` (no dot) as a string
    ok = (
        (kind is bool and isinstance(value, bool))
        or (kind is int and isinstance(value, int) and not isinstance(value, bool))
        or (kind is float and isinstance(value, (int, float)) and not isinstance(value, bool))
        or (kind is str and isinstance(value, str))
    )
    if not ok:
        raise ConfigError(f"{source}: {key} must be {_type_name(kind)}, got {type(value).__name__} {value!r}")
    if kind is float:
        try:
            value = float(value)
        except OverflowError:  # an integer beyond float's range
            value = math.inf
        if not math.isfinite(value):
            raise ConfigError(f"{source}: {key} must be a finite number, got {value!r}")
    if "choices" in meta and value not in meta["choices"]:
        raise ConfigError(f"{source}: {key} must be one of {', '.join(meta['choices'])}; got {value!r}")
    if "range" in meta:
        low, high, open_low, open_high = meta["range"]
        if low is not None and (value <= low if open_low else value < low):
            raise ConfigError(f"{source}: {key} must be {'>' if open_low else '>='} {low}, got {value!r}")
        if high is not None and (value >= high if open_high else value > high):
            raise ConfigError(f"{source}: {key} must be {'<' if open_high else '<='} {high}, got {value!r}")
    return value


def _shown(key: Any) -> str:
    """A key as written when it is plain printable text, else its repr: messages stay one line."""
    return key if isinstance(key, str) and key.isprintable() and key.strip() == key != "" else repr(key)


def _parse_float(text: str) -> float | str:
    try:
        return float(text)
    except ValueError:
        return text


def _is_union(hint: Any) -> bool:
    return typing.get_origin(hint) in (typing.Union, types.UnionType)


def _type_name(kind: type) -> str:
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string"}[kind]


def _check_across_keys(config: Config, source: str) -> None:
    data = config.data
    if data.val_fraction + data.test_fraction >= 0.9:
        raise ConfigError(
            f"{source}: data.val_fraction + data.test_fraction must be < 0.9, got "
            f"{data.val_fraction + data.test_fraction:g}"
        )
    if data.source == "csv" and not data.path:
        raise ConfigError(f"{source}: data.path must name a CSV file when data.source is csv")
