"""Performance benchmark: `make bench` prints one table of targets and writes benchmarks/results.json.

Measures, side by side in one run on this machine:
  1. tracking overhead: the project's `fit` with a real Tracker (TensorBoard + MLflow SQLite,
     default settings) vs a bare randperm/slicing loop, samples/s at batch 64 and 1024, and
     vs the same `fit` without a tracker (tracking's own cost);
  2. data path: batches/s of the project's loader vs a per-row DataLoader; and, as the reason
     for a design choice, the step time of each optimizer, fused vs PyTorch's default;
  3. scale: peak resident memory of each stage on 1,000,000 rows x 16 features; train's
     samples/s vs a bare loop over the same Parquet splits; prepare on a CSV of the same rows vs
     a plain pyarrow script (benchmarks/plain_prepare.py), each process start to exit;
  4. start-up: a no-op `dvc repro` and `torchtrack --help`;
  5. the default `dvc repro`, its wall time split into phases (src/torchtrack/profiling.py);
  6. what the pinned CPU kernels (src/torchtrack/cpu_kernels.py) cost: training samples/s
     with them vs with the CPU's own (TORCHTRACK_NATIVE_KERNELS=1), each in its own process;
  7. fixed cost: `dvc repro -f` vs the same work as three plain Python processes
     (benchmarks/plain_pipeline.py, sized from params.yaml), interleaved over rounds, and each
     stage's CPU time split into phases, from interpreter start to exit, the store daemon's
     work for it included (src/torchtrack/tracking/backend/daemon.py); then the same ratio for
     the first `dvc repro -f` with no store daemon running (stopped before each round).
  8. system metrics (MLflow's CPU/memory sampler on train's run): the tracked fit with them on
     vs off, at 20x the default sampling rate, beside the spread of two runs with them off.
  9. training in 2 processes (train.processes, torchrun) vs 1: samples/s on a wide MLP.
Stages run in a `git clone` of this repository's HEAD, so commit before benchmarking.
`--device cuda --only overhead optimizer` measures those two parts on a GPU (the CUDA figures).
`--smoke` runs every part once at its smallest size: a check that each still runs (its figures
mean nothing; tests/test_bench.py and tests/test_bench_repro.py run it, half each).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch
import yaml
from torch import nn

from torchtrack.config import Config, TrackingConfig, TrainConfig, load_config
from torchtrack.cpu_kernels import NATIVE_ENV, PINNED
from torchtrack.data import Rows, Scaler, load_source, make_synthetic
from torchtrack.models import build_model
from torchtrack.paths import PREPARED_DIR, TRAIN_METRICS, split_file
from torchtrack.profiling import PROFILE_ENV
from torchtrack.tabular import TabularDataset
from torchtrack.tracking.client import stop_daemons
from torchtrack.training import STEP_LOSS, fit, make_optimizer, seed_everything, set_threads

ROOT = Path(__file__).resolve().parents[1]
PLAIN = ROOT / "benchmarks" / "plain_pipeline.py"
PLAIN_PREPARE = ROOT / "benchmarks" / "plain_prepare.py"
STAGES = ("prepare", "train", "evaluate")
BIN = Path(sys.executable).parent
GIB = 1024**3


def rss_target(rows: int) -> float:
    """The most bytes of resident memory a stage may peak at on `rows` rows: 1 GiB up to a
    million, 1.5 GiB up to ten million, 2 GiB beyond (a hundred million x 16 is a 13 GB CSV)."""
    return GIB if rows <= 1_000_000 else 1.5 * GIB if rows <= 10_000_000 else 2 * GIB


SCALE_CSV = "scale-input.csv"  # the scale part's rows as a CSV, beside its clone
# A torchtrack command in a process of its own, then its peak resident memory: Linux's VmHWM, the
# high-water mark of this program's pages. Not getrusage's ru_maxrss, which keeps the benchmark's
# own peak through the vfork and exec that start the child (a stage measured after the benchmark
# held a table read 2.7 GB, the benchmark's size): macOS has no VmHWM, and no such inheritance.
RSS_PROBE = (
    "import resource, sys\n"
    "from torchtrack.cli import main\n"
    "code = main(sys.argv[1:])\n"
    "try:\n"
    "    kib = next(int(line.split()[1]) for line in open('/proc/self/status') if line.startswith('VmHWM'))\n"
    "except OSError:\n"
    "    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024  # bytes on macOS\n"
    "print('PEAK_RSS_KIB', kib, file=sys.stderr)\n"
    "sys.exit(code)\n"
)


@dataclass(frozen=True)
class Sizes:
    """How much each part measures: `make bench`'s sizes, or `--smoke`'s smallest (`SMOKE`)."""

    rows: int = 100_000  # training rows of the overhead, system, optimizer, data and kernels parts
    epochs: tuple[tuple[int, int], ...] = ((64, 3), (1024, 50))  # overhead: (batch, epochs) pairs
    optimizer_steps: int = 2000
    kernel_repeats: int = 3  # epochs timed per kernels process
    kernel_models: tuple[str, ...] = ("linear", "mlp")  # the default model; the default MLP's bigger matmuls
    repo_params: dict | None = None  # params.yaml overrides of the cloned repo (pipeline, fixed)
    noop_repeats: int = 3
    help_repeats: int = 5
    distributed_rows: int = 50_000
    distributed_width: int = 1024
    distributed_rounds: int = 2
    train_rounds: int = 2  # the train stage's runs, and the bare loop's, in the scale part's speed row
    warm_ups: bool = True  # runs that only steady the timings
    # --smoke: the parts that run stages share one clone (each sets the params it needs), the
    # tracked loops one store and its daemon, and the cold round the warm round's plain run.
    # What each part runs is unchanged; only its figures lose their meaning.
    shared: bool = False

    def store(self, folder: Path, name: str) -> Path:
        """Where a tracked loop named `name` keeps its MLflow store and TensorBoard files."""
        return folder.parent / "store" if self.shared else folder / name


SMOKE = Sizes(
    rows=4_000,  # 62 steps at batch 64: past log_every_n_steps, so step metrics reach the store
    epochs=((64, 1),),
    optimizer_steps=20,
    kernel_repeats=1,
    kernel_models=("linear",),
    repo_params={"data": {"n_samples": 2_000}, "train": {"max_steps": 20}},
    noop_repeats=1,
    help_repeats=1,
    distributed_rows=2_000,
    distributed_width=16,
    distributed_rounds=1,
    train_rounds=1,
    warm_ups=False,
    shared=True,
)


def dataset(rows: int, features: int, seed: int = 0) -> TabularDataset:
    """Scaled synthetic rows as the train stage would see them."""
    frame, _ = make_synthetic(rows, features, 0.3, seed)
    return TabularDataset(Scaler.fit(frame, "y").transform(frame))


def bare_loop(
    train: TabularDataset, val: TabularDataset, config: Config, epochs: int, device: torch.device
) -> float:
    """Seconds for a loop with no DataLoader and no logging: randperm indices, tensor slicing,
    and, like `fit`, the validation loss once per epoch. On a GPU the data lives there."""
    seed_everything(config.seed)
    model = build_model(config.model, train.X.shape[1]).to(device)
    optimizer = make_optimizer(model.parameters(), config.train)
    loss_fn = nn.MSELoss()
    X, y, val_X, val_y = (t.to(device) for t in (train.X, train.y, val.X, val.y))
    synchronize(device)
    start = time.perf_counter()
    for _ in range(epochs):
        order = torch.randperm(len(X), device=device)
        for i in range(0, len(X), config.train.batch_size):
            rows = order[i : i + config.train.batch_size]
            loss = loss_fn(model(X[rows]), y[rows])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        with torch.no_grad():
            loss_fn(model(val_X), val_y).item()
    synchronize(device)
    return time.perf_counter() - start


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work, so that a clock read after it counts all of it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def untracked_loop(
    train: TabularDataset, val: TabularDataset, config: Config, epochs: int, device: torch.device
) -> float:
    """Seconds for the project's `fit` with no tracker: what tracking itself costs is the
    difference to `tracked_loop`."""
    generator = seed_everything(config.seed)
    model = build_model(config.model, train.X.shape[1])
    synchronize(device)
    start = time.perf_counter()
    fit(model, train, val, replace(config.train, epochs=epochs), generator=generator, device=device)
    synchronize(device)
    return time.perf_counter() - start


def tracked_loop(
    train: TabularDataset,
    val: TabularDataset,
    config: Config,
    epochs: int,
    folder: Path,
    device: torch.device,
    system_metrics: bool = False,
) -> tuple[float, int]:
    """Seconds for the project's `fit` logging to a real Tracker as the train stage does, and the
    number of step metrics that reached MLflow."""
    from mlflow import MlflowClient

    from torchtrack.tracking.tracker import Tracker

    uri = f"sqlite:///{folder / 'mlflow.db'}"
    os.environ["MLFLOW_TRACKING_URI"] = uri
    tracking = TrackingConfig(tensorboard_dir=str(folder / "runs"))  # default intervals
    generator = seed_everything(config.seed)
    model = build_model(config.model, train.X.shape[1])
    train_config = replace(config.train, epochs=epochs)
    with Tracker(
        tracking, "train", params=config.flat(), model_run="new", system_metrics=system_metrics
    ) as tracker:
        synchronize(device)
        start = time.perf_counter()
        fit(
            model,
            train,
            val,
            train_config,
            generator=generator,
            device=device,
            loggers=(tracker,),
            log_every=tracking.log_every_n_steps,
        )
        tracker.flush()  # the buffered step metrics are part of the cost
        synchronize(device)
        seconds = time.perf_counter() - start
    del os.environ["MLFLOW_TRACKING_URI"]
    steps = len(MlflowClient(uri).get_metric_history(tracker.run_id, STEP_LOSS))
    return seconds, steps


def tracking_overhead(folder: Path, rounds: int, device: torch.device, sizes: Sizes) -> list[dict]:
    """Target 1: tracked samples/s >= 0.9x bare, at batch 64 and 1024 on 100,000 x 8."""
    set_threads(Config().train.num_threads)
    train, val = dataset(sizes.rows, 8), dataset(sizes.rows * 3 // 20, 8, seed=1)
    results = []
    for batch_size, epochs in sizes.epochs:  # one to two seconds per timing
        config = Config(train=TrainConfig(batch_size=batch_size))
        bare, untracked, tracked, steps = [], [], [], 0
        if sizes.warm_ups:  # lazy initialisation happens outside the timings
            bare_loop(train, val, config, 1, device)
            tracked_loop(train, val, config, 1, sizes.store(folder, f"bs{batch_size}-warm-up"), device)
        # Back to back in each round, ratio per round, median over rounds: this VM's speed
        # drifts by tens of percent from second to second, a pair of neighbours much less.
        for round_ in range(rounds):
            bare.append(bare_loop(train, val, config, epochs, device))
            untracked.append(untracked_loop(train, val, config, epochs, device))
            seconds, steps = tracked_loop(
                train, val, config, epochs, sizes.store(folder, f"bs{batch_size}-{round_}"), device
            )
            tracked.append(seconds)
        samples = len(train) * epochs
        results.append(
            {
                "device": str(device),
                "batch_size": batch_size,
                "epochs": epochs,
                "rounds": rounds,
                "bare_samples_per_s": samples / statistics.median(bare),
                "tracked_samples_per_s": samples / statistics.median(tracked),
                "ratio": statistics.median(b / t for b, t in zip(bare, tracked, strict=True)),
                "ratio_range": [f(b / t for b, t in zip(bare, tracked, strict=True)) for f in (min, max)],
                "ratio_best_of_each": min(bare) / min(tracked),
                "untracked_samples_per_s": samples / statistics.median(untracked),
                # tracking's own cost: tracked vs the same `fit` without a tracker, per round
                "tracked_over_untracked": statistics.median(
                    u / t for u, t in zip(untracked, tracked, strict=True)
                ),
                "step_metrics_recorded": steps,
            }
        )
    return results


def system_metrics_cost(folder: Path, rounds: int, device: torch.device, sizes: Sizes) -> dict:
    """Target 7: the tracked fit with system metrics on is as fast as with them off, within the
    spread of two runs with them off; sampled every 0.5 s (the default is every 10 s)."""
    from torchtrack.tracking.tracker import SYSTEM_METRICS_EVERY_S

    set_threads(Config().train.num_threads)
    train, val = dataset(sizes.rows, 8), dataset(sizes.rows * 3 // 20, 8, seed=1)
    config, epochs, interval = Config(train=TrainConfig(batch_size=64)), sizes.epochs[0][1], 0.5
    os.environ["MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL"] = str(interval)
    try:
        if sizes.warm_ups:
            tracked_loop(train, val, config, 1, sizes.store(folder, "warm-up"), device, system_metrics=True)

        def loop(name: str, system_metrics: bool = False) -> float:
            store = sizes.store(folder, name)
            return tracked_loop(train, val, config, epochs, store, device, system_metrics)[0]

        on, off, off_again = [], [], []
        for round_ in range(rounds):  # neighbours in time, as in tracking_overhead
            off.append(loop(f"off-{round_}"))
            on.append(loop(f"on-{round_}", system_metrics=True))
            off_again.append(loop(f"again-{round_}"))
    finally:
        del os.environ["MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL"]
    noise = [a / b for a, b in zip(off, off_again, strict=True)]
    return {
        "device": str(device),
        "rounds": rounds,
        "sampling_interval_s": interval,
        "default_interval_s": SYSTEM_METRICS_EVERY_S,
        "off_s": statistics.median(off),
        "on_s": statistics.median(on),
        "ratio": statistics.median(a / b for a, b in zip(off, on, strict=True)),  # off/on: 1 = no cost
        "noise_range": [min(noise), max(noise)],
    }


def optimizer_steps(rounds: int, device: torch.device, sizes: Sizes) -> list[dict]:
    """Why Adam and AdamW run fused: microseconds per training step with each optimizer,
    PyTorch's default implementation vs fused, in the bare loop at batch 64."""
    set_threads(Config().train.num_threads)
    train = dataset(sizes.rows, 8)
    X, y = train.X.to(device), train.y.to(device)
    full_batches_rows = len(X) - len(X) % 64  # every step takes 64 rows
    model_config = Config().model
    steps = sizes.optimizer_steps

    def per_step(name: str, fused: bool | None) -> float:
        seed_everything(0)
        model = build_model(model_config, X.shape[1]).to(device)
        kind = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[name]
        optimizer = kind(model.parameters(), lr=0.01, fused=fused)
        loss_fn = nn.MSELoss()
        order = torch.randperm(len(X), device=device)
        synchronize(device)
        start = time.perf_counter()
        for i in range(steps):
            first = (i * 64) % full_batches_rows
            rows = order[first : first + 64]
            loss = loss_fn(model(X[rows]), y[rows])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        synchronize(device)
        return (time.perf_counter() - start) / steps * 1e6

    results = []
    for name in ("sgd", "adam", "adamw"):
        per_step(name, None), per_step(name, True)  # warm-up
        default, fused = [], []
        for _ in range(rounds):  # interleaved, as the overhead rounds are
            default.append(per_step(name, None))
            fused.append(per_step(name, True))
        results.append(
            {
                "device": str(device),
                "optimizer": name,
                "project_uses_fused": bool(
                    make_optimizer(
                        [nn.Parameter(torch.zeros(1))], replace(Config().train, optimizer=name)
                    ).defaults.get("fused")
                ),
                "default_us_per_step": statistics.median(default),
                "fused_us_per_step": statistics.median(fused),
            }
        )
    return results


