"""torchtrack tune: the search space file is checked against params.yaml; the train stage
reports to its Optuna trial and is pruned when worse than the median; a study run with
`--jobs 2` leaves one DVC experiment and one tagged MLflow model run per trial; two workers
on one study share its trials, none run twice; a killed worker's trial is marked failed and
another worker finishes the study."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from pipeline_copy import LIMIT_S, copy_repo, dvc, pipeline_env, store, update_params
from torchtrack.cli import main
from torchtrack.compare import shown_param
from torchtrack.config import Config
from torchtrack.errors import ConfigError
from torchtrack.trial import (
    GRACE_S,
    PRUNED_ATTR,
    STUDY_TAG,
    TRIAL_TAG,
    StudyTrial,
    TrialPruned,
    make_pruner,
    open_storage,
)
from torchtrack.tune import STATE_TAG, load_space

# -- the search space ----------------------------------------------------------------------


def write_space(folder: Path, text: str) -> Path:
    path = folder / "tune.yaml"
    path.write_text(text)
    return path


def test_the_projects_search_space_is_valid():
    space = load_space(Path(__file__).resolve().parents[1] / "tune.yaml", Config())
    assert space.metric == "test_mse" and space.dimensions


def test_the_projects_search_space_offers_the_default_linear_model_only_activations_that_hold_a_line():
    """relu after one linear layer cuts the output at 0: a trial lost (issue 24, point 5)."""
    raw = yaml.safe_load((Path(__file__).resolve().parents[1] / "tune.yaml").read_text())
    assert Config().model.kind == "linear" and "model.kind" not in raw["space"]
    offered = set(raw["space"]["model.activation"]["choices"])
    assert offered <= {"identity", "tanh_plus_x", "learnable_tanh_plus_x", "manual_grad_tanh_plus_x"}
    assert Config().model.activation in offered


@pytest.mark.parametrize(
    "space, message",
    [
        ("space: {train.nope: {low: 1, high: 2}}", "space.train.nope: not a params key"),
        ("space: {train.lr: {low: 0.1, high: 0.01}}", "low and high must be numbers with low < high"),
        ("space: {train.lr: {low: 0, high: 0.1, log: true}}", "log: true needs low > 0"),
        ("space: {train.lr: {low: -1.0, high: 0.1}}", "train.lr must be > 0"),
        ("space: {model.activation: {choices: [relu, nope]}}", "model.activation must be one of"),
        ("space: {train.lr: {choices: []}}", "choices must be a non-empty list"),
        ("space: {}", "needs a non-empty `space:` mapping"),
        ("space: {train.lr: {low: 0.1, high: 1}}\nsampler: tpe", "unknown key 'sampler'"),
    ],
)
def test_a_bad_search_space_is_refused_naming_the_entry(tmp_path, space, message):
    with pytest.raises(ConfigError, match=message):
        load_space(write_space(tmp_path, space), Config())


def test_dimensions_suggest_ints_floats_and_list_choices(tmp_path):
    space = load_space(
        write_space(
            tmp_path,
            "space:\n"
            "  train.epochs: {low: 2, high: 9}\n"
            "  train.lr: {low: 0.001, high: 0.1, log: true}\n"
            "  model.hidden_sizes: {choices: [[8], [16, 16]]}\n",
        ),
        Config(),
    )
    trial = optuna.create_study().ask()
    values = {d.key: d.suggest(trial) for d in space.dimensions}
    assert isinstance(values["train.epochs"], int) and 2 <= values["train.epochs"] <= 9
    assert isinstance(values["train.lr"], float) and 0.001 <= values["train.lr"] <= 0.1
    assert values["model.hidden_sizes"] in ([8], [16, 16])


def test_a_missing_space_file_exits_2_with_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text("{}")
    assert main(["tune", "--space", "missing.yaml"]) == 2
    err = capsys.readouterr().err
    assert "missing.yaml: search space file not found" in err and len(err.splitlines()) == 1


# -- the train stage's side of a trial -------------------------------------------------------


PRUNER = {"startup_trials": 1, "warmup_epochs": 0}


def study_after_a_good_trial(tmp_path, epochs: int) -> tuple[optuna.Study, StudyTrial]:
    """A study whose one finished trial reported val loss 0.1 for `epochs` epochs, and the
    train stage's reporter for its second trial, just asked."""
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    study = optuna.create_study(
        storage=open_storage(storage, heartbeat=False), study_name="s", pruner=make_pruner(PRUNER)
    )
    good = study.ask()
    for epoch in range(1, epochs + 1):
        good.report(0.1, epoch)
    study.tell(good, 0.1)
    trial = study.ask()
    spec = {"storage": storage, "study": "s", "number": trial.number, "trial_id": trial._trial_id}
    return study, StudyTrial({**spec, "pruner": PRUNER})


def test_a_trial_worse_than_the_median_is_pruned_and_says_so(tmp_path):
    study, reporter = study_after_a_good_trial(tmp_path, epochs=2)
    assert reporter.tags() == {STUDY_TAG: "s", TRIAL_TAG: "1"}
    with pytest.raises(TrialPruned, match="trial 1 of study 's' pruned after epoch 1"):
        reporter.report(1, 5.0)
    assert study.trials[1].user_attrs[PRUNED_ATTR] == 1
    assert study.trials[1].intermediate_values == {1: 5.0}


def test_a_trial_as_good_as_the_median_is_not_pruned(tmp_path):
    study, reporter = study_after_a_good_trial(tmp_path, epochs=1)
    reporter.report(1, 0.05)
    assert PRUNED_ATTR not in study.trials[1].user_attrs


# -- real studies over real DVC experiments --------------------------------------------------

