"""The one reader of params.yaml: parse it once, validate every key, return typed config.

Every other module receives these frozen dataclasses, never raw dicts. pydantic checks each
key's type, range and allowed values (torchtrack.choices); `load_config()` raises
`ConfigError` naming the first offending key, in one line, before any stage does any work.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Annotated, Any

from pydantic import BeforeValidator, ConfigDict, Field, Strict, TypeAdapter, ValidationError
from pydantic.dataclasses import dataclass

from torchtrack.choices import (
    Activation,
    DateFeatures,
    Device,
    Family,
    Loss,
    LrSchedule,
    ModelKind,
    Optimizer,
    PromoteRule,
    Source,
    TargetScaling,
    names,
)
from torchtrack.errors import ConfigError
from torchtrack.paths import PARAMS_FILE


def _yaml_number(value: Any) -> Any:
    """YAML 1.1 reads `1e-3` (no dot) as a string: take it as the number it means."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    return value


# Values as YAML writes them: no 1 for true, no 2.5 for an integer, no 3 for a name; an
# integer is a number. A section is a mapping whose keys are all known.
Bool = Annotated[bool, Strict()]
Int = Annotated[int, Strict()]
Number = Annotated[float, Strict(), BeforeValidator(_yaml_number)]
Text = Annotated[str, Strict()]
SECTION = ConfigDict(extra="forbid", allow_inf_nan=False)


@dataclass(frozen=True, config=SECTION)
class DataConfig:
    """prepare: where the rows come from and how they are split and scaled."""

    source: Source = "synthetic"
    family: Family = "tanh_plus_x"  # synthetic target rule
    # when source is csv: a CSV or Parquet file, or a folder of them (a dependency of prepare)
    path: Text | None = "data/raw/example.csv"
    target: Text | None = None  # CSV target column; None means the last column
    n_samples: Int = Field(default=50000, ge=10)  # synthetic rows
    n_features: Int = Field(default=8, ge=1)  # synthetic feature columns (line: always 1)
    noise_std: Number = Field(default=0.3, ge=0)  # synthetic Gaussian noise
    scaled_tanh_a: Number = 2.0  # scaled_tanh family: y = a * tanh(z) + b * z
    scaled_tanh_b: Number = 0.5
    outlier_fraction: Number = Field(default=0.1, ge=0, lt=1)  # outliers
    outlier_scale: Number = Field(default=10.0, ge=0)  # mean outlier, in noise_std units
    val_fraction: Number = Field(default=0.15, gt=0, lt=1)
    test_fraction: Number = Field(default=0.15, gt=0, lt=1)
    split_key: Text | None = None  # a column whose value decides each row's split; None: a permutation
    scale: Bool = True  # standardise features with mean/std fitted on train only
    scale_target: TargetScaling = "auto"  # standardise the target for training; predictions mapped back
    # Column roles (docs/your-own-data.md): inferred from the train split unless named here.
    numeric: tuple[Text, ...] = ()  # read as numbers
    categorical: tuple[Text, ...] = ()  # one-hot encoded, whatever their type
    dates: tuple[Text, ...] = ()  # parsed as dates
    drop: tuple[Text, ...] = ()  # not used
    date_features: DateFeatures = "parts"  # a date column as year, month, day of year; or dropped
    max_categories: Int = Field(default=20, ge=1)  # most frequent categories kept; the rest are `other`


@dataclass(frozen=True, config=SECTION)
class ModelConfig:
    """train: what the network is."""

    kind: ModelKind = "linear"
    activation: Activation = "learnable_tanh_plus_x"  # holds tanh(x) + x and a line (docs/training-recipe.md)
    # mlp layer widths
    hidden_sizes: tuple[Annotated[Int, Field(ge=1)], ...] = Field(default=(64, 64), min_length=1)
    dropout: Number = Field(default=0.0, ge=0, lt=1)  # mlp only