def data_path(sizes: Sizes) -> dict:
    """Target 2: batches/s of the project's loader vs the per-row DataLoader default."""
    from torch.utils.data import DataLoader

    from torchtrack.loader import make_loader

    train = dataset(sizes.rows, 8)

    def batches_per_s(loader) -> float:
        start = time.perf_counter()
        count = sum(1 for _ in loader)
        return count / (time.perf_counter() - start)

    fast = batches_per_s(make_loader(train, 64, True, torch.Generator().manual_seed(0)))
    slow = batches_per_s(DataLoader(train, batch_size=64, shuffle=True))
    return {
        "batch_size": 64,
        "project_batches_per_s": fast,
        "per_row_batches_per_s": slow,
        "speedup": fast / slow,
    }


# Run in a fresh process per measurement: the kernel choice is made once, at start-up.
KERNELS_PROBE = (
    "import sys\n"
    "import torchtrack\n"
    "sys.path.insert(0, sys.argv[1])\n"
    "import torch\n"
    "from bench import kernel_probe\n"
    "seconds = kernel_probe(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))\n"
    "print('SECONDS', torch.backends.cpu.get_cpu_capability(), *seconds)\n"
)


def kernel_probe(kind: str, repeats: int, rows: int) -> list[float]:
    """Seconds per epoch of the project's `fit` on `rows` x 8 with the default params and model
    `kind`, `repeats` times after a warm-up: what a KERNELS_PROBE process reports."""
    config = Config()
    config = replace(config, model=replace(config.model, kind=kind))
    set_threads(config.train.num_threads)
    train, val = dataset(rows, 8), dataset(rows * 3 // 20, 8, seed=1)
    untracked_loop(train, val, config, 1, torch.device("cpu"))
    return [untracked_loop(train, val, config, 1, torch.device("cpu")) for _ in range(repeats)]


def pinned_kernels(rounds: int, sizes: Sizes) -> list[dict]:
    """The cost of bitwise-portable numbers: training samples/s with the pinned CPU kernels vs
    the CPU's own, one process each, back to back in each round (ratio per round, median)."""
    results = []
    for kind in sizes.kernel_models:
        pinned, native, capabilities = [], [], {}
        for _ in range(rounds):
            for label, runs, native_flag in (("pinned", pinned, "0"), ("native", native, "1")):
                # Without this process's own pins, which a child would inherit.
                env = {k: v for k, v in os.environ.items() if k not in PINNED} | {NATIVE_ENV: native_flag}
                _, result = timed_run(
                    [sys.executable, "-c", KERNELS_PROBE, str(ROOT / "benchmarks"), kind]
                    + [str(sizes.kernel_repeats), str(sizes.rows)],
                    ROOT,
                    env,
                )
                line = next(line for line in result.stdout.splitlines() if line.startswith("SECONDS"))
                capabilities[label], *seconds = line.split()[1:]
                runs.append(statistics.median(float(s) for s in seconds))
        results.append(
            {
                "model": kind,
                "rounds": rounds,
                "capability": capabilities,
                "pinned_samples_per_s": sizes.rows / statistics.median(pinned),
                "native_samples_per_s": sizes.rows / statistics.median(native),
                "ratio": statistics.median(n / p for n, p in zip(native, pinned, strict=True)),
            }
        )
    return results


def update_params(repo: Path, params: dict) -> None:
    """Change some keys of `repo`'s params.yaml, section by section."""
    path = repo / "params.yaml"
    values = yaml.safe_load(path.read_text())
    for section, changes in params.items():
        values[section].update(changes)
    path.write_text(yaml.safe_dump(values, sort_keys=False))


def stage_env(repo: Path, profile: Path | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "DVC_ROOT")}
    env.update(PATH=f"{BIN}{os.pathsep}{env['PATH']}", PYTHONPATH=str(repo / "src"))
    if profile:
        env["TORCHTRACK_PROFILE"] = str(profile)
    return env


