"""How runs and scalars are named in TensorBoard, so a user finds curves without run ids.

Run directories are `<stage>/<time>[-<DVC experiment>]-<run id[:8]>`; scalar tags are
grouped by TensorBoard's `group/name` convention, so the loss curves open first and a
learnable activation's parameters sit together. MLflow keeps the plain metric names.
"""

from __future__ import annotations

import time

TAGS = {  # metric name -> TensorBoard tag; other names go to their stage's group
    "train_loss": "loss/train",
    "val_loss": "loss/val",
    "train_loss_step": "loss/train_step",
    "lr": "optimizer/lr",
}
ACTIVATION_GROUP = "activation"  # learnable activation parameters: the names that hold a dot


def run_dir_name(run_id: str, exp_name: str | None = None) -> str:
    """`<time>-<run id[:8]>`, with the DVC experiment's name before the id when there is one."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return "-".join(part for part in (stamp, exp_name, run_id[:8]) if part)


def scalar_tag(name: str, stage: str) -> str:
    """The TensorBoard tag for metric `name` logged by `stage`: `loss/train`, `activation/a`, ..."""
    if name in TAGS:
        return TAGS[name]
    if "." in name:  # named as in named_parameters(): activation.a, layers.1.a
        return f"{ACTIVATION_GROUP}/{name.removeprefix(ACTIVATION_GROUP + '.')}"
    return f"{stage}/{name}"
