"""train: fit the model on the train split, watch the val split, save a rebuildable checkpoint.

Run by `dvc repro` as `python -m torchtrack train`. Opens the MLflow model run that
evaluate later adds its test metrics to. Saves the training state after every epoch; with
`train.resume` a rerun after an interruption continues from it.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict
from pathlib import Path

import pandas as pd
import torch
from torch import nn

from torchtrack import activations, distributed, loader, losses, models, training, trial
from torchtrack.activations import learned_activation_values
from torchtrack.checkpoints import EpochCheckpoint, fingerprint
from torchtrack.config import METRICS_DIR, MODEL_DIR, PLOTS_DIR, PREPARED_DIR, Config
from torchtrack.data import Scaler, TabularDataset, read_split
from torchtrack.figures import loss_figure
from torchtrack.files import read_json, write_atomic, write_json
from torchtrack.models import Standardize, build_model, save_checkpoint
from torchtrack.progress import TrainingProgress
from torchtrack.recipe import DATA_TAG, MODEL_TAG, directory_md5, file_md5, output_tags, recipe_tags
from torchtrack.stages.prepare import RUN_FILE as PREPARE_RUN_FILE
from torchtrack.tracking import Tracker
from torchtrack.training import (
    epoch_metrics,
    final_epoch,
    fit,
    resolve_device,
    seed_everything,
    set_threads,
)

PARAM_SECTIONS = ("seed", "data", "model", "train")  # everything that shapes the model
RUN_FILE = MODEL_DIR / "mlflow_run.json"  # which MLflow model run holds this model
CHECKPOINT_FILE = MODEL_DIR / "checkpoint.pt"  # state after the last epoch; removed once the model is saved
TRAINING_CODE = [Path(m.__file__) for m in (activations, distributed, loader, losses, models, training)] + [
    Path(__file__)
]


def run(
    config: Config,
    prepared_dir: Path = PREPARED_DIR,
    model_dir: Path = MODEL_DIR,
    metrics_path: Path = METRICS_DIR / "train.json",
    plots_dir: Path = PLOTS_DIR,
    run_file: Path = RUN_FILE,
    prepare_run_file: Path = PREPARE_RUN_FILE,
    checkpoint_file: Path = CHECKPOINT_FILE,
) -> dict[str, float]:
    """Train, save the checkpoint, log everything; return the final losses.

    With `train.processes` > 1 the stage starts that many ranks under torchrun, which write
    to the default paths, and waits for them (torchtrack.distributed).
    """
    if distributed.needs_launch(config.train):
        distributed.launch(config)
        return read_json(METRICS_DIR / "train.json")
    with distributed.process_group(resolve_device(config.train.device), config.train) as device:
        return _train(
            config,
            device,
            prepared_dir,
            model_dir,
            metrics_path,
            plots_dir,
            run_file,
            prepare_run_file,
            checkpoint_file,
        )


def _train(
    config: Config,
    device: torch.device,
    prepared_dir: Path,
    model_dir: Path,
    metrics_path: Path,
    plots_dir: Path,
    run_file: Path,
    prepare_run_file: Path,
    checkpoint_file: Path,
) -> dict[str, float]:
    train_set = TabularDataset(read_split(prepared_dir, "train"))
    val_set = TabularDataset(read_split(prepared_dir, "val"))
    scaler = Scaler.load(prepared_dir / "scaler.json")
    generator = seed_everything(config.seed)
    set_threads(config.train.num_threads)
    model = build_model(config.model, in_features=len(train_set.features))
    shaping_params = {k: v for k, v in config.flat(*PARAM_SECTIONS).items() if k != "train.resume"}
    inputs = [Path(prepared_dir) / f"{name}.parquet" for name in ("train", "val")] + TRAINING_CODE
    checkpoint = EpochCheckpoint(
        checkpoint_file, fingerprint(shaping_params, inputs), resume=config.train.resume
    )
    if not distributed.is_leader():  # the other ranks only train: rank 0 logs and writes outputs
        started = time.perf_counter()
        history = fit(
            model, train_set, val_set, config.train, generator=generator, device=device, checkpoint=checkpoint
        )
        distributed.throughput(len(train_set) * (len(history) - checkpoint.resumed_epochs), started, device)
        return {}
    data_md5 = directory_md5(prepared_dir)  # as dvc.lock records it: the datasets' digest
    tags = {"device": str(device), DATA_TAG: data_md5} | recipe_tags(Path.cwd())
    if Path(prepare_run_file).is_file():
        tags["torchtrack.prepare_run_id"] = read_json(prepare_run_file)["prepare_run_id"]
    study_trial = trial.from_environment()  # set when `torchtrack tune` runs this experiment
    if study_trial is not None:
        tags |= study_trial.tags()
    steps_per_epoch = math.ceil(len(train_set) / config.train.batch_size)
    with Tracker(
        config.tracking,
        "train",
        params=config.flat(*PARAM_SECTIONS),
        model_run="new",
        tags=tags,
        system_metrics=True,
    ) as tracker:
        splits = {"train": train_set.data, "val": val_set.data}
        tracker.log_datasets(splits, prepared_dir, data_md5, train_set.target)
        tracker.log_graph(model, train_set.X[:8])
        with TrainingProgress(config.train.epochs, steps_per_epoch) as progress:
            started = time.perf_counter()
            history = fit(
                model,
                train_set,
                val_set,
                config.train,
                generator=generator,
                device=device,
                loggers=(tracker, progress) if study_trial is None else (tracker, progress, study_trial),
                log_every=config.tracking.log_every_n_steps,
                checkpoint=checkpoint,
            )
        trained_rows = len(train_set) * (len(history) - checkpoint.resumed_epochs)
        tracker.log_metrics(distributed.throughput(trained_rows, started, device), len(history))
        for result in history[: checkpoint.resumed_epochs]:  # so a resumed run's curves are whole
            tracker.log_metrics(epoch_metrics(result), result.epoch)
        kept = final_epoch(history, config.train)  # the epoch whose weights the model holds
        final = {
            "train_loss": kept.train_loss,
            "val_loss": kept.val_loss,
            "epochs": len(history),
            **learned_activation_values(model),
        }
        tracker.log_summary(final, step=len(history))
        tracker.log_hyperparams(config.flat(*PARAM_SECTIONS), final)

        curves = pd.DataFrame([asdict(r) for r in history])
        write_atomic(plots_dir / "loss.csv", lambda tmp: curves.to_csv(tmp, index=False))
        tracker.log_figure(
            loss_figure(curves.epoch.tolist(), curves.train_loss.tolist(), curves.val_loss.tolist()),
            plots_dir / "loss.png",
        )
        model.cpu()
        save_checkpoint(
            model_dir / "model.pt",
            model,
            config.model,
            {"features": train_set.features, "target": train_set.target, "scaler": asdict(scaler)},
        )
        write_json(metrics_path, final)
        served = nn.Sequential(Standardize(scaler.mean, scaler.std), model)  # takes raw features
        example = (train_set.X[:5].numpy() * scaler.std + scaler.mean).astype("float32")
        model_uri = tracker.log_model(
            served, example, {"features": train_set.features, "target": train_set.target}
        )
        tracker.tag_model_run({MODEL_TAG: file_md5(model_dir / "model.pt")} | output_tags([metrics_path]))
        tracker.register_model(model_uri)
        write_json(
            run_file,
            {
                "model_run_id": tracker.model_run_id,
                "model_uri": model_uri,
                "train_run_id": tracker.run_id,
                "experiment_id": tracker.experiment_id,
                "exp_name": os.environ.get("DVC_EXP_NAME"),
            },
        )
        checkpoint.remove()
    return final