def timed_run(
    command: list[str], cwd: Path, env: dict[str, str]
) -> tuple[float, subprocess.CompletedProcess]:
    start = time.perf_counter()
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}")
    return seconds, result


def pipeline(folder: Path, repo: Path, sizes: Sizes) -> dict:
    """Targets 4 and 5: the default `dvc repro` split into phases; no-op repro; --help."""
    folder.mkdir(parents=True, exist_ok=True)
    profile = folder / "profile.jsonl"
    wall, _ = timed_run([str(BIN / "dvc"), "repro"], repo, stage_env(repo, profile))
    records = [json.loads(line) for line in profile.read_text().splitlines()]
    phases: dict[str, float] = {}
    for record in records:
        for name, seconds in record["phases"].items():
            phases[name] = phases.get(name, 0.0) + seconds
    in_process = sum(r["wall"] for r in records)
    phases["other (in stage processes)"] = in_process - sum(phases.values())
    phases["dvc, interpreter start-up and exit"] = wall - in_process
    noop = [
        timed_run([str(BIN / "dvc"), "repro"], repo, stage_env(repo))[0] for _ in range(sizes.noop_repeats)
    ]
    helps = [
        timed_run([str(BIN / "torchtrack"), "--help"], repo, stage_env(repo))[0]
        for _ in range(sizes.help_repeats)
    ]
    return {
        "repro_wall_s": wall,
        "phases_s": phases,
        "stages_s": {r["stage"]: r["wall"] for r in records},
        "noop_repro_s": statistics.median(noop),
        "help_s": statistics.median(helps),
    }