@dataclass(frozen=True, config=SECTION)
class TrainConfig:
    """train: how the network is fitted."""

    loss: Loss = "mse"
    huber_delta: Number = Field(default=1.0, gt=0)
    optimizer: Optimizer = "adam"
    lr: Number = Field(default=0.03, gt=0)
    momentum: Number = Field(default=0.0, ge=0, lt=1)  # sgd only
    weight_decay: Number = Field(default=0.0, ge=0)
    lr_schedule: LrSchedule = "cosine"  # cosine: to 0 over the run's epochs
    lr_step_epochs: Int = Field(default=10, ge=1)  # step: decay every this many epochs
    lr_step_gamma: Number = Field(default=0.1, gt=0, lt=1)  # step factor
    early_stopping_patience: Int = Field(default=0, ge=0)  # epochs (one validation each); 0 = off
    max_steps: Int = Field(default=2000, ge=1)  # optimizer steps, rounded up to whole epochs (budget.py)
    epochs: Int | None = Field(default=None, ge=1)  # at most this many epochs; None = as max_steps takes
    batch_size: Int = Field(default=256, ge=1)  # the largest batch: at most a tenth of the train rows
    shuffle: Bool = True  # reshuffle the training rows every epoch
    shuffle_buffer_rows: Int = Field(
        default=4_194_304, ge=1
    )  # a larger split streams (docs/training-recipe.md)
    device: Device = "auto"
    num_threads: Int = Field(default=1, ge=0)  # CPU threads; 0 = one per core
    processes: Int = Field(default=1, ge=1)  # ranks under torchrun (DDP); docs/scaling.md
    resume: Bool = False  # continue an interrupted run from its last epoch checkpoint
    least_squares_line: Bool = True  # the line unless the curve pays for itself (least_squares_line.py)


@dataclass(frozen=True, config=SECTION)
class TrackingConfig:
    """Every stage: where TensorBoard and MLflow records go."""

    experiment: Text = "torchtrack"  # MLflow experiment name
    tensorboard_dir: Text = "runs"  # TensorBoard root; one sub-directory per stage execution
    log_every_n_steps: Int = Field(default=50, ge=1)  # step-metric interval
    flush_every_n_metrics: Int = Field(default=1000, ge=1)  # MLflow batch size
    flush_every_seconds: Number = Field(default=5.0, gt=0)  # or this often
    promote: PromoteRule | None = None  # champion rule after each evaluate; None = off


@dataclass(frozen=True, config=SECTION)
class Config:
    """The whole of params.yaml."""

    seed: Int = Field(default=42, ge=0, le=2**32 - 1)  # NumPy seeds are unsigned 32-bit
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    tracking: TrackingConfig = dataclasses.field(default_factory=TrackingConfig)

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


# The params that say most about a model: `torchtrack compare` shows them when no param differs
# between its runs, and TensorBoard's HPARAMS always has them (tracking/tracker.py).
KEY_PARAMS = ("model.activation", "train.optimizer", "train.lr", "train.max_steps", "train.batch_size")


def params_mapping(config: Config) -> dict[str, Any]:
    """`config` as params.yaml nests it: sections of keys (lists where the file has lists)."""
    params: dict[str, Any] = {}
    for key, value in config.flat().items():
        section, _, name = key.partition(".")
        value = list(value) if isinstance(value, tuple) else value
        if name:
            params.setdefault(section, {})[name] = value
        else:
            params[key] = value
    return params


