"""The lessons sweep: every lesson is a valid `dvc exp run -S ...` on params.yaml, and unknown
names in params fail naming the allowed values."""

import copy
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from scripts.lessons import LESSONS, SHOW_COMMAND, queue_command, set_param_arg

from torchtrack.config import config_from_dict
from torchtrack.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())


def apply_set_params(command: list[str]) -> dict:
    """What DVC does with each `-S key=value`: parse the value as YAML, set the dotted key."""
    params = copy.deepcopy(PARAMS)
    for flag, arg in zip(command, command[1:], strict=False):
        if flag == "-S":
            key, value = arg.split("=", 1)
            *sections, last = key.split(".")
            target = params
            for section in sections:
                target = target[section]
            assert last in target, f"{key} is not a params.yaml key"
            target[last] = yaml.safe_load(value)
    return params


@pytest.mark.parametrize("name", LESSONS)
def test_every_lesson_is_a_valid_experiment(name):
    command = queue_command(name, LESSONS[name])
    assert command[:4] == ["dvc", "exp", "run", "--queue"] and command[command.index("-n") + 1] == name
    config = config_from_dict(apply_set_params(command))
    flat = config.flat()
    for key, value in LESSONS[name].items():
        assert flat[key] == (tuple(value) if isinstance(value, list) else value)


def test_lesson_names_are_valid_experiment_names():
    assert all(re.fullmatch(r"[a-z0-9][a-z0-9_-]*", name) for name in LESSONS)


def test_set_param_values_read_back_as_yaml():
    assert set_param_arg("model.kind", "mlp") == "model.kind=mlp"
    assert yaml.safe_load(set_param_arg("model.hidden_sizes", [32, 16]).split("=")[1]) == [32, 16]
    assert yaml.safe_load(set_param_arg("train.lr", 2.0).split("=")[1]) == 2.0
    assert yaml.safe_load(set_param_arg("data.scale", False).split("=")[1]) is False


def test_results_table_shows_the_lesson_columns():
    keep = re.compile(SHOW_COMMAND[SHOW_COMMAND.index("--keep") + 1])
    for column in (
        "Experiment",
        "model.activation",
        "train.loss",
        "test_mse",
        "test_mse_least_squares",
        "activation.a",
    ):
        assert keep.match(column)
    assert not keep.match("train.lr_step_gamma")


@pytest.mark.parametrize(
    ("section", "key", "value", "allowed"),
    [
        ("model", "activation", "swish", "identity, tanh_plus_x, learnable_tanh_plus_x"),
        ("model", "kind", "cnn", "linear, mlp"),
        ("train", "loss", "hinge", "mse, l1, huber"),
        ("train", "optimizer", "rmsprop", "sgd, adam, adamw"),
        ("train", "lr_schedule", "linear", "none, step, cosine"),
        ("data", "source", "s3", "synthetic, csv, diabetes"),
        ("data", "family", "cubic", "tanh_plus_x, line, linear, nonlinear, outliers, scaled_tanh"),
    ],
)
def test_unknown_names_in_params_list_the_allowed_values(section, key, value, allowed):
    with pytest.raises(ConfigError, match=f"{section}.{key} must be one of {allowed}"):
        config_from_dict({section: {key: value}})


@pytest.mark.parametrize("delta", [0, -0.5])
def test_params_huber_delta_must_be_positive(delta):
    with pytest.raises(ConfigError, match="train.huber_delta must be > 0"):
        config_from_dict({"train": {"huber_delta": delta}})


def test_help_prints_the_usage_and_queues_nothing(tmp_path):
    """--help is parsed before anything runs: outside a DVC repository, queueing would fail."""
    script = ROOT / "scripts" / "lessons.py"
    result = subprocess.run([sys.executable, script, "--help"], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage:") and "outliers-huber" in result.stdout
    assert list(tmp_path.iterdir()) == []