def measured(command: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float]:
    """Wall and CPU seconds of `command`; CPU counts every descendant it waited for (dvc's stages)."""
    start = time.perf_counter()
    process = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{output.decode(errors='replace')}")
    return seconds, usage.ru_utime + usage.ru_stime


def plain_settings(repo: Path) -> dict:
    """The plain pipeline's sizes: the clone's params.yaml, read by torchtrack's config, and the
    epochs and batch that its train stage ran (metrics/train.json: the step budget's plan, fewer
    epochs where training stopped early)."""
    config = load_config(repo / "params.yaml")
    ran = json.loads((repo / "metrics" / "train.json").read_text())
    data, train = config.data, config.train
    return {
        "rows": data.n_samples,
        "features": data.n_features,
        "noise": data.noise_std,
        "seed": config.seed,
        "val_fraction": data.val_fraction,
        "test_fraction": data.test_fraction,
        "epochs": ran["epochs"],
        "batch_size": ran["batch_size"],  # the step budget's batch: at most a tenth of the train rows
        "lr": train.lr,
        "cosine": train.lr_schedule == "cosine",
        "learnable": config.model.activation == "learnable_tanh_plus_x",
    }


def plain_pipeline(folder: Path, cwd: Path, env: dict[str, str], settings: dict) -> tuple[float, float]:
    """Wall and CPU seconds of the plain pipeline: its three steps as three processes, in turn."""
    wall = cpu = 0.0
    for step in STAGES:
        seconds, used = measured(
            [sys.executable, str(PLAIN), step, str(folder), json.dumps(settings)], cwd, env
        )
        wall, cpu = wall + seconds, cpu + used
    return wall, cpu


def daemon_cpu(repo: Path) -> float:
    """CPU seconds so far of the clone's store daemon (tracking/backend/daemon.py), if one runs:
    it works for the stages but is no child of theirs, so `measured` does not count it."""
    import psutil

    store = f"sqlite:///{repo / 'mlflow.db'}"
    total = 0.0
    for process in psutil.process_iter(["cmdline", "cpu_times"]):
        cmdline = process.info["cmdline"] or []
        if "torchtrack.tracking.backend.daemon" in cmdline and store in cmdline and process.info["cpu_times"]:
            total += process.info["cpu_times"].user + process.info["cpu_times"].system
    return total


def with_daemon(command: list[str], repo: Path, env: dict[str, str]) -> tuple[float, float, float]:
    """`measured(command)`, its CPU seconds including the store daemon's; and the daemon's alone."""
    before = daemon_cpu(repo)
    wall, cpu = measured(command, repo, env)
    daemon = max(daemon_cpu(repo) - before, 0.0)  # a daemon that exited meanwhile counts nothing
    return wall, cpu + daemon, daemon


def stage_phases(repo: Path, env: dict[str, str], profile: Path) -> dict[str, dict[str, float]]:
    """Each stage run alone as `python -m torchtrack STAGE`: CPU seconds per phase, from
    interpreter start (up to the CLI's main) to exit (after the stage's last line)."""
    breakdown = {}
    for stage in STAGES:
        profile.unlink(missing_ok=True)
        wall, cpu, daemon = with_daemon(
            [sys.executable, "-m", "torchtrack", stage], repo, env | {PROFILE_ENV: str(profile)}
        )
        (record,) = [json.loads(line) for line in profile.read_text().splitlines()]
        phases = {"interpreter start": record["cpu_before_main"], **record["cpu_phases"]}
        phases["other"] = record["cpu"] - sum(phases.values())
        phases["exit"] = cpu - daemon - record["cpu"]
        phases["store daemon"] = daemon
        breakdown[stage] = {"wall_s": wall, "cpu_s": cpu, "cpu_phases_s": phases}
    return breakdown


