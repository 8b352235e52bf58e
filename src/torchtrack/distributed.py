"""Training in several processes: `train.processes: N` re-runs the train stage under torchrun
(`python -m torch.distributed.run --standalone --nproc-per-node N -m torchtrack train`), and
each process (a rank) trains the same model with DistributedDataParallel: gloo on CPU, NCCL
on CUDA, one GPU per rank.

Started by torchrun directly (several nodes: its rendezvous flags, see docs/scaling.md), the
stage joins the process group torchrun describes in its environment instead. Every rank
takes an equal share of each batch (`shard_rows`), so the batch stays `train.batch_size` rows
and the learning rate means the same at any process count; the train and validation losses
are all-reduced, the same number on every rank. Only rank 0 logs and writes outputs.

A rank that fails or is killed ends them all: torchrun stops the others (max restarts 0) and
the stage exits non-zero with its report; a signal to the stage is passed on to torchrun.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

from torchtrack.config import Config, TrainConfig, params_mapping
from torchtrack.errors import ConfigError, TrainingError
from torchtrack.files import write_json

ELASTIC_RUN_TAG = "torchtrack.torchrun_run_id"  # the model run: torchrun's run id (--rdzv-id)
STOP_GRACE_S = 60  # after a signal, how long torchrun gets to stop the ranks before it is killed


def rank() -> int:
    """This process's rank among the training processes (0 when there is one process)."""
    return dist.get_rank() if dist.is_initialized() else 0


def world_size() -> int:
    """How many processes train together (1 outside a process group)."""
    return dist.get_world_size() if dist.is_initialized() else 1


def is_leader() -> bool:
    """True in the one process that logs and writes outputs: rank 0."""
    return rank() == 0


def is_node_leader() -> bool:
    """True in one process per machine (local rank 0): it keeps that machine's copy of the epoch
    checkpoint, so a restarted rank on any node resumes from a file of its own node."""
    return int(os.environ.get("LOCAL_RANK", "0")) == 0


def restartable() -> bool:
    """True under torchrun with `--max-restarts` above 0: after a rank fails, torchrun starts
    every rank again (on every node, the restart count only rises on the failed one's), and
    they resume from the last epoch checkpoint."""
    return int(os.environ.get("TORCHELASTIC_MAX_RESTARTS", "0")) > 0


def attempt_tag() -> tuple[str, str] | None:
    """(tag, torchrun's run id) for the model run, under torchrun: every attempt of one
    training run (restarts included) carries the same id, its `--rdzv-id`."""
    run_id = os.environ.get("TORCHELASTIC_RUN_ID")
    return (ELASTIC_RUN_TAG, run_id) if run_id and under_torchrun() else None


def check_same_on_every_rank(value: int, what: str, device: torch.device) -> None:
    """Raise TrainingError unless every rank holds the same `value` (named `what` in the message)."""
    values = [int(v) for v in gather(float(value), device)]
    if len(set(values)) > 1:
        raise TrainingError(
            f"the training processes disagree on {what}: {values} by rank; each node resumes from its "
            "own models/checkpoint.pt, so give every node the same one (or delete them all to start over)"
        )


def under_torchrun() -> bool:
    """True when torchrun (or any launcher setting its variables) started this process."""
    return "WORLD_SIZE" in os.environ and "RANK" in os.environ


def needs_launch(config: TrainConfig) -> bool:
    """True when the stage should start torchrun rather than train itself."""
    return config.processes > 1 and not under_torchrun()


def check_batch_split(batch_size: int, processes: int) -> None:
    """Raise ConfigError unless every process can take an equal share of each batch."""
    if batch_size % processes:
        raise ConfigError(
            f"train.batch_size ({batch_size}) must be divisible by the number of training processes "
            f"({processes}): each process takes an equal share of every batch"
        )


