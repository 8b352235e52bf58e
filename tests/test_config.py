"""config.py: params.yaml is parsed once, validated key by key, and errors name the dotted key."""

import dataclasses
from pathlib import Path

import pytest

from torchtrack.config import Config, DataConfig, TrainConfig, config_from_dict, load_config
from torchtrack.errors import ConfigError, InputError

REPO_ROOT = Path(__file__).resolve().parents[1]


def test_params_yaml_equals_dataclass_defaults():
    assert load_config(REPO_ROOT / "params.yaml") == Config()


def test_empty_mapping_gives_defaults():
    assert config_from_dict({}) == Config()


def test_values_override_defaults_and_ints_widen_to_floats():
    config = config_from_dict({"seed": 7, "train": {"lr": 1, "optimizer": "sgd"}, "data": {"scale": False}})
    assert config.seed == 7
    assert config.train == TrainConfig(lr=1.0, optimizer="sgd")
    assert isinstance(config.train.lr, float)
    assert config.data == DataConfig(scale=False)


def test_csv_source_with_path_is_accepted():
    config = config_from_dict({"data": {"source": "csv", "path": "rows.csv", "target": "price"}})
    assert (config.data.source, config.data.path, config.data.target) == ("csv", "rows.csv", "price")


@pytest.mark.parametrize(
    ("raw", "expected_fragments"),
    [
        pytest.param({"bogus": 1}, ["unknown key bogus", "seed", "data", "train"], id="unknown-top-level"),
        pytest.param(
            {"train": {"learning_rate": 0.1}},
            ["unknown key train.learning_rate", "lr", "epochs"],
            id="unknown-in-section",
        ),
        pytest.param({"train": {"lr": "fast"}}, ["train.lr", "a number", "str"], id="string-for-float"),
        pytest.param({"seed": -1}, ["seed", ">= 0"], id="negative-seed"),
        pytest.param({"train": {"epochs": 2.5}}, ["train.epochs", "an integer", "float"], id="float-for-int"),
        pytest.param({"train": {"epochs": True}}, ["train.epochs", "an integer", "bool"], id="bool-for-int"),
        pytest.param({"seed": False}, ["seed", "an integer", "bool"], id="bool-for-seed"),
        pytest.param({"train": {"shuffle": 1}}, ["train.shuffle", "true or false", "int"], id="int-for-bool"),
        pytest.param({"train": {"lr": None}}, ["train.lr", "a number", "null"], id="null-for-float"),
        pytest.param({"train": {"lr": -0.1}}, ["train.lr", "> 0"], id="negative-lr"),
        pytest.param({"train": {"lr": 0}}, ["train.lr", "> 0"], id="zero-lr"),
        pytest.param({"train": {"epochs": 0}}, ["train.epochs", ">= 1"], id="zero-epochs"),
        pytest.param({"data": {"val_fraction": 1.0}}, ["data.val_fraction", "< 1"], id="fraction-of-one"),
        pytest.param(
            {"model": {"activation": "swish"}},
            ["model.activation", "tanh_plus_x", "identity", "relu", "'swish'"],
            id="unknown-activation",
        ),
        pytest.param(
            {"tracking": {"promote": "best"}},
            ["tracking.promote must be one of best_test_mse, null; got 'best'"],
            id="unknown-optional-choice",
        ),
        pytest.param(
            {"train": {"optimizer": "rmsprop"}},
            ["train.optimizer", "sgd", "adam", "'rmsprop'"],
            id="unknown-optimizer",
        ),
        pytest.param(
            {"data": {"source": "sql"}}, ["data.source", "synthetic", "csv", "'sql'"], id="unknown-source"
        ),
        pytest.param(
            {"train": {"device": "tpu"}}, ["train.device", "auto", "cpu", "cuda"], id="unknown-device"
        ),
        pytest.param({"train": {"lr": float("inf")}}, ["train.lr", "finite"], id="infinite-float"),
        pytest.param({"data": {"noise_std": float("nan")}}, ["data.noise_std", "finite"], id="nan-float"),
        pytest.param(
            {"data": {"val_fraction": 0.5, "test_fraction": 0.4}},
            ["data.val_fraction + data.test_fraction", "< 0.9"],
            id="fractions-too-large",
        ),
        pytest.param({"data": {"source": "csv", "path": None}}, ["data.path", "csv"], id="csv-without-path"),
        pytest.param({"train": 5}, ["train must be a mapping", "int"], id="section-not-mapping"),
        pytest.param({"train": None}, ["train must be a mapping"], id="empty-section"),
        pytest.param([1, 2], ["top level must be a mapping", "list"], id="top-level-not-mapping"),
    ],
)
def test_config_from_dict_rejects_with_message_naming_key(raw, expected_fragments):
    with pytest.raises(ConfigError) as excinfo:
        config_from_dict(raw)
    message = str(excinfo.value)
    for fragment in expected_fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"


