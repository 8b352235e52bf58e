"""Every file the pipeline's stages read and write, relative to the repository root.

dvc.yaml lists the same paths (tests/test_dvc_graph.py checks that the two agree), so a
stage never names a file itself and never imports another stage for one.
"""

from __future__ import annotations

from pathlib import Path

PARAMS_FILE = Path("params.yaml")  # read by every stage, through config.load_config

# prepare
PREPARED_DIR = Path("data/prepared")  # the splits, the preprocessing fitted on train, the synthetic truth
PREPARE_METRICS = Path("metrics/prepare.json")  # rows per split, rows dropped, noise variance, oracle MSE
# prepare's private folder for the synthetic rows it makes, in the repository root while it runs
# and removed when it ends: beside the data, not in /tmp (memory on many systems), since it holds
# the raw table. Not a DVC output.
PREPARE_SCRATCH_PREFIX = ".prepare-"

# Inside PREPARED_DIR (written by data.write_splits, read by train and evaluate).
SPLIT_FILE = "{split}.parquet"  # one per split: train, val, test
PREPROCESSING_FILE = "preprocessing.json"  # column roles, gap fillers, categories, scaling: fitted on train
COLUMNS_FILE = "columns.json"  # what was done to each column and why, as a user reads it
TRUTH_FILE = "truth.json"  # the synthetic rule, absent for CSV and diabetes data

# train
MODEL_FILE = Path("models/model.pt")  # the rebuildable checkpoint: weights, model config, preprocessing
CHECKPOINT_FILE = Path("models/checkpoint.pt")  # training state between epochs; not a DVC output
TRAIN_METRICS = Path("metrics/train.json")  # final train/val loss
LOSS_CSV = Path("plots/loss.csv")  # per-epoch losses for `dvc plots`
LOSS_FIGURE = Path("plots/loss.png")

# evaluate
EVALUATE_METRICS = Path("metrics/evaluate.json")  # test metrics
PREDICTIONS_CSV = Path("plots/predictions.csv")  # a sample of test predictions for `dvc plots`
PREDICTIONS_FIGURE = Path("plots/predictions.png")

# What each stage hands to DVC: its `outs`, `metrics` and `plots` in dvc.yaml.
STAGE_OUTPUTS = {
    "validate": (),  # checks params.yaml only
    "prepare": (PREPARED_DIR, PREPARE_METRICS),
    "train": (MODEL_FILE, LOSS_FIGURE, TRAIN_METRICS, LOSS_CSV),
    "evaluate": (PREDICTIONS_FIGURE, EVALUATE_METRICS, PREDICTIONS_CSV),
}
# The other stages' outputs each stage reads: its data `deps` in dvc.yaml. prepare's data is
# `data.path` (a CSV) when there is one; dvc.yaml names it as ${data.path}.
STAGE_INPUTS = {
    "validate": (),
    "prepare": (),
    "train": (PREPARED_DIR,),
    "evaluate": (PREPARED_DIR, MODEL_FILE),
}


def split_file(prepared_dir: Path, split: str) -> Path:
    """The Parquet file of one split inside a prepared folder."""
    return Path(prepared_dir) / SPLIT_FILE.format(split=split)