def launch(config: Config) -> None:
    """Run the train stage in `train.processes` ranks under torchrun on this machine; wait for it.

    The ranks read `config` from a temporary params file, so they train on exactly what this
    process was given. Raises TrainingError when a rank fails; a stop signal here is passed on
    to torchrun, which stops every rank (their runs end KILLED), and is raised again once they
    have ended.
    """
    processes = config.train.processes
    check_batch_split(config.train.batch_size, processes)
    with tempfile.TemporaryDirectory(prefix="torchtrack-ranks-") as folder:
        params = Path(folder) / "params.json"  # JSON is YAML: load_config reads it as params
        write_json(params, params_mapping(config))
        command = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc-per-node={processes}",
            "--max-restarts=0",
            "-m",
            "torchtrack",
            "train",
            "--params",
            str(params),
        ]
        # torchrun sets one OpenMP thread per rank unless told; train.num_threads 0 means the cores.
        threads = config.train.num_threads or max(1, (os.cpu_count() or 1) // processes)
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        # Its own session: a Ctrl-C at the terminal reaches only this process, which passes one
        # SIGTERM to torchrun, which passes one to each rank (two would cut their cleanup short).
        launcher = subprocess.Popen(command, env=env, start_new_session=True)
        try:
            code = launcher.wait()
        except BaseException:
            _stop(launcher)
            raise
    if code:
        raise TrainingError(
            f"training in {processes} processes failed (torchrun exit code {code}); torchrun's "
            "report above names the rank that failed and why, and every rank was stopped"
        )


def _stop(launcher: subprocess.Popen) -> None:
    """SIGTERM to torchrun (it stops the ranks), then SIGKILL to its whole session if it hangs."""
    if launcher.poll() is not None:
        return
    launcher.send_signal(signal.SIGTERM)
    try:
        launcher.wait(timeout=STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        os.killpg(launcher.pid, signal.SIGKILL)
        launcher.wait()


@contextmanager
def process_group(device: torch.device, config: TrainConfig) -> Iterator[torch.device]:
    """Join torchrun's process group, when torchrun started more than one process; yield the
    device this rank trains on (its own GPU on CUDA). The group is destroyed at the end."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size == 1:
        yield device
        return
    if size != config.processes:
        raise ConfigError(
            f"train.processes is {config.processes} but torchrun started {size} processes; set "
            f"train.processes: {size} so that params.yaml records how the model was trained"
        )
    check_batch_split(config.batch_size, size)
    if device.type == "cuda":
        local_rank, gpus = int(os.environ["LOCAL_RANK"]), torch.cuda.device_count()
        if local_rank >= gpus:
            raise ConfigError(
                f"train.processes: local rank {local_rank} needs a GPU of its own and this node has {gpus}; "
                "start at most one process per GPU, or train on the CPU (train.device: cpu)"
            )
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if restartable():
        dist.init_process_group(
            backend, store=_round_store(size), rank=rank_from_env(), world_size=size,
            device_id=_device_id(device),
        )  # fmt: skip
    else:
        dist.init_process_group(backend, device_id=_device_id(device))
    try:
        yield device
    except dist.DistError as exc:  # a peer went away mid-collective: say so in one line
        raise TrainingError(
            f"rank {rank()} lost contact with the other training processes (one of them stopped): "
            f"{str(exc).splitlines()[0]}"
        ) from None
    finally:
        dist.destroy_process_group()


def _round_store(size: int) -> dist.Store:
    """torchrun's store, under a prefix of this rendezvous round's own.

    torchrun's workers meet in its store under the prefix of their agent's restart count; after
    a rank fails, only the failed rank's agent counts a restart, so the ranks of the next round
    disagree on the prefix and one finds the dead ranks' addresses there. Counting the ranks that
    joined gives every rank of a round the same, new prefix: a round starts once every rank of
    the one before has stopped.
    """
    agent_store = os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True"
    store = dist.TCPStore(
        os.environ["MASTER_ADDR"],
        int(os.environ["MASTER_PORT"]),
        is_master=not agent_store and rank_from_env() == 0,
        multi_tenant=not agent_store,
    )
    joined = store.add(f"torchtrack/{os.environ.get('TORCHELASTIC_RUN_ID', '')}/joined", 1)
    return dist.PrefixStore(f"torchtrack/round{(joined - 1) // size}", store)


def rank_from_env() -> int:
    """This process's rank as torchrun gave it, before the process group exists."""
    return int(os.environ["RANK"])


def _device_id(device: torch.device) -> torch.device | None:
    return device if device.type == "cuda" else None


def wrap(model: nn.Module, device: torch.device) -> nn.Module:
    """`model` in DistributedDataParallel inside a process group (gradients averaged over the
    ranks at every step), else `model` itself."""
    if world_size() == 1:
        return model
    return nn.parallel.DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)


def mean_over_ranks(mean: float, rows: int, device: torch.device) -> float:
    """The mean over every rank's rows, from each rank's mean over its own `rows`."""
    if world_size() == 1:
        return mean
    totals = torch.tensor([mean * rows, float(rows)], dtype=torch.float64, device=device)
    dist.all_reduce(totals)
    return (totals[0] / totals[1].clamp(min=1)).item()


def gather(value: float, device: torch.device) -> list[float]:
    """`value` from every rank, in rank order (a one-item list outside a process group)."""
    if world_size() == 1:
        return [value]
    mine = torch.tensor([value], dtype=torch.float64, device=device)
    every = [torch.zeros_like(mine) for _ in range(world_size())]
    dist.all_gather(every, mine)
    return [t.item() for t in every]


def throughput(rows: int, started: float, device: torch.device) -> dict[str, float]:
    """Each rank's training rows per second since `started` (a perf_counter time), as metrics
    named by rank; `rows` were trained by all ranks together, an equal share by each."""
    mine = rows / world_size() / max(time.perf_counter() - started, 1e-9)
    return {f"samples_per_second_rank{r}": value for r, value in enumerate(gather(mine, device))}


def shard_rows(order: torch.Tensor, batch_size: int, rank: int, world_size: int) -> torch.Tensor:
    """This rank's rows of `order` (an epoch's row order, cut into batches of `batch_size`):
    an equal, disjoint slice of every batch, so that each optimizer step still sees
    `batch_size` rows across the ranks.

    The last, partial batch is split as evenly as it goes; with fewer rows than ranks it is
    left out, since every rank must take the same number of steps.
    """
    if world_size == 1:
        return order
    whole = len(order) // batch_size * batch_size
    head = order[:whole].view(-1, world_size, batch_size // world_size)[:, rank].reshape(-1)
    tail = order[whole:]
    if len(tail) < world_size:
        return head
    return torch.cat([head, tail.tensor_split(world_size)[rank]])