def test_config_error_is_an_input_error_with_exit_code_2():
    with pytest.raises(InputError) as excinfo:
        config_from_dict({"bogus": 1})
    assert excinfo.value.exit_code == 2


def test_load_config_missing_file_raises_config_error(tmp_path):
    missing = tmp_path / "params.yaml"
    with pytest.raises(ConfigError, match="file not found") as excinfo:
        load_config(missing)
    assert str(missing) in str(excinfo.value)


def test_load_config_invalid_yaml_raises_config_error(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("train:\n  lr: [0.1\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(path)


def test_load_config_reports_the_file_and_key(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("train:\n  lr: -1\n")
    with pytest.raises(ConfigError) as excinfo:
        load_config(path)
    assert str(path) in str(excinfo.value)
    assert "train.lr" in str(excinfo.value)


def test_load_config_empty_file_gives_defaults(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("")
    assert load_config(path) == Config()


def test_flat_gives_dotted_keys_for_every_field():
    flat = Config().flat()
    assert flat["seed"] == 42
    assert flat["train.lr"] == 0.03
    assert flat["data.source"] == "synthetic"
    assert flat["model.activation"] == "learnable_tanh_plus_x"
    assert flat["tracking.log_every_n_steps"] == 50
    sections = [f for f in dataclasses.fields(Config) if f.name != "seed"]
    n_leaf_fields = 1 + sum(len(dataclasses.fields(f.default_factory)) for f in sections)
    assert len(flat) == n_leaf_fields


def test_flat_keeps_only_named_sections():
    flat = Config().flat("seed", "train")
    assert set(flat) == {"seed"} | {f"train.{f.name}" for f in dataclasses.fields(TrainConfig)}


def test_exponent_without_a_dot_is_a_number():
    """YAML 1.1 reads `lr: 1e-3` as a string; the validator accepts it as the number it means."""
    assert config_from_dict({"train": {"lr": "1e-3"}}).train.lr == 0.001


@pytest.mark.parametrize(
    "name", ["a/b", "a:b", "", " torchtrack", "torchtrack ", "..", ".hidden", "o'brien", "a@b"]
)
def test_an_experiment_name_mlflow_would_refuse_stops_before_any_work(name):
    """MLflow refuses such a registered model name only after training (issue 24, point 15)."""
    with pytest.raises(ConfigError, match=r"^params: tracking\.experiment must be .*; got ") as caught:
        config_from_dict({"tracking": {"experiment": name}})
    assert "\n" not in str(caught.value)


def test_an_experiment_name_too_long_for_mlflow_stops_before_any_work():
    with pytest.raises(ConfigError, match="tracking.experiment must be at most 200 "):
        config_from_dict({"tracking": {"experiment": "x" * 201}})


@pytest.mark.parametrize("name", ["torchtrack", "penguins v2", "my-exp_2.0", "étude"])
def test_experiment_names_mlflow_accepts_pass(name):
    assert config_from_dict({"tracking": {"experiment": name}}).tracking.experiment == name