def fixed_cost(folder: Path, repo: Path, rounds: int, cold_rounds: int, sizes: Sizes) -> dict:
    """Target 6: `dvc repro -f` at most 1.5x the plain pipeline, wall time, median of per-round
    ratios; each round runs the plain pipeline, `dvc repro -f`, and the stages one by one. The
    store daemon started by the warm-up serves the rounds, as it serves a user's run of
    experiments. Then `cold_rounds` rounds of the plain pipeline and a `dvc repro -f` with no
    daemon running (stopped first), as every first run after IDLE_EXIT_S: the same target.
    Under `Sizes.shared` the cold round is paired with the warm round's plain run."""
    folder.mkdir(parents=True, exist_ok=True)
    env, plain = stage_env(repo), folder / "plain"
    # Warm-up: compiled bytecode, page cache, the store; a no-op where the pipeline part ran it.
    measured([str(BIN / "dvc"), "repro"], repo, env)
    settings = plain_settings(repo)
    if sizes.warm_ups:
        plain_pipeline(plain, repo, env, settings)
    repro_runs, plain_runs, stage_runs = [], [], []
    for _ in range(rounds):
        plain_runs.append(plain_pipeline(plain, repo, env, settings))
        repro_runs.append(with_daemon([str(BIN / "dvc"), "repro", "-f"], repo, env)[:2])
        stage_runs.append(stage_phases(repo, env, folder / "profile.jsonl"))
    cold_runs, cold_plain_runs = [], []
    for round_ in range(cold_rounds):
        if sizes.shared:
            cold_plain_runs.append(plain_runs[round_ % rounds][0])
        else:
            cold_plain_runs.append(plain_pipeline(plain, repo, env, settings)[0])
        stop_daemons(repo)
        cold_runs.append(measured([str(BIN / "dvc"), "repro", "-f"], repo, env)[0])
    ratios = [r[0] / p[0] for r, p in zip(repro_runs, plain_runs, strict=True)]
    cold_ratios = [r / p for r, p in zip(cold_runs, cold_plain_runs, strict=True)]
    medians = {}
    for stage in STAGES:
        names = dict.fromkeys(name for run in stage_runs for name in run[stage]["cpu_phases_s"])
        medians[stage] = {
            "wall_s": statistics.median(run[stage]["wall_s"] for run in stage_runs),
            "cpu_s": statistics.median(run[stage]["cpu_s"] for run in stage_runs),
            "cpu_phases_s": {
                name: statistics.median(run[stage]["cpu_phases_s"].get(name, 0.0) for run in stage_runs)
                for name in names
            },
        }
    return {
        "rounds": rounds,
        "repro_wall_s": statistics.median(r[0] for r in repro_runs),
        "plain_wall_s": statistics.median(p[0] for p in plain_runs),
        "ratio": statistics.median(ratios),
        "ratio_range": [min(ratios), max(ratios)],
        "cold_rounds": cold_rounds,
        "cold_repro_wall_s": statistics.median(cold_runs),
        "cold_plain_wall_s": statistics.median(cold_plain_runs),
        "cold_ratio": statistics.median(cold_ratios),
        "cold_ratio_range": [min(cold_ratios), max(cold_ratios)],
        "repro_cpu_s": statistics.median(r[1] for r in repro_runs),
        "plain_cpu_s": statistics.median(p[1] for p in plain_runs),
        "cpu_ratio": statistics.median(r[1] / p[1] for r, p in zip(repro_runs, plain_runs, strict=True)),
        "stages": medians,
    }


def scale(repo: Path, rows: int, features: int, csv: bool = True, rounds: int = 2) -> dict:
    """Target 3: peak resident memory of each stage on `rows` x `features` synthetic rows; then,
    side by side, train's samples/s vs a bare loop over the splits it read (the best of `rounds`
    each, `train_vs_bare`), and (unless not
    `csv`) prepare on a CSV of the same rows vs a plain pyarrow script (benchmarks/plain_prepare.py),
    and `torchtrack predict` of that CSV with the model train made."""
    update_params(
        repo,
        {"data": {"n_samples": rows, "n_features": features}, "train": {"epochs": 2, "batch_size": 1024}},
    )
    peaks, seconds = {}, {}
    for stage in STAGES:
        seconds[stage], peaks[stage] = stage_peak(repo, stage)
    results = {
        "rows": rows,
        "features": features,
        "peak_rss_bytes": peaks,
        "wall_s": seconds,
        "split_bytes": sum(p.stat().st_size for p in (repo / PREPARED_DIR).glob("*.parquet")),
        "train_vs_bare": train_vs_bare(repo, rounds),
    }
    if csv:
        results["prepare_vs_plain"] = prepare_vs_plain(repo)
        if (predicted := predict_peak(repo)) is not None:
            results["predict"] = predicted
    return results


def stage_peak(repo: Path, *command: str) -> tuple[float, int]:
    """Wall seconds of one stage (or another torchtrack `command`) run in its own process, and its
    peak resident bytes."""
    wall, result = timed_run([sys.executable, "-c", RSS_PROBE, *command], repo, stage_env(repo))
    kib = next(int(line.split()[1]) for line in result.stderr.splitlines() if line.startswith("PEAK_RSS_KIB"))
    return wall, kib * 1024


def train_vs_bare(repo: Path, rounds: int) -> dict:
    """The train stage's samples/s over its epochs (its own `samples_per_second` metric: `fit`'s
    wall time, no imports; a split larger than the shuffle buffer is read inside it, a window at
    a time, where a held one is read before), vs a bare loop (`bare_loop`) over the same Parquet
    splits, read with pyarrow, with the same model, optimizer, batch and epochs, timed over its
    epochs. The stage's run for its peak (`scale`) is the first round; the two alternate for
    `rounds` rounds and the best of each counts, as in `distributed_speedup`, so that a burst of
    load from elsewhere does not land on one side only."""
    import pyarrow.parquet as pq

    config = load_config(repo / "params.yaml")
    trained = json.loads((repo / TRAIN_METRICS).read_text())
    epochs, batch_size = int(trained["epochs"]), int(trained["batch_size"])
    train, val = (
        TabularDataset(pq.read_table(split_file(repo / PREPARED_DIR, name)).to_pandas())
        for name in ("train", "val")
    )
    set_threads(config.train.num_threads)
    config = replace(config, train=replace(config.train, batch_size=batch_size))
    stage = bare = 0.0
    for round_ in range(rounds):
        if round_:
            timed_run([sys.executable, "-m", "torchtrack", "train"], repo, stage_env(repo))
        stage = max(stage, stage_samples_per_s(repo))
        bare = max(bare, len(train) * epochs / bare_loop(train, val, config, epochs, torch.device("cpu")))
    return {
        "epochs": epochs,
        "batch_size": batch_size,
        "rounds": rounds,
        "stage_samples_per_s": stage,
        "bare_samples_per_s": bare,
        "ratio": bare / stage,
    }