def read_yaml(path: str | Path, not_found: str = "file not found") -> Any:
    """The YAML document in `path` ({} when empty); ConfigError in one line when the file is
    missing (`not_found` says what to do) or is not YAML."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: {not_found}")
    try:
        return yaml.safe_load(path.read_bytes()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({' '.join(str(exc).split())})") from None  # one line


def load_config(path: str | Path = PARAMS_FILE) -> Config:
    """Read and validate params.yaml; raise ConfigError naming the first bad key."""
    return config_from_dict(read_yaml(path), source=str(path))


_PARAMS = TypeAdapter(Config)
COLUMN_LISTS = ("numeric", "categorical", "dates", "drop")  # data keys that name columns by role


def config_from_dict(raw: Any, source: str = "params") -> Config:
    """Validate a parsed params mapping into a Config."""
    try:
        config = _PARAMS.validate_python(raw)
    except ValidationError as exc:
        raise ConfigError(f"{source}: {_message(exc.errors()[0])}") from None
    _check_across_keys(config, source)
    _check_experiment_name(config.tracking.experiment, source)
    return config


# pydantic's error types, in params.yaml's words
_TYPE_NAMES = {
    "bool_type": "true or false",
    "int_type": "an integer",
    "float_type": "a number",
    "string_type": "a string",
}
_BOUNDS = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<", "less_than_equal": "<="}


def _message(error: Any) -> str:
    """One of pydantic's errors as one line naming the dotted key, in params.yaml's words."""
    loc, kind, value = error["loc"], error["type"], error["input"]
    if kind == "invalid_key":  # a key that is not text, which pydantic's location turns into text
        loc = (*loc[:-1], _shown(value))
    key = "".join(f"[{part}]" if type(part) is int else f".{_shown(part)}" for part in loc)[1:]
    got = "null" if value is None else f"{type(value).__name__} {value!r}"
    if kind in ("unexpected_keyword_argument", "invalid_key"):
        where = key.rpartition(".")[0] or "top level"
        allowed = ", ".join(f.name for f in dataclasses.fields(_section(loc[:-1])))
        return f"unknown key {key}; allowed keys in {where}: {allowed}"
    if kind == "dataclass_type":
        return f"{key or 'top level'} must be a mapping, got {type(value).__name__}"
    if kind == "literal_error":
        allowed = names(_section(loc[:-1]).__pydantic_fields__[loc[-1]].annotation)
        return f"{key} must be one of {', '.join(allowed)}; got {value!r}"
    if kind in _BOUNDS:
        bound = next(iter(error["ctx"].values()))
        bound = int(bound) if isinstance(bound, float) and bound.is_integer() else bound  # 0, not 0.0
        return f"{key} must be {_BOUNDS[kind]} {bound}, got {value!r}"
    if kind == "finite_number":
        return f"{key} must be a finite number, got {value!r}"
    if kind in _TYPE_NAMES:
        return f"{key} must be {_TYPE_NAMES[kind]}, got {got}"
    if loc and loc[-1] in COLUMN_LISTS:  # a single name, not a list of them
        return f"{key} must be a list of column names; got {value!r}"
    if loc and loc[-1] == "hidden_sizes":  # not a list, or an empty one
        return f"{key} must be a non-empty list, each an integer; got {value!r}"
    return f"{key or 'top level'}: {' '.join(error['msg'].split())}"  # pydantic's words, on one line


def _section(loc: tuple) -> type:
    """The config dataclass at `loc`, a path of section names from Config."""
    cls = Config
    for name in loc:
        cls = cls.__pydantic_fields__[name].annotation
    return cls


def _shown(key: Any) -> str:
    """A key as written when it is plain printable text, else its repr: messages stay one line."""
    return key if isinstance(key, str) and key.isprintable() and key.strip() == key != "" else repr(key)


# tracking.experiment names the MLflow experiments `<name>` and `<name>-prepare` and the
# registered model `<name>`. MLflow refuses a model name with '/' or ':' or one that a path
# would normalise ('..', 'a//b'), and only after training; `models:/<name>@champion` and the
# registry's filters ('name = ...') need no '@' or quote either. Words, digits, spaces inside,
# '.', '-' and '_' avoid all of that, in far fewer characters than MLflow's 500 for an experiment.
EXPERIMENT_NAME = re.compile(r"\w(?:[\w.\- ]*[\w.\-])?")
EXPERIMENT_NAME_LENGTH = 200


def _check_experiment_name(name: str, source: str) -> None:
    """ConfigError unless MLflow accepts `name` for every experiment and registered model it names."""
    if not EXPERIMENT_NAME.fullmatch(name) or len(name) > EXPERIMENT_NAME_LENGTH:
        raise ConfigError(
            f"{source}: tracking.experiment must be at most {EXPERIMENT_NAME_LENGTH} letters, digits, "
            f"'.', '-', '_' and inner spaces, starting with a letter, digit or '_' (it names the MLflow "
            f"experiment and registered model); got {name!r}"
        )


def _check_across_keys(config: Config, source: str) -> None:
    data = config.data
    if data.val_fraction + data.test_fraction >= 0.9:
        raise ConfigError(
            f"{source}: data.val_fraction + data.test_fraction must be < 0.9, got "
            f"{data.val_fraction + data.test_fraction:g}"
        )
    named: dict[str, str] = {}
    for role in COLUMN_LISTS:
        for column in getattr(data, role):
            if column in named:
                raise ConfigError(
                    f"{source}: column {column!r} is in both data.{named[column]} and data.{role}"
                )
            named[column] = role
    if data.target is not None and data.target in named:
        raise ConfigError(f"{source}: the target {data.target!r} cannot be in data.{named[data.target]}")
    if data.source == "csv" and not data.path:
        what = "a CSV or Parquet file, or a folder of them"
        raise ConfigError(f"{source}: data.path must name {what} when data.source is csv")
