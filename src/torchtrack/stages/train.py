"""train: fit the model on the train split, watch the val split, save a rebuildable checkpoint.

Run by `dvc repro` as `python -m torchtrack train`. Opens the MLflow model run that
evaluate later adds its test metrics to, tagged with the content hashes of the splits it
read and the model it wrote (see tracking/hashes.py). Saves the training state after every epoch;
with `train.resume` a rerun after an interruption continues from it.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from importlib import import_module
from pathlib import Path

import pandas as pd
import torch

from torchtrack import distributed, trial
from torchtrack.activations import learned_activation_values
from torchtrack.budget import Budget
from torchtrack.checkpoints import EpochCheckpoint, fingerprint
from torchtrack.config import Config
from torchtrack.data import prepared_split
from torchtrack.figures import COLUMNS, draw
from torchtrack.files import read_json, write_atomic, write_json
from torchtrack.least_squares_line import keep_the_better, line_losses
from torchtrack.models import build_model, save_checkpoint
from torchtrack.paths import (
    CHECKPOINT_FILE,
    LOSS_CSV,
    LOSS_FIGURE,
    MODEL_FILE,
    PREPARED_DIR,
    PREPROCESSING_FILE,
    TRAIN_METRICS,
    split_file,
)
from torchtrack.preprocessing import Preprocessor
from torchtrack.progress import TrainingProgress
from torchtrack.tables import note
from torchtrack.tabular import ParquetRows, open_split
from torchtrack.tracking.client import prepare_run_id
from torchtrack.tracking.hashes import (
    MODEL_TAG,
    MODEL_URI_TAG,
    PREPARE_RUN_TAG,
    PREPARED_TAG,
    directory_md5,
    file_md5,
)
from torchtrack.tracking.recipe import output_tags, recipe_tags
from torchtrack.tracking.tracker import Tracker
from torchtrack.training import (
    epoch_metrics,
    final_epoch,
    fit,
    resolve_device,
    seed_everything,
    set_threads,
)

PARAM_SECTIONS = ("seed", "data", "model", "train")  # logged with the model run
UNSHAPING_PARAMS = ("train.resume",)  # resuming gives the same model (tests/test_resume.py)
# The code whose change can change this stage's outputs: train's `deps` in dvc.yaml (the two
# are checked against each other and the import graph by tests/test_dvc_graph.py), and so
# part of the resume fingerprint too.
TRAINING_CODE = [Path(__file__)] + [
    Path(import_module(name).__file__)
    for name in (
        "torchtrack", "torchtrack.activations", "torchtrack.budget", "torchtrack.checkpoints",
        "torchtrack.choices", "torchtrack.config", "torchtrack.cpu_kernels", "torchtrack.data",
        "torchtrack.distributed", "torchtrack.evaluation", "torchtrack.figures", "torchtrack.files",
        "torchtrack.least_squares_line", "torchtrack.loader", "torchtrack.losses", "torchtrack.models",
        "torchtrack.portable", "torchtrack.preprocessing", "torchtrack.synthetic", "torchtrack.tabular",
        "torchtrack.tables", "torchtrack.training", "torchtrack.trial",
    )
]  # fmt: skip


def run(config: Config) -> dict[str, float]:
    """Train, save the checkpoint, log everything; return the final losses.

    With `train.processes` > 1 the stage starts that many ranks under torchrun, which write
    the same outputs, and waits for them (torchtrack.distributed).
    """
    if distributed.needs_launch(config.train):
        distributed.launch(config)
        return read_json(TRAIN_METRICS)
    with distributed.process_group(resolve_device(config.train.device), config.train) as device:
        return _train(config, device)


def _train(config: Config, device: torch.device) -> dict[str, float]:
    buffer_rows = config.train.shuffle_buffer_rows  # a larger split is read a window at a time
    train_set = open_split(prepared_split(PREPARED_DIR, "train"), buffer_rows)
    val_set = open_split(prepared_split(PREPARED_DIR, "val"), buffer_rows)
    for split in (train_set, val_set):
        if isinstance(split, ParquetRows) and distributed.is_leader():
            note(split.describe())
    preprocessor = Preprocessor.load(PREPARED_DIR / PREPROCESSING_FILE)
    generator = seed_everything(config.seed)
    set_threads(config.train.num_threads)
    model = build_model(config.model, in_features=len(train_set.features))
    shaping_params = {k: v for k, v in config.flat(*PARAM_SECTIONS).items() if k not in UNSHAPING_PARAMS}
    inputs = [split_file(PREPARED_DIR, name) for name in ("train", "val")] + TRAINING_CODE
    # A run that torchrun may restart after a rank fails (--max-restarts) resumes where it stopped;
    # a checkpoint of other params, data or code is ignored, so this never changes the model.
    resume = config.train.resume or distributed.restartable()
    checkpoint = EpochCheckpoint(CHECKPOINT_FILE, fingerprint(shaping_params, inputs), resume=resume)
    # The first optimizer a process makes imports Dynamo (torch.optim's lazy import, over a
    # second): an import, which samples_per_second, training's rows over `fit`'s wall time,
    # leaves out, as a bare loop's clock does; so it is made here, before any clock starts.
    import_module("torch._dynamo")
    if not distributed.is_leader():  # the other ranks only train: rank 0 logs and writes outputs
        started = time.perf_counter()
        history = fit(
            model, train_set, val_set, config.train, generator=generator, device=device, checkpoint=checkpoint
        )
        distributed.throughput(len(train_set) * (len(history) - checkpoint.resumed_epochs), started, device)
        if distributed.is_node_leader():  # another node's copy (on rank 0's node, rank 0 removes it)
            checkpoint.remove()
        return {}
    prepared_md5 = directory_md5(PREPARED_DIR)  # as dvc.lock records it: the datasets' digest too
    tags = {"device": str(device), PREPARED_TAG: prepared_md5} | recipe_tags(Path.cwd())
    prepare_run = prepare_run_id(prepared_md5)
    if prepare_run is not None:
        tags[PREPARE_RUN_TAG] = prepare_run
    study_trial = trial.from_environment()  # set when `torchtrack tune` runs this experiment
    if study_trial is not None:
        tags |= study_trial.tags()
    budget = Budget.plan(config.train, len(train_set), distributed.world_size())  # the run `fit` makes
    attempt = distributed.attempt_tag()  # torchrun's run id: a restarted attempt continues its model run
    if attempt is not None:
        tags[attempt[0]] = attempt[1]
    with Tracker(
        config.tracking,
        "train",
        params=config.flat(*PARAM_SECTIONS),
        model_run="new",
        tags=tags,
        system_metrics=True,
        continues=attempt if distributed.restartable() else None,
    ) as tracker:
        splits = {split: split_file(PREPARED_DIR, split) for split in ("train", "val")}
        tracker.log_datasets(splits, PREPARED_DIR, prepared_md5, train_set.target)
        tracker.log_graph(model, train_set.evenly_spaced()[0][:8])
        with TrainingProgress(budget.epochs, budget.steps_per_epoch) as progress:
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
        kept = final_epoch(history, config.train)  # the epoch whose weights training left
        final = {"train_loss": kept.train_loss, "val_loss": kept.val_loss}
        line = keep_the_better(model, train_set, config.train) if config.train.least_squares_line else None
        if line is not None:
            note(line.describe())
            final |= line.metrics()
            if line.kept_line:  # the curves end, and the summary is, on the line, not the discarded curve
                losses = line_losses(model, line, val_set)
                tracker.log_metrics(losses | learned_activation_values(model), len(history))
                final |= losses
        final |= {"epochs": len(history), "batch_size": budget.batch_size, **learned_activation_values(model)}
        tracker.log_summary(final, step=len(history))
        tracker.log_hyperparams(config.flat(*PARAM_SECTIONS), final)

        curves = pd.DataFrame([asdict(r) for r in history])
        write_atomic(LOSS_CSV, lambda tmp: curves.to_csv(tmp, index=False))
        draw("loss", curves[list(COLUMNS["loss"])], LOSS_FIGURE, tracker.painter)
        tracker.log_figure(LOSS_FIGURE)
        model.cpu()
        save_checkpoint(
            MODEL_FILE,
            model,
            config.model,
            {
                "features": train_set.features,
                "target": train_set.target,
                "preprocessing": preprocessor.to_dict(),  # train_loss and val_loss are on its target scale
                # Runs find their model by its content hash (tracking/hashes.py), and the least-squares
                # line is the same weights whatever the lr: the params tell such models apart.
                "params": shaping_params,
            },
        )
        write_json(TRAIN_METRICS, final)
        model_uri = tracker.log_model(MODEL_FILE, preprocessor)
        tracker.tag_model_run(
            {MODEL_TAG: file_md5(MODEL_FILE), MODEL_URI_TAG: model_uri} | output_tags([TRAIN_METRICS])
        )
        tracker.register_model(model_uri)
        checkpoint.remove()
    return final
