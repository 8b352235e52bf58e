"""Training past one node, on one machine: two torchrun agents (`--nnodes 2 --nproc-per-node 1`)
meeting at a c10d rendezvous on 127.0.0.1 train the model that `train.processes: 2` trains,
bit for bit, with one MLflow model run. The command is docs/scaling.md's N-nodes command."""

from __future__ import annotations

import subprocess

import pytest

from pipeline_copy import BIN, LIMIT_S, copy_repo, dvc, pipeline_env, store, update_params
from team_services import free_port


def node_command(endpoint: str) -> list[str]:
    """What each node runs (docs/scaling.md), with one process per node."""
    return [
        str(BIN / "torchrun"),
        "--nnodes", "2", "--nproc-per-node", "1",
        "--rdzv-backend", "c10d", "--rdzv-endpoint", endpoint, "--rdzv-id", "two-nodes",
        "-m", "torchtrack", "train",
    ]  # fmt: skip


@pytest.mark.slow
def test_two_nodes_train_the_model_of_two_processes_bit_for_bit_with_one_model_run(tmp_path):
    repo = copy_repo(tmp_path)
    update_params(repo, train={"processes": 2})
    dvc(repo, "repro", "train")
    two_processes = (repo / "models" / "model.pt").read_bytes()
    (repo / "models" / "model.pt").unlink()

    command = node_command(f"127.0.0.1:{free_port()}")
    nodes = [
        subprocess.Popen(
            command, cwd=repo, env=pipeline_env(repo), stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        for _ in range(2)
    ]
    outputs = [node.communicate(timeout=LIMIT_S)[0].decode() for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], "\n".join(outputs)
    assert (repo / "models" / "model.pt").read_bytes() == two_processes

    client = store(repo)
    experiment_id = client.get_experiment_by_name("torchtrack").experiment_id
    model_runs = client.search_runs([experiment_id], "tags.`torchtrack.kind` = 'model'")
    assert len(model_runs) == 2  # dvc repro's and the two nodes' (rank 0 logs, rank 1 only trains)
    assert {run.info.status for run in model_runs} == {"FINISHED"}
    assert {run.data.tags["torchtrack.model_md5"] for run in model_runs} == {
        model_runs[0].data.tags["torchtrack.model_md5"]
    }
