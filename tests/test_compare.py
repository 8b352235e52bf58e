"""compare: an experiment's model runs, read from a real MLflow store, best first."""

from __future__ import annotations

import math

import pytest

from helpers import isolate_env
from torchtrack.cli import main
from torchtrack.compare import (
    comparison_report,
    find_model_runs,
    higher_is_better,
    rank_runs,
    runs_table,
    shown_param,
)
from torchtrack.config import TrackingConfig
from torchtrack.errors import InputError
from torchtrack.tracking.tracker import Tracker

EXPERIMENT = "compare-test"
BASE_PARAMS = {"model.activation": "tanh_plus_x", "train.optimizer": "adam", "train.lr": 0.01,
               "train.max_steps": 2000, "train.batch_size": 256, "data.n_samples": 1000,
               "seed": 42}  # fmt: skip
# run name -> (params that differ from BASE_PARAMS, the model run's summary metrics)
RUNS = {
    "middling": ({"train.lr": 0.1}, {"test_mse": 0.2, "test_r2": 0.8, "val_loss": 0.21}),
    "best": ({"model.activation": "identity"}, {"test_mse": 0.1, "test_r2": 0.9, "val_loss": 0.11}),
    "worst": ({"train.optimizer": "sgd"}, {"test_mse": 0.3, "test_r2": 0.7, "val_loss": 0.31}),
    "diverged": ({"train.lr": 10.0}, {"test_mse": math.nan, "test_r2": math.nan, "val_loss": math.nan}),
    "unevaluated": ({"seed": 7}, {"val_loss": 0.05}),  # trained, never evaluated
}


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> str:
    """A SQLite store holding RUNS as model runs, plus stage and prepare runs that must be ignored."""
    root = tmp_path_factory.mktemp("store")
    config = TrackingConfig(experiment=EXPERIMENT)
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        isolate_env(patch)
        for name, (changes, summary) in RUNS.items():
            patch.setenv("DVC_EXP_NAME", name)  # how `dvc exp run` names a model run
            with Tracker(config, "train", params=BASE_PARAMS | changes, model_run="new") as tracker:
                tracker.log_metrics({"test_mse": 0.0})  # on the nested stage run: not a model
                tracker.log_summary(summary)
        patch.delenv("DVC_EXP_NAME")
        with Tracker(config, "prepare", params=BASE_PARAMS) as tracker:  # <experiment>-prepare
            tracker.log_metrics({"test_mse": 0.0})
    return f"sqlite:///{root / 'mlflow.db'}"


def names(runs) -> list[str]:
    return [run.info.run_name for run in runs]


def test_only_the_model_runs_of_the_experiment_are_compared(store):
    assert sorted(names(find_model_runs(EXPERIMENT, store))) == sorted(RUNS)


def test_lower_is_better_and_runs_without_the_metric_or_with_nan_come_last_newest_first(store):
    ranked = rank_runs(find_model_runs(EXPERIMENT, store), "test_mse")
    assert names(ranked) == ["best", "middling", "worst", "unevaluated", "diverged"]


def test_higher_is_better_for_r2():
    assert higher_is_better("test_r2") and not higher_is_better("test_mse")
    assert not higher_is_better("val_loss") and not higher_is_better("test_mae")


def test_ranking_by_r2_puts_the_highest_first(store):
    ranked = rank_runs(find_model_runs(EXPERIMENT, store), "test_r2")
    assert names(ranked)[:3] == ["best", "middling", "worst"]


def test_table_shows_the_params_that_differ_and_the_ranking_metric_first(store):
    table = runs_table(rank_runs(find_model_runs(EXPERIMENT, store), "val_loss"), "val_loss")
    assert list(table.columns) == ["#", "run", "id", "model.activation", "seed", "train.lr",
                                   "train.optimizer", "val_loss", "test_mse", "test_mae",
                                   "test_r2"]  # fmt: skip
    assert table.iloc[0].to_dict() | {"id": "?"} == {
        "#": 1, "run": "unevaluated", "id": "?", "model.activation": "tanh_plus_x", "seed": "7",
        "train.lr": "0.01", "train.optimizer": "adam",
        "val_loss": "0.05", "test_mse": "-", "test_mae": "-", "test_r2": "-",
    }  # fmt: skip


def test_runs_that_differ_only_by_a_param_show_only_that_one(store):
    runs = [
        run for run in find_model_runs(EXPERIMENT, store) if run.info.run_name in ("middling", "diverged")
    ]
    table = runs_table(rank_runs(runs, "test_mse"), "test_mse")
    assert list(table.columns)[3:4] == ["train.lr"] and "train.optimizer" not in table.columns


def test_runs_with_the_same_params_show_the_key_params(store):
    runs = [run for run in find_model_runs(EXPERIMENT, store) if run.info.run_name == "best"]
    table = runs_table(runs, "test_mse")
    assert list(table.columns)[3:8] == ["model.activation", "train.optimizer", "train.lr",
                                        "train.max_steps", "train.batch_size"]  # fmt: skip


@pytest.mark.parametrize(
    ("logged", "shown"),
    [("0.00944095324834808", "0.00944095"), ("0.03", "0.03"), ("1e-05", "1e-05"), ("2000", "2000"),
     ("adam", "adam"), ("[64, 64]", "[64, 64]"), ("True", "True"), ("None", "None")],
)  # fmt: skip
def test_float_params_are_shown_to_six_significant_digits(logged, shown):
    assert shown_param(logged) == shown


