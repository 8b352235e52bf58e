"""The pipeline's work with no tracking and no framework: what `dvc repro -f` is measured against.

    python benchmarks/plain_pipeline.py prepare|train|evaluate FOLDER

Three plain Python processes, one per step, as `dvc repro` runs three stages: generate and
split 50,000 x 8 rows (tanh(z) + z + noise) to Parquet; train Linear -> tanh(x) + x for 20
epochs, batch 256, Adam, one thread, with a validation pass per epoch; score the test split.
Only NumPy, pandas and torch: no torchtrack import, so its own costs are not in the baseline.
"""

import json
import sys
from pathlib import Path

ROWS, FEATURES, NOISE, SEED = 50_000, 8, 0.3, 42
EPOCHS, BATCH, LR = 20, 256, 0.01


def prepare(folder: Path) -> None:
    """Synthetic rows, a seeded 70/15/15 split, features standardised on train, to Parquet."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(SEED)
    X = rng.standard_normal((ROWS, FEATURES))
    z = X @ rng.standard_normal(FEATURES) / np.sqrt(FEATURES)
    y = np.tanh(z) + z + rng.normal(0, NOISE, ROWS)
    order = rng.permutation(ROWS)
    cut = {"test": order[: ROWS * 15 // 100], "val": order[ROWS * 15 // 100 : ROWS * 30 // 100]}
    cut["train"] = order[ROWS * 30 // 100 :]
    mean, std = X[cut["train"]].mean(axis=0), X[cut["train"]].std(axis=0)
    folder.mkdir(parents=True, exist_ok=True)
    for name, rows in cut.items():
        frame = pd.DataFrame(
            ((X[rows] - mean) / std).astype("float32"), columns=[f"x{i}" for i in range(FEATURES)]
        )
        frame["y"] = y[rows].astype("float32")
        frame.to_parquet(folder / f"{name}.parquet", index=False)


def tensors(folder: Path, name: str):
    """(X, y) of one split as float32 tensors."""
    import pandas as pd
    import torch

    frame = pd.read_parquet(folder / f"{name}.parquet")
    X, y = frame.iloc[:, :-1].to_numpy(copy=True), frame[["y"]].to_numpy(copy=True)  # (N, F), (N, 1)
    return torch.from_numpy(X), torch.from_numpy(y)


def model():
    """Linear -> tanh(x) + x."""
    import torch
    from torch import nn

    class TanhPlusX(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.tanh(x) + x

    return nn.Sequential(nn.Linear(FEATURES, 1), TanhPlusX())


def train(folder: Path) -> None:
    """The training loop with a validation loss per epoch; the weights saved for evaluate."""
    import torch
    from torch import nn

    torch.set_num_threads(1)
    torch.manual_seed(SEED)
    X, y = tensors(folder, "train")
    val_X, val_y = tensors(folder, "val")
    net = model()
    optimizer = torch.optim.Adam(net.parameters(), lr=LR)
    loss_fn = nn.MSELoss()
    for _ in range(EPOCHS):
        net.train()
        order = torch.randperm(len(X))
        for i in range(0, len(X), BATCH):
            rows = order[i : i + BATCH]
            loss = loss_fn(net(X[rows]), y[rows])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        net.eval()
        with torch.no_grad():
            val_loss = loss_fn(net(val_X), val_y).item()
    torch.save(net.state_dict(), folder / "model.pt")
    (folder / "train.json").write_text(json.dumps({"val_loss": val_loss}))


def evaluate(folder: Path) -> None:
    """Test MSE of the saved weights, in eval mode without gradients."""
    import torch

    torch.set_num_threads(1)
    X, y = tensors(folder, "test")
    net = model()
    net.load_state_dict(torch.load(folder / "model.pt"))
    net.eval()
    with torch.no_grad():
        mse = torch.mean((net(X) - y) ** 2).item()
    (folder / "evaluate.json").write_text(json.dumps({"test_mse": mse}))


if __name__ == "__main__":
    {"prepare": prepare, "train": train, "evaluate": evaluate}[sys.argv[1]](Path(sys.argv[2]))