def prepare_vs_plain(repo: Path) -> dict:
    """prepare on a CSV file of the rows it just made (data.source: csv), vs
    benchmarks/plain_prepare.py on the same file: the wall time of each process, start to exit.
    The plain script holds the table twice (pyarrow's, then NumPy's columns): where that is more
    than the memory free, it is not run (`plain_needs_bytes`, `free_bytes`). The clone's data
    section is put back as it was."""
    import psutil

    config = load_config(repo / "params.yaml")
    csv, plain_out = repo.parent / SCALE_CSV, repo.parent / "plain-prepared"
    with tempfile.TemporaryDirectory(dir=repo.parent) as scratch:  # the rows the synthetic prepare split
        rows, _, _ = load_source(config.data, config.seed, Path(scratch))
        write_csv(rows, csv)
    update_params(repo, {"data": {"source": "csv", "path": str(csv)}})
    shutil.rmtree(repo / PREPARED_DIR)  # replaced: not on disk beside the new ones (7 GB at 1e8 rows)
    try:
        stage, peak = stage_peak(repo, "prepare")
    finally:
        update_params(repo, {"data": {"source": config.data.source, "path": config.data.path}})
    measured = {"csv_bytes": csv.stat().st_size, "stage_wall_s": stage, "stage_peak_rss_bytes": peak}
    needs = 2 * config.data.n_samples * (config.data.n_features + 1) * 8  # float64 values, twice
    free = psutil.virtual_memory().available
    if needs > free:
        return measured | {"plain_wall_s": None, "plain_needs_bytes": needs, "free_bytes": free}
    settings = {
        "seed": config.seed,
        "val_fraction": config.data.val_fraction,
        "test_fraction": config.data.test_fraction,
    }
    plain, _ = timed_run(
        [sys.executable, str(PLAIN_PREPARE), str(csv), str(plain_out), json.dumps(settings)],
        repo,
        stage_env(repo),
    )
    return measured | {"plain_wall_s": plain, "ratio": stage / plain}


def write_csv(rows: Rows, path: Path, piece: int = 1 << 20) -> None:
    """`rows` (a DataFrame, or `data.StoredRows` kept on disk) as a CSV file, with pyarrow's writer,
    `piece` rows at a time: the text a whole write gives, with a piece of the rows in memory."""
    import pyarrow as pa
    import pyarrow.csv

    writer = None
    try:
        for start in range(0, len(rows), piece):
            part = rows.iloc[start : start + piece]
            table = pa.table({name: pa.array(part[name].to_numpy()) for name in rows.columns})
            writer = writer or pyarrow.csv.CSVWriter(str(path), table.schema)
            writer.write_table(table)
    finally:
        if writer is not None:
            writer.close()


def predict_peak(repo: Path) -> dict | None:
    """`torchtrack predict` of prepare_vs_plain's CSV (raw rows, the target among them) with the
    clone's trained model, to a CSV: wall seconds, start to exit, and peak resident bytes. None,
    said on stderr, where the disk has no room for the output, which keeps every input cell (as
    large as the input: a hundred million rows ran out of 68 GB after an hour)."""
    csv, out = repo.parent / SCALE_CSV, repo.parent / "predictions.csv"
    free, needs = shutil.disk_usage(out.parent).free, int(1.2 * csv.stat().st_size)
    if free < needs:
        room = f"its output needs about {needs / 2**30:.0f} GiB, {free / 2**30:.0f} GiB free"
        print(f"predict not measured: {room}", file=sys.stderr)
        return None
    wall, peak = stage_peak(repo, "predict", "--input", str(csv), "--output", str(out))
    rows = sum(1 for _ in out.open("rb")) - 1
    out.unlink()
    return {"rows": rows, "input_bytes": csv.stat().st_size, "wall_s": wall, "peak_rss_bytes": peak}


def stage_samples_per_s(repo: Path) -> float:
    """The newest train run's samples/s: its ranks' `samples_per_second_rank*` metrics, summed."""
    return sum(v for k, v in last_train_metrics(repo).items() if k.startswith("samples_per_second_rank"))


def last_train_metrics(repo: Path) -> dict[str, float]:
    """The metrics of the newest train run in the clone's MLflow store."""
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{repo / 'mlflow.db'}")
    experiment_id = client.get_experiment_by_name("torchtrack").experiment_id
    run = client.search_runs(
        [experiment_id], "tags.`dvc.stage` = 'train'", order_by=["attributes.start_time DESC"]
    )[0]
    return run.data.metrics


