"""Training past one node, on one machine: two torchrun agents (`--nnodes 2 --nproc-per-node 1`)
meeting at a c10d rendezvous on 127.0.0.1 train the model that `train.processes: 2` trains,
bit for bit, with one MLflow model run; and with `--max-restarts 1`, a worker killed
mid-training is restarted, training resumes from the last epoch checkpoint and ends with the
same model.pt, still one model run. The command is docs/scaling.md's N-nodes command."""

from __future__ import annotations

import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import psutil
import pytest

from pipeline_copy import BIN, LIMIT_S, copy_repo, dvc, pipeline_env, store, update_params
from team_services import free_port


def node_command(endpoint: str, *extra: str) -> list[str]:
    """What each node runs (docs/scaling.md), with one process per node."""
    return [
        str(BIN / "torchrun"),
        "--nnodes", "2", "--nproc-per-node", "1",
        "--rdzv-backend", "c10d", "--rdzv-endpoint", endpoint, "--rdzv-id", "two-nodes", *extra,
        "-m", "torchtrack", "train",
    ]  # fmt: skip


class TwoNodes:
    """Two torchrun agents in `repo` (both nodes share its folder), their output read as it comes."""

    def __init__(self, repo: Path, *extra: str):
        command = node_command(f"127.0.0.1:{free_port()}", *extra)
        self.agents = [
            subprocess.Popen(
                command,
                cwd=repo,
                env=pipeline_env(repo),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            for _ in range(2)
        ]
        self.lines: list[str] = []
        self._readers = [threading.Thread(target=self._read, args=(a,), daemon=True) for a in self.agents]
        for reader in self._readers:
            reader.start()

    def _read(self, agent: subprocess.Popen) -> None:
        for line in agent.stdout:
            self.lines.append(line)

    def wait_for_line(self, prefix: str) -> None:
        deadline = time.monotonic() + LIMIT_S
        while not any(line.startswith(prefix) for line in self.lines):
            assert time.monotonic() < deadline and all(a.poll() is None for a in self.agents), self.output
            time.sleep(0.2)

    def worker(self, rank: int) -> psutil.Process:
        """The training process of `rank` (a child of one of the agents)."""
        for agent in self.agents:
            for child in psutil.Process(agent.pid).children(recursive=True):
                if child.environ().get("RANK") == str(rank):
                    return child
        raise AssertionError(f"no worker of rank {rank}")

    def wait(self) -> list[int]:
        codes = [agent.wait(timeout=LIMIT_S) for agent in self.agents]
        for reader in self._readers:
            reader.join()
        return codes

    @property
    def output(self) -> str:
        return "".join(self.lines)


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory) -> tuple[Path, bytes]:
    """A repo whose train.processes is 2, with its prepared data, and the model.pt two processes
    on this machine train from it (dvc repro); the model file itself removed."""
    repo = copy_repo(tmp_path_factory.mktemp("two-processes"))
    update_params(repo, train={"processes": 2})
    dvc(repo, "repro", "train")
    model = repo / "models" / "model.pt"
    trained = model.read_bytes()
    model.unlink()
    return repo, trained


def model_runs(repo: Path) -> list:
    client = store(repo)
    experiment_id = client.get_experiment_by_name("torchtrack").experiment_id
    return client.search_runs([experiment_id], "tags.`torchtrack.kind` = 'model'")


@pytest.mark.slow
@pytest.mark.full
def test_two_nodes_train_the_model_of_two_processes_bit_for_bit_with_one_model_run(two_processes, tmp_path):
    repo = Path(shutil.copytree(two_processes[0], tmp_path / "repo"))
    nodes = TwoNodes(repo)
    assert nodes.wait() == [0, 0], nodes.output
    assert (repo / "models" / "model.pt").read_bytes() == two_processes[1]
    runs = model_runs(repo)
    assert len(runs) == 2  # dvc repro's and the two nodes' (rank 0 logs, rank 1 only trains)
    assert {run.info.status for run in runs} == {"FINISHED"}
    assert len({run.data.tags["torchtrack.model_md5"] for run in runs}) == 1


@pytest.mark.slow
@pytest.mark.full
def test_a_worker_killed_mid_training_is_restarted_and_resumes_to_the_same_model_in_one_model_run(
    two_processes, tmp_path
):
    repo = Path(shutil.copytree(two_processes[0], tmp_path / "repo"))
    nodes = TwoNodes(repo, "--max-restarts", "1")
    nodes.wait_for_line("epoch   3/")
    nodes.worker(1).send_signal(signal.SIGKILL)
    assert nodes.wait() == [0, 0], nodes.output
    assert "resuming after epoch" in nodes.output  # from a checkpoint, not from epoch 1
    assert (repo / "models" / "model.pt").read_bytes() == two_processes[1]
    assert not (repo / "models" / "checkpoint.pt").exists()

    runs = [run for run in model_runs(repo) if "torchtrack.torchrun_run_id" in run.data.tags]
    elastic = [run for run in runs if run.data.tags["torchtrack.torchrun_run_id"] == "two-nodes"]
    assert len(elastic) == 1 and elastic[0].info.status == "FINISHED"
    client = store(repo)
    attempts = client.search_runs(
        [elastic[0].info.experiment_id],
        f"tags.`mlflow.parentRunId` = '{elastic[0].info.run_id}' AND tags.`dvc.stage` = 'train'",
    )
    # One train run per attempt: the first ended when its peer died (its own rank lost the
    # connection, FAILED, or torchrun stopped it, KILLED); the restarted one finished.
    first, second = sorted(attempts, key=lambda run: run.info.start_time)
    assert first.info.status in {"FAILED", "KILLED"} and second.info.status == "FINISHED"
