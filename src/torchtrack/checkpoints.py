"""Per-epoch training checkpoints, so an interrupted run can resume where it stopped.

After each epoch `fit` saves everything the next epoch depends on: the model and optimizer
state, every random number generator (torch, the DataLoader's generator, NumPy, Python) and
the losses so far. Resuming from it continues bit for bit as if never stopped, so on CPU the
final model is byte-identical to an uninterrupted run's. The file is written atomically and
loaded with `weights_only=True`.
"""

from __future__ import annotations

import hashlib
import json
import random
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from torchtrack.files import write_atomic


def fingerprint(params: dict[str, Any], files: Iterable[Path]) -> str:
    """A hash of the params and input files a training run depends on."""
    digest = hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode())
    for path in files:
        with Path(path).open("rb") as file:  # a MB at a time: a split may be larger than memory
            while chunk := file.read(1 << 20):
                digest.update(chunk)
    return digest.hexdigest()


class EpochCheckpoint:
    """The training state after the last finished epoch, in one file rewritten each epoch.

    `fingerprint` says which params and data the state belongs to: a file with another
    fingerprint is ignored. With `resume` False, `restore` ignores any file and training
    starts from epoch 1. Objects to save are passed by name and need `state_dict()` and
    `load_state_dict()` (a model, an optimizer, an LR scheduler).
    """

    def __init__(self, path: Path, fingerprint: str, resume: bool = True):
        self.path = Path(path)
        self.fingerprint = fingerprint
        self.resume = resume
        self.resumed_epochs = 0  # epochs restored by the last `restore`

    def save(self, epochs: list[dict[str, Any]], generator: torch.Generator, **stateful: Any) -> None:
        """Write the state after `len(epochs)` epochs; `epochs` holds their losses."""
        payload = {
            "fingerprint": self.fingerprint,
            "epochs": epochs,
            "rng": _rng_state(generator),
            "state": {name: obj.state_dict() for name, obj in stateful.items()},
        }
        write_atomic(self.path, lambda tmp: torch.save(payload, tmp), shared=True)  # one per node

    def restore(self, generator: torch.Generator, **stateful: Any) -> list[dict[str, Any]]:
        """Load the saved state into `generator` and `stateful`; return the finished epochs.

        Returns [] (train from the start) when resuming is off, no file exists, or the file
        belongs to other params or data.
        """
        self.resumed_epochs = 0
        if not self.resume or not self.path.is_file():
            return []
        payload = torch.load(self.path, map_location="cpu", weights_only=True)
        if payload["fingerprint"] != self.fingerprint:
            print(
                f"torchtrack: {self.path} was made with other params or data; training from epoch 1",
                file=sys.stderr,
            )
            return []
        for name, obj in stateful.items():
            obj.load_state_dict(payload["state"][name])
        _set_rng_state(payload["rng"], generator)
        self.resumed_epochs = len(payload["epochs"])
        print(f"resuming after epoch {self.resumed_epochs} from {self.path}", flush=True)
        return payload["epochs"]

    def remove(self) -> None:
        """Delete the file: the run it belonged to has finished."""
        self.path.unlink(missing_ok=True)


def _rng_state(generator: torch.Generator) -> dict[str, Any]:
    kind, keys, position, has_gauss, cached_gaussian = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else [],
        "loader": generator.get_state(),
        # NumPy's state as a tensor and plain numbers: weights_only loading refuses arrays.
        "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, cached_gaussian),
        "python": random.getstate(),
    }


def _set_rng_state(state: dict[str, Any], generator: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"]:
        torch.cuda.set_rng_state_all(state["cuda"])
    generator.set_state(state["loader"])
    kind, keys, position, has_gauss, cached_gaussian = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), position, has_gauss, cached_gaussian))
    random.setstate(state["python"])