def distributed_speedup(repo: Path, sizes: Sizes) -> dict:
    """Target 8: the train stage's samples/s at 1 and 2 processes (torchrun, gloo, one thread
    each), on an MLP wide enough that the gradient all-reduce is not the whole step; the sum of
    the ranks' `samples_per_second_rank*` metrics, read back from the clone's MLflow store.
    The two alternate for `rounds` rounds and the best of each counts, so that a burst of
    load from elsewhere does not land on one side only."""
    rows, width, rounds = sizes.distributed_rows, sizes.distributed_width, sizes.distributed_rounds
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["data"].update(n_samples=rows)
    params["model"].update(kind="mlp", hidden_sizes=[width, width], activation="relu")
    params["train"].update(epochs=2, batch_size=1024)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    timed_run([sys.executable, "-m", "torchtrack", "prepare"], repo, stage_env(repo))
    rates: dict[int, float] = {1: 0.0, 2: 0.0}
    for processes in [1, 2] * rounds:
        params["train"]["processes"] = processes
        (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        timed_run([sys.executable, "-m", "torchtrack", "train"], repo, stage_env(repo))
        rate = stage_samples_per_s(repo)
        rates[processes] = max(rates[processes], rate)
    return {
        "rows": rows,
        "hidden_sizes": [width, width],
        "samples_per_s": {str(n): rate for n, rate in rates.items()},
        "speedup": rates[2] / rates[1],
    }


def table(results: dict) -> str:
    """The targets measured, each with its figure, the ratio to target, and pass / falls short."""
    rows = []

    def add(target: str, figure: str, ratio: float, ok: bool | str) -> None:
        result = ok if isinstance(ok, str) else "pass" if ok else "falls short"
        rows.append((target, figure, f"{ratio:.2f}", result))

    for r in results.get("tracking_overhead", []):
        add(
            f"tracked >= 0.9x bare loop, batch {r['batch_size']}, {r['device']}",
            f"{r['tracked_samples_per_s']:,.0f} vs {r['bare_samples_per_s']:,.0f} samples/s "
            f"(rounds {r['ratio_range'][0]:.2f}-{r['ratio_range'][1]:.2f}"
            + (
                f"; {r['tracked_over_untracked']:.2f}x untracked fit)"
                if "tracked_over_untracked" in r
                else ")"
            ),
            r["ratio"],
            r["ratio"] >= 0.9,
        )
    for o in results.get("optimizer_steps", []):  # a design choice, not a target
        speedup = o["default_us_per_step"] / o["fused_us_per_step"]
        chosen = "fused" if o["project_uses_fused"] else "default"
        add(
            f"fused vs default {o['optimizer']} step, batch 64, {o['device']}",
            f"{o['fused_us_per_step']:.0f} vs {o['default_us_per_step']:.0f} us per step",
            speedup,
            f"uses {chosen}" + ("" if o["project_uses_fused"] == (speedup > 1) else " (the slower here)"),
        )
    if m := results.get("system_metrics"):
        add(
            f"system metrics cost below the noise, sampled every {m['sampling_interval_s']} s",
            f"{m['on_s']:.2f} vs {m['off_s']:.2f} s with them off (off vs off "
            f"{m['noise_range'][0]:.2f}-{m['noise_range'][1]:.2f})",
            m["ratio"],
            m["ratio"] >= m["noise_range"][0],
        )
    if d := results.get("data_path"):
        add(
            "no Python call per row: batches from blocks",
            f"{d['project_batches_per_s']:,.0f} vs {d['per_row_batches_per_s']:,.0f} "
            "batches/s (per-row DataLoader)",
            d["speedup"],
            d["speedup"] > 1,
        )
    for k in results.get("pinned_kernels", []):  # the price of a promise, not a target
        add(
            f"pinned CPU kernels vs the CPU's own ({k['capability']['native']}), {k['model']} model",
            f"{k['pinned_samples_per_s']:,.0f} vs {k['native_samples_per_s']:,.0f} training samples/s",
            k["ratio"],
            f"costs {1 - k['ratio']:.0%}" if k["ratio"] < 1 else "costs nothing",
        )
    if s := results.get("scale"):
        target = rss_target(s["rows"])
        for stage, peak in s["peak_rss_bytes"].items():
            add(
                f"{stage}: {s['rows']:,} x {s['features']} at most {target / GIB:g} GiB",
                f"{peak / 2**20:,.0f} MiB peak RSS, {s['rows'] / s['wall_s'][stage]:,.0f} rows/s",
                peak / target,
                peak <= target,
            )
        if t := s.get("train_vs_bare"):  # absent from results made before it was measured
            add(
                "train samples/s within 1.2x of a bare loop over the same Parquet",
                f"{t['ratio']:.2f}x: {t['stage_samples_per_s']:,.0f} vs {t['bare_samples_per_s']:,.0f} "
                f"samples/s ({t['epochs']} epochs, batch {t['batch_size']}"
                + (f", best of {t['rounds']})" if "rounds" in t else ")"),
                t["ratio"] / 1.2,
                t["ratio"] <= 1.2,
            )
        if (c := s.get("prepare_vs_plain")) and c["plain_wall_s"] is not None:
            add(
                f"prepare from a CSV ({c['csv_bytes'] / 2**20:,.0f} MiB) <= 2x plain pyarrow script",
                f"{c['ratio']:.2f}x: {c['stage_wall_s']:.1f} vs {c['plain_wall_s']:.1f} s wall "
                f"({c['stage_peak_rss_bytes'] / 2**20:,.0f} MiB peak RSS)",
                c["ratio"] / 2,
                c["ratio"] <= 2,
            )
        elif c:  # too large for the plain script: prepare's memory is the target
            add(
                f"prepare from a CSV ({c['csv_bytes'] / 2**30:,.1f} GiB) at most {target / GIB:g} GiB",
                f"{c['stage_peak_rss_bytes'] / 2**20:,.0f} MiB peak RSS, "
                f"{s['rows'] / c['stage_wall_s']:,.0f} rows/s (no plain script: it would hold "
                f"{c['plain_needs_bytes'] / GIB:.0f} GiB, "
                f"{c['free_bytes'] / GIB:.0f} GiB free)",
                c["stage_peak_rss_bytes"] / target,
                c["stage_peak_rss_bytes"] <= target,
            )
        if p := s.get("predict"):
            add(
                f"predict: {p['rows']:,} rows of a CSV at most {rss_target(p['rows']) / GIB:g} GiB",
                f"{p['peak_rss_bytes'] / 2**20:,.0f} MiB peak RSS, {p['rows'] / p['wall_s']:,.0f} rows/s",
                p["peak_rss_bytes"] / rss_target(p["rows"]),
                p["peak_rss_bytes"] <= rss_target(p["rows"]),
            )
    if f := results.get("fixed_cost"):
        add(
            "dvc repro -f <= 1.5x plain three-process pipeline",
            f"{f['ratio']:.2f}x: {f['repro_wall_s']:.1f} vs {f['plain_wall_s']:.1f} s wall "
            f"(rounds {f['ratio_range'][0]:.2f}-{f['ratio_range'][1]:.2f}; CPU time {f['cpu_ratio']:.2f}x)",
            f["ratio"] / 1.5,
            f["ratio"] <= 1.5,
        )
        if "cold_ratio" in f:
            add(
                "cold dvc repro -f (no store daemon yet) <= 1.5x plain pipeline",
                f"{f['cold_ratio']:.2f}x: {f['cold_repro_wall_s']:.1f} vs {f['cold_plain_wall_s']:.1f} "
                f"s wall (rounds {f['cold_ratio_range'][0]:.2f}-{f['cold_ratio_range'][1]:.2f})",
                f["cold_ratio"] / 1.5,
                f["cold_ratio"] <= 1.5,
            )
    if d := results.get("distributed"):  # no target: the speed-up depends on free cores
        add(
            f"2 training processes vs 1 (torchrun), MLP {'x'.join(map(str, d['hidden_sizes']))}",
            f"{d['samples_per_s']['2']:,.0f} vs {d['samples_per_s']['1']:,.0f} samples/s",
            d["speedup"],
            f"speed-up on {results['machine']['cpus']} cores",
        )
    p = results.get("pipeline")
    if p:
        add(
            "no-op dvc repro under 1 s",
            f"{p['noop_repro_s']:.2f} s",
            p["noop_repro_s"] / 1,
            p["noop_repro_s"] < 1,
        )
        add("torchtrack --help under 0.1 s", f"{p['help_s']:.3f} s", p["help_s"] / 0.1, p["help_s"] < 0.1)
    header = ("target", "measured", "ratio", "result")
    widths = [max(len(row[i]) for row in [*rows, header]) for i in range(4)]
    lines = [
        "| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |",
        "|" + "|".join("-" * (w + 2) for w in widths) + "|",
    ]
    lines += ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |" for row in rows]
    if p:
        lines += ["", f"default `dvc repro`: {p['repro_wall_s']:.1f} s wall"]
        lines += [
            f"  {name:<30} {seconds:6.2f} s"
            for name, seconds in sorted(p["phases_s"].items(), key=lambda kv: -kv[1])
        ]
    if f:
        lines += ["", "CPU seconds per stage phase (stages run alone, median of rounds):"]
        for stage, figures in f["stages"].items():
            phases = sorted(figures["cpu_phases_s"].items(), key=lambda kv: -kv[1])
            lines += [f"  {stage} {figures['cpu_s']:.2f} s: " + ", ".join(f"{n} {s:.2f}" for n, s in phases)]
    return "\n".join(lines)


def machine(device: torch.device) -> dict:
    """What the figures were measured on."""
    facts = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
    }
    if device.type == "cuda":
        facts["gpu"] = torch.cuda.get_device_name(device)
    return facts