SMALL = {"data": {"n_samples": 1000}, "train": {"epochs": 2}}
SPACE = """\
space:
  train.lr: {low: 0.001, high: 0.1, log: true}
  model.activation: {choices: [identity, relu]}
"""


@pytest.fixture
def small_project(tmp_path):
    repo = copy_repo(tmp_path)
    update_params(repo, **SMALL)
    write_space(repo, SPACE)
    subprocess.run(["git", "commit", "-qam", "small data"], cwd=repo, env=pipeline_env(repo), check=True)
    return repo


def tune(repo: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "torchtrack", "tune", *args],
        cwd=repo,
        env=pipeline_env(repo),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finished(process: subprocess.Popen) -> str:
    out, err = process.communicate(timeout=3 * LIMIT_S)
    assert process.returncode == 0, err
    return out


def model_runs_of(repo: Path, study: str) -> list:
    client = store(repo)
    experiment_id = client.get_experiment_by_name("torchtrack").experiment_id
    return client.search_runs(
        [experiment_id], f"tags.`torchtrack.kind` = 'model' AND tags.`{STUDY_TAG}` = '{study}'"
    )


def experiments(repo: Path) -> list[str]:
    return dvc(repo, "exp", "list", "--name-only").split()


@pytest.mark.slow
@pytest.mark.full
def test_a_study_with_two_jobs_leaves_a_dvc_experiment_and_a_model_run_per_trial(small_project):
    repo = small_project
    out = finished(tune(repo, "--study", "s", "--trials", "4", "--jobs", "2"))
    assert sorted(experiments(repo)) == [f"s-{n}" for n in range(4)]
    runs = model_runs_of(repo, "s")
    assert sorted(int(run.data.tags[TRIAL_TAG]) for run in runs) == [0, 1, 2, 3]
    assert {run.data.tags[STATE_TAG] for run in runs} == {"COMPLETE"}
    assert len({run.data.tags["mlflow.parentRunId"] for run in runs}) == 1  # nested under the study run
    study_run = store(repo).get_run(runs[0].data.tags["mlflow.parentRunId"])
    assert study_run.data.tags["torchtrack.kind"] == "study" and study_run.info.run_name == "study s"
    # Identity trials all end as the least-squares line, whatever their lr: a tie goes to the first.
    best = min(runs, key=lambda run: (run.data.metrics["test_mse"], int(run.data.tags[TRIAL_TAG])))
    assert f"best: trial {best.data.tags[TRIAL_TAG]}, test_mse {best.data.metrics['test_mse']:.6g}" in out
    # The params as compare shows them (PARAM_DIGITS significant digits); the trial ran the exact value.
    assert f"train.lr={shown_param(float(best.data.params['train.lr']))}" in out
    assert f"apply it: dvc exp apply s-{best.data.tags[TRIAL_TAG]}" in out


@pytest.mark.slow
@pytest.mark.full
def test_two_workers_on_one_study_share_its_trials_and_run_none_twice(small_project):
    repo = small_project
    workers = [tune(repo, "--study", "shared", "--trials", "6") for _ in range(2)]
    outputs = [finished(worker) for worker in workers]
    assert all(" (shared-" in out for out in outputs)  # both workers ran trials
    study = optuna.load_study(study_name="shared", storage=f"sqlite:///{repo / 'optuna.db'}")
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 6
    runs = model_runs_of(repo, "shared")
    assert sorted(int(run.data.tags[TRIAL_TAG]) for run in runs) == list(range(6))  # each trial once
    assert sorted(experiments(repo)) == sorted(f"shared-{n}" for n in range(6))


@pytest.mark.slow
@pytest.mark.full
def test_a_killed_workers_trial_is_marked_failed_and_the_study_carries_on(small_project):
    repo = small_project
    doomed = subprocess.Popen(
        [sys.executable, "-m", "torchtrack", "tune", "--study", "k", "--trials", "2"],
        cwd=repo,
        env=pipeline_env(repo),
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group: the kill takes its experiment too
    )
    assert doomed.stdout.readline().startswith("trial 0 (k-0)")
    os.killpg(doomed.pid, signal.SIGKILL)
    doomed.wait()
    time.sleep(GRACE_S + 1)  # its trial's last heartbeat is now older than the grace period
    out = finished(tune(repo, "--study", "k", "--trials", "2"))
    study = optuna.load_study(study_name="k", storage=f"sqlite:///{repo / 'optuna.db'}")
    states = [t.state for t in study.trials]
    assert states == [TrialState.FAIL, TrialState.COMPLETE, TrialState.COMPLETE], out


@pytest.mark.slow
@pytest.mark.full
def test_a_trial_clearly_worse_than_the_others_is_pruned_in_optuna_and_mlflow(small_project):
    repo = small_project
    write_space(
        repo, "pruner: {startup_trials: 1, warmup_epochs: 0}\nspace:\n  train.lr: {low: 1.0e-6, high: 0.1}\n"
    )
    storage = f"sqlite:///{repo / 'optuna.db'}"
    study = optuna.create_study(storage=storage, study_name="p")
    study.enqueue_trial({"train.lr": 0.05})  # trial 0 learns; trial 1 barely moves, and is pruned
    study.enqueue_trial({"train.lr": 1.0e-6})
    out = finished(tune(repo, "--study", "p", "--trials", "2"))
    assert "trial 1: pruned after epoch 1" in out
    assert [t.state for t in optuna.load_study(study_name="p", storage=storage).trials] == [
        TrialState.COMPLETE,
        TrialState.PRUNED,
    ]
    pruned = next(run for run in model_runs_of(repo, "p") if run.data.tags[TRIAL_TAG] == "1")
    assert pruned.data.tags[STATE_TAG] == "PRUNED" and pruned.info.status == "FAILED"
    assert "epochs" not in pruned.data.metrics  # it stopped before the end of training
