"""Training in several processes (`train.processes`): each rank takes an equal, disjoint slice
of every batch; two real CPU ranks under torchrun reach the single process's test MSE with
one MLflow model run; a rank killed mid-epoch, or a signal to the stage, ends every rank
within seconds with nothing half-written."""

from __future__ import annotations

import json
import signal
import time

import pandas as pd
import psutil
import pytest
import torch

from pipeline_copy import StageProcess, copy_project, dvc, store, temporary_files, update_params
from torchtrack.cli import main
from torchtrack.config import TrainConfig
from torchtrack.distributed import process_group, shard_rows
from torchtrack.errors import ConfigError
from torchtrack.loader import make_loader
from torchtrack.tabular import TabularDataset

pytest_plugins = ["default_pipeline"]

# -- the shares, in-process ----------------------------------------------------------------


@pytest.mark.parametrize("n_rows, batch_size, world_size", [(103, 10, 2), (100, 12, 4), (37, 6, 3)])
def test_ranks_take_disjoint_equal_slices_of_every_batch(n_rows, batch_size, world_size):
    order = torch.randperm(n_rows, generator=torch.Generator().manual_seed(3))
    shares = [shard_rows(order, batch_size, rank, world_size) for rank in range(world_size)]
    taken = torch.cat(shares)
    assert len(set(taken.tolist())) == len(taken)  # no row in two ranks
    tail = n_rows % batch_size
    assert len(taken) == n_rows - (tail if tail < world_size else 0)  # only a tail too short to share is left
    local = batch_size // world_size
    for step, batch in enumerate(order[: n_rows // batch_size * batch_size].split(batch_size)):
        slices = [share[step * local : (step + 1) * local] for share in shares]
        assert torch.equal(torch.cat(slices), batch)  # every step still sees the whole batch


def test_the_ranks_batches_together_are_the_single_process_batches():
    dataset = TabularDataset(pd.DataFrame(torch.randn(200, 3).numpy(), columns=["a", "b", "y"]))

    def batches(rank: int, world_size: int) -> list[torch.Tensor]:
        loader = make_loader(
            dataset, 20, True, torch.Generator().manual_seed(5), rank=rank, world_size=world_size
        )
        return [X for X, _ in loader]

    single = batches(0, 1)
    ranks = [batches(rank, 2) for rank in range(2)]
    assert [len(b) for b in ranks[0]] == [10] * 10 == [len(b) for b in ranks[1]]
    for step, whole in enumerate(single):
        assert torch.equal(torch.cat([ranks[0][step], ranks[1][step]]), whole)


def test_a_batch_that_does_not_split_evenly_over_the_processes_is_refused(tmp_path, capsys):
    params = tmp_path / "params.yaml"
    params.write_text(json.dumps({"train": {"processes": 3, "batch_size": 256}}))
    assert main(["train", "--params", str(params)]) == 2
    assert "train.batch_size (256) must be divisible by the number of training processes (3)" in (
        capsys.readouterr().err
    )


def test_torchrun_with_another_process_count_than_params_is_refused(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "4")
    with pytest.raises(ConfigError, match="train.processes is 2 but torchrun started 4 processes"):
        with process_group(torch.device("cpu"), TrainConfig(processes=2)):
            pass


# -- real ranks under torchrun -------------------------------------------------------------


@pytest.mark.slow
def test_two_processes_reach_the_single_process_test_mse_with_one_model_run(default_pipeline, tmp_path):
    repo = copy_project(default_pipeline, tmp_path / "repo")  # after the default `dvc repro`
    single = json.loads((repo / "metrics" / "evaluate.json").read_text())["test_mse"]
    update_params(repo, train={"processes": 2})
    dvc(repo, "repro")
    double = json.loads((repo / "metrics" / "evaluate.json").read_text())["test_mse"]
    assert double == pytest.approx(single, rel=0.02)

    client = store(repo)
    experiment_id = client.get_experiment_by_name("torchtrack").experiment_id
    model_runs = client.search_runs([experiment_id], "tags.`torchtrack.kind` = 'model'")
    assert sorted(run.data.params["train.processes"] for run in model_runs) == ["1", "2"]  # one run each
    assert {run.info.status for run in model_runs} == {"FINISHED"}
    two = next(run for run in model_runs if run.data.params["train.processes"] == "2")
    train_runs = client.search_runs(
        [experiment_id], f"tags.`mlflow.parentRunId` = '{two.info.run_id}' AND tags.`dvc.stage` = 'train'"
    )
    assert len(train_runs) == 1
    rates = train_runs[0].data.metrics
    assert rates["samples_per_second_rank0"] > 0 and rates["samples_per_second_rank1"] > 0
    assert len(list((repo / "runs" / "train").iterdir())) == 2  # one TensorBoard directory per run

    # A split larger than the shuffle buffer, read a window at a time: each rank reads its share.
    update_params(repo, train={"processes": 2, "shuffle_buffer_rows": 10_000})
    printed = dvc(repo, "repro", stderr=True)
    assert "train.parquet: 35,000 rows, read a window of at most 35,000 at a time" in printed
    windowed = json.loads((repo / "metrics" / "evaluate.json").read_text())["test_mse"]
    assert windowed == pytest.approx(single, rel=0.05)  # another order of the rows, as good a fit


PARAMS = {  # epochs of several seconds each, so a kill after the first one lands mid-epoch
    "data": {"n_samples": 60000},
    "train": {"epochs": 5, "max_steps": 10**6, "batch_size": 8, "processes": 2},  # 5 epochs
}
DEADLINE_S = 60  # every rank gone and the stage ended by then, or it hangs


def started_ranks(stage: StageProcess) -> dict[int, psutil.Process]:
    """The stage's training processes (torchrun's children) by rank."""
    ranks = {}
    for child in psutil.Process(stage.process.pid).children(recursive=True):
        try:
            environ = child.environ()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        if "RANK" in environ and "torch.distributed.run" not in " ".join(child.cmdline()):
            ranks[int(environ["RANK"])] = child
    return ranks


@pytest.fixture
def training_in_two_processes(prepared_60k, tmp_path):
    repo = copy_project(prepared_60k, tmp_path / "repo")
    update_params(repo, **PARAMS)  # the same data params: prepare stays up to date
    stage = StageProcess(repo, "train")
    stage.wait_for_line("epoch   1/")
    ranks = started_ranks(stage)
    assert sorted(ranks) == [0, 1]
    yield repo, stage, ranks
    for rank in ranks.values():  # a failed test leaves nothing running
        if rank.is_running():
            rank.kill()


def assert_stopped_cleanly(repo, stage, ranks, started: float) -> None:
    """Everything ended by the deadline, no run left RUNNING, no output half-written."""
    assert time.monotonic() - started < DEADLINE_S, stage.stderr
    gone, alive = psutil.wait_procs(list(ranks.values()), timeout=1)
    assert alive == []
    client = store(repo)
    experiment_id = client.get_experiment_by_name("torchtrack").experiment_id
    runs = client.search_runs([experiment_id])
    assert {run.data.tags["torchtrack.kind"] for run in runs} == {"model", "stage"}  # rank 0's only
    assert len(runs) == 2
    assert {run.info.status for run in runs} <= {"FAILED", "KILLED"}
    assert not (repo / "models" / "model.pt").exists()
    assert temporary_files(repo) == []


@pytest.mark.slow
def test_a_rank_killed_mid_epoch_ends_every_rank_with_a_clear_error(training_in_two_processes):
    repo, stage, ranks = training_in_two_processes
    started = time.monotonic()
    ranks[1].kill()
    code = stage.wait()
    assert code == 1
    assert "training in 2 processes failed" in stage.stderr
    assert "SIGKILL" in stage.stderr  # torchrun's report names the rank and why
    assert_stopped_cleanly(repo, stage, ranks, started)


@pytest.mark.slow
def test_sigterm_to_the_stage_stops_every_rank_and_their_runs_end_killed(training_in_two_processes):
    repo, stage, ranks = training_in_two_processes
    started = time.monotonic()
    assert stage.stop(signal.SIGTERM) == 143
    assert_stopped_cleanly(repo, stage, ranks, started)
    experiment_id = store(repo).get_experiment_by_name("torchtrack").experiment_id
    assert {run.info.status for run in store(repo).search_runs([experiment_id])} == {"KILLED"}