def test_report_is_a_heading_and_an_aligned_table_cut_to_the_limit(store):
    lines = comparison_report(EXPERIMENT, "test_mse", limit=2, tracking_uri=store).splitlines()
    assert lines[0] == (f"experiment '{EXPERIMENT}': 5 model run(s), best test_mse first "
                        "(lower is better); showing 2, --limit for more")  # fmt: skip
    assert len(lines) == 4  # heading, column names, two runs
    assert len({len(line) for line in lines[1:]}) == 1  # every table line is padded to one width
    assert lines[2].split()[:2] == ["1", "best"]


def test_an_experiment_without_model_runs_says_so(store):
    assert "has no model runs yet" in comparison_report(f"{EXPERIMENT}-prepare", tracking_uri=store)


def test_an_unknown_experiment_or_metric_is_an_input_error_listing_the_choices(store):
    with pytest.raises(InputError, match=f"no MLflow experiment named 'nope'.*{EXPERIMENT}"):
        find_model_runs("nope", store)
    with pytest.raises(InputError, match="no run has metric 'test_mape'; logged metrics: test_mse, test_r2"):
        rank_runs(find_model_runs(EXPERIMENT, store), "test_mape")


def test_cli_prints_the_table_and_exits_0(store, monkeypatch, capsys):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    assert main(["compare", "--experiment", EXPERIMENT, "--metric", "test_r2", "--limit", "3"]) == 0
    out = capsys.readouterr().out
    assert "best test_r2 first (higher is better)" in out
    assert [line.split()[1] for line in out.splitlines()[2:]] == ["best", "middling", "worst"]


def test_cli_reads_the_experiment_from_params_by_default(store, monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    (tmp_path / "params.yaml").write_text(f"tracking:\n  experiment: {EXPERIMENT}\n")
    assert main(["compare", "--params", str(tmp_path / "params.yaml")]) == 0
    assert f"experiment '{EXPERIMENT}'" in capsys.readouterr().out


def test_cli_unknown_experiment_exits_2(store, monkeypatch, capsys):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    assert main(["compare", "--experiment", "nope"]) == 2
    assert "no MLflow experiment named 'nope'" in capsys.readouterr().err


@pytest.fixture(scope="module")
def mixed_store(tmp_path_factory) -> str:
    """Model runs on two datasets (DVC hashes of data/prepared), one of them FAILED."""
    from torchtrack.tracking.hashes import PREPARED_TAG

    root = tmp_path_factory.mktemp("mixed")
    config = TrackingConfig(experiment=EXPERIMENT)
    runs = [
        ("old-a", "aaaa1111.dir", 0.2, None),
        ("old-b", "aaaa1111.dir", 0.1, None),
        ("new-a", "bbbb2222.dir", 0.4, None),
        ("new-crashed", "bbbb2222.dir", 0.05, ValueError),
    ]
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        for name in ("MLFLOW_TRACKING_URI", "DVC_ROOT"):
            patch.delenv(name, raising=False)
        for name, data, mse, error in runs:
            patch.setenv("DVC_EXP_NAME", name)
            try:
                with Tracker(
                    config, "train", params=BASE_PARAMS, model_run="new", tags={PREPARED_TAG: data}
                ) as tracker:
                    tracker.log_summary({"test_mse": mse})
                    if error:
                        raise error("diverged")
            except ValueError:
                pass
    return f"sqlite:///{root / 'mlflow.db'}"


def test_finished_runs_only_by_default_all_with_a_status_column(mixed_store):
    report = comparison_report(EXPERIMENT, tracking_uri=mixed_store)
    assert "new-crashed" not in report and "status" not in report
    everything = comparison_report(EXPERIMENT, tracking_uri=mixed_store, everything=True)
    (crashed,) = [line for line in everything.splitlines() if "new-crashed" in line]
    assert "FAILED" in crashed.split()
    header = next(line for line in everything.splitlines() if line.split()[:1] == ["#"])
    assert header.split()[:4] == ["#", "run", "id", "status"]


def test_runs_on_different_data_are_ranked_apart_newest_data_first(mixed_store):
    lines = comparison_report(EXPERIMENT, tracking_uri=mixed_store).splitlines()
    assert lines[0].endswith("ranked within each of 2 datasets (newest data first)")
    headings = [line for line in lines if line.startswith("data ")]
    assert headings == ["data bbbb2222.dir: 1 run(s)", "data aaaa1111.dir: 2 run(s)"]
    ranked = [line.split()[1] for line in lines if line.split()[:1] in (["1"], ["2"])]
    assert ranked == ["new-a", "old-b", "old-a"]  # old-b (0.1) beats old-a, never compared with new-a


def test_dataset_filters_by_a_prefix_of_the_data_hash(mixed_store, monkeypatch, capsys):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mixed_store)
    assert main(["compare", "--experiment", EXPERIMENT, "--dataset", "aaaa"]) == 0
    out = capsys.readouterr().out
    assert "old-a" in out and "old-b" in out and "new-a" not in out and "data " not in out
    assert main(["compare", "--experiment", EXPERIMENT, "--dataset", "x' OR '1"]) == 2
    assert "--dataset must be (a prefix of) a DVC md5 hash" in capsys.readouterr().err