@dataclass
class Bench:
    """One run of the benchmark: its settings, and the folder its parts work in."""

    folder: Path
    device: torch.device
    sizes: Sizes
    rounds: int
    repro_rounds: int
    cold_rounds: int
    rows: int
    csv: bool = True
    shared_repo: Path | None = None

    def repo(self, part: str, params: dict | None = None) -> Path:
        """A `git clone` of HEAD for `part`, its params.yaml changed by `params` (section by
        section); under `Sizes.shared` the one clone the first part asked for."""
        repo = self.shared_repo or self.folder / part / "repo"
        if not repo.exists():
            subprocess.run(["git", "clone", "--quiet", str(ROOT), str(repo)], check=True)
        if self.sizes.shared:
            self.shared_repo = repo
        if params:
            update_params(repo, params)
        return repo


# Each part: its key in results.json, and how to measure it; in the order they run.
PARTS = {
    "overhead": (
        "tracking_overhead",
        lambda b: tracking_overhead(b.folder / "overhead", b.rounds, b.device, b.sizes),
    ),
    "system": (
        "system_metrics",
        lambda b: system_metrics_cost(b.folder / "system", b.rounds, b.device, b.sizes),
    ),
    "optimizer": ("optimizer_steps", lambda b: optimizer_steps(b.rounds, b.device, b.sizes)),
    "data": ("data_path", lambda b: data_path(b.sizes)),
    "pipeline": (
        "pipeline",
        lambda b: pipeline(b.folder / "pipeline", b.repo("pipeline", b.sizes.repo_params), b.sizes),
    ),
    "fixed": (
        "fixed_cost",
        lambda b: fixed_cost(
            b.folder / "fixed", b.repo("fixed", b.sizes.repo_params), b.repro_rounds, b.cold_rounds, b.sizes
        ),
    ),
    "scale": ("scale", lambda b: scale(b.repo("scale"), b.rows, 16, b.csv, b.sizes.train_rounds)),
    "kernels": ("pinned_kernels", lambda b: pinned_kernels(max(1, b.rounds // 3), b.sizes)),
    "distributed": ("distributed", lambda b: distributed_speedup(b.repo("distributed"), b.sizes)),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9, help="repetitions of the overhead comparison")
    parser.add_argument(
        "--repro-rounds", type=int, default=5, help="rounds of dvc repro -f vs the plain pipeline"
    )
    parser.add_argument(
        "--cold-rounds",
        type=int,
        default=3,
        help="rounds of dvc repro -f with no store daemon running vs the plain pipeline",
    )
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows for the scale target")
    parser.add_argument(
        "--no-csv",
        dest="csv",
        action="store_false",
        help="leave out the scale part's prepare from a CSV, and predict's: a hundred million rows "
        "are a 32 GB file, written beside the clone",
    )
    parser.add_argument(
        "--device",
        default="cpu",
        help="where the overhead and optimizer parts train: cpu (the targets' machine) or cuda",
    )
    parser.add_argument(
        "--only", nargs="+", choices=PARTS, default=list(PARTS), help="measure these parts (default: all)"
    )
    parser.add_argument("--output", default=str(ROOT / "benchmarks" / "results.json"))
    parser.add_argument(
        "--smoke", action="store_true", help="each part once at its smallest size: does it still run?"
    )
    args = parser.parse_args()
    device = torch.device(args.device)
    sizes = Sizes()
    if args.smoke:
        sizes, args.rounds, args.repro_rounds, args.cold_rounds, args.rows = SMOKE, 1, 1, 1, SMOKE.rows
    with tempfile.TemporaryDirectory() as tmp:
        bench = Bench(
            Path(tmp), device, sizes, args.rounds, args.repro_rounds, args.cold_rounds, args.rows, args.csv
        )
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        )
        command = " ".join(["python benchmarks/bench.py", *sys.argv[1:]])
        results: dict = {"machine": machine(device), "command": f"{command} (commit {head.stdout.strip()})"}
        for part, (key, measure) in PARTS.items():
            if part in args.only:
                start = time.perf_counter()
                results[key] = measure(bench)
                print(f"{part}: measured in {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
    Path(args.output).write_text(json.dumps(results, indent=2) + "\n")
    print(table(results))
    print(f"\nfigures written to {args.output}")


if __name__ == "__main__":
    main()
