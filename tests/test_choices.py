"""choices.py: every allowed value is written once; params.yaml accepts exactly these names and
every factory builds each of them, and reading params.yaml imports no torch."""

import subprocess
import sys

import pandas as pd
import pytest
from torch import nn

from torchtrack import choices
from torchtrack.activations import build_activation
from torchtrack.choices import names
from torchtrack.config import DataConfig, ModelConfig, TrainConfig, config_from_dict
from torchtrack.data import load_source
from torchtrack.errors import ConfigError
from torchtrack.losses import build_loss
from torchtrack.models import build_model
from torchtrack.synthetic import make_synthetic
from torchtrack.training import make_lr_schedule, make_optimizer, resolve_device

KEYS = {
    "data.source": choices.Source,
    "data.family": choices.Family,
    "model.kind": choices.ModelKind,
    "model.activation": choices.Activation,
    "train.loss": choices.Loss,
    "train.optimizer": choices.Optimizer,
    "train.lr_schedule": choices.LrSchedule,
    "train.device": choices.Device,
}


@pytest.mark.parametrize("key", KEYS)
def test_params_accept_every_allowed_value_and_list_them_for_any_other(key):
    section, name = key.split(".")
    for value in names(KEYS[key]):
        extra = {"path": "rows.csv"} if value == "csv" else {}
        assert config_from_dict({section: {name: value, **extra}}).flat()[key] == value
    with pytest.raises(ConfigError, match=f"{key} must be one of {', '.join(names(KEYS[key]))}; got 'other'"):
        config_from_dict({section: {name: "other"}})


@pytest.mark.parametrize("name", names(choices.Activation))
def test_every_activation_is_built(name):
    assert isinstance(build_activation(name), nn.Module)


@pytest.mark.parametrize("name", names(choices.Loss))
def test_every_loss_is_built(name):
    assert isinstance(build_loss(name), nn.Module)


@pytest.mark.parametrize("kind", names(choices.ModelKind))
def test_every_model_kind_is_built(kind):
    assert isinstance(build_model(ModelConfig(kind=kind), in_features=2), nn.Module)


@pytest.mark.parametrize("name", names(choices.Optimizer))
def test_every_optimizer_is_built(name):
    assert make_optimizer(nn.Linear(2, 1).parameters(), TrainConfig(optimizer=name)) is not None


@pytest.mark.parametrize("name", names(choices.LrSchedule))
def test_every_schedule_is_built(name):
    optimizer = make_optimizer(nn.Linear(2, 1).parameters(), TrainConfig())
    schedule = make_lr_schedule(optimizer, TrainConfig(lr_schedule=name), epochs=10)
    assert (schedule is None) == (name == "none")


def test_every_device_but_cuda_resolves_here():
    assert {resolve_device(name).type for name in names(choices.Device) if name != "cuda"} <= {"cpu", "cuda"}


@pytest.mark.parametrize("family", names(choices.Family))
def test_every_family_makes_rows(family):
    frame, truth = make_synthetic(20, 2, family=family)
    assert len(frame) == 20 and truth.family == family


@pytest.mark.parametrize("source", names(choices.Source))
def test_every_source_loads_rows(tmp_path, source):
    path = tmp_path / "rows.csv"
    pd.DataFrame({"a": range(12), "y": range(12)}).to_csv(path, index=False)
    frame, target, _ = load_source(DataConfig(source=source, path=str(path), n_samples=12), seed=0)
    assert target in frame.columns and len(frame) >= 12


def test_reading_params_imports_no_torch():
    code = "import sys, torchtrack.config; print('torch' in sys.modules)"
    imported = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert imported.stdout.strip() == "False"
