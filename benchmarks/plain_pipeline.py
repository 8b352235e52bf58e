"""The pipeline's work with no tracking and no framework: what `dvc repro -f` is measured against.

    python benchmarks/plain_pipeline.py prepare|train|evaluate FOLDER SETTINGS_JSON

Three plain Python processes, one per step, as `dvc repro` runs three stages: generate and
split the synthetic rows (tanh(z) + z + noise) to Parquet; train Linear -> tanh(x) + x (or its
learnable a * tanh(x) + b * x) with Adam on one thread, the lr decayed per epoch under a cosine
schedule if the params say so, with a validation pass per epoch; score the test split.
SETTINGS_JSON holds the sizes (rows, features, noise, seed, epochs, batch_size, lr, cosine,
learnable): bench.py takes them from params.yaml through torchtrack's config, and the epochs
and batch from what the train stage ran, so both sides do the same work. Only NumPy, pandas
and torch: no torchtrack import, so its own costs are not in the baseline.
"""

import json
import sys
from pathlib import Path


def prepare(folder: Path, settings: dict) -> None:
    """Synthetic rows, a seeded train/val/test split, features standardised on train, to Parquet."""
    import numpy as np
    import pandas as pd

    rows, features = settings["rows"], settings["features"]
    rng = np.random.default_rng(settings["seed"])
    X = rng.standard_normal((rows, features))
    z = X @ rng.standard_normal(features) / np.sqrt(features)
    y = np.tanh(z) + z + rng.normal(0, settings["noise"], rows)
    order = rng.permutation(rows)
    n_test, n_val = round(rows * settings["test_fraction"]), round(rows * settings["val_fraction"])
    cut = {"test": order[:n_test], "val": order[n_test : n_test + n_val], "train": order[n_test + n_val :]}
    mean, std = X[cut["train"]].mean(axis=0), X[cut["train"]].std(axis=0)
    folder.mkdir(parents=True, exist_ok=True)
    for name, part in cut.items():
        frame = pd.DataFrame(
            ((X[part] - mean) / std).astype("float32"), columns=[f"x{i}" for i in range(features)]
        )
        frame["y"] = y[part].astype("float32")
        frame.to_parquet(folder / f"{name}.parquet", index=False)


def tensors(folder: Path, name: str):
    """(X, y) of one split as float32 tensors."""
    import pandas as pd
    import torch

    frame = pd.read_parquet(folder / f"{name}.parquet")
    X, y = frame.iloc[:, :-1].to_numpy(copy=True), frame[["y"]].to_numpy(copy=True)  # (N, F), (N, 1)
    return torch.from_numpy(X), torch.from_numpy(y)


def model(features: int, learnable: bool):
    """Linear -> a * tanh(x) + b * x, with a = b = 1 fixed or learnable."""
    import torch
    from torch import nn

    class TanhPlusX(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Parameter(torch.tensor(1.0), requires_grad=learnable)
            self.b = nn.Parameter(torch.tensor(1.0), requires_grad=learnable)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.a * torch.tanh(x) + self.b * x

    return nn.Sequential(nn.Linear(features, 1), TanhPlusX())


def train(folder: Path, settings: dict) -> None:
    """The training loop with a validation loss per epoch; the weights saved for evaluate."""
    import torch
    from torch import nn

    torch.set_num_threads(1)
    torch.manual_seed(settings["seed"])
    X, y = tensors(folder, "train")
    val_X, val_y = tensors(folder, "val")
    net = model(X.shape[1], settings["learnable"])
    optimizer = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=settings["lr"])
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=settings["epochs"])
    loss_fn = nn.MSELoss()
    batch = settings["batch_size"]
    for _ in range(settings["epochs"]):
        net.train()
        order = torch.randperm(len(X))
        for i in range(0, len(X), batch):
            rows = order[i : i + batch]
            loss = loss_fn(net(X[rows]), y[rows])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        if settings["cosine"]:
            schedule.step()
        net.eval()
        with torch.no_grad():
            val_loss = loss_fn(net(val_X), val_y).item()
    torch.save(net.state_dict(), folder / "model.pt")
    (folder / "train.json").write_text(json.dumps({"val_loss": val_loss}))


def evaluate(folder: Path, settings: dict) -> None:
    """Test MSE of the saved weights, in eval mode without gradients."""
    import torch

    torch.set_num_threads(1)
    X, y = tensors(folder, "test")
    net = model(X.shape[1], settings["learnable"])
    net.load_state_dict(torch.load(folder / "model.pt"))
    net.eval()
    with torch.no_grad():
        mse = torch.mean((net(X) - y) ** 2).item()
    (folder / "evaluate.json").write_text(json.dumps({"test_mse": mse}))


if __name__ == "__main__":
    {"prepare": prepare, "train": train, "evaluate": evaluate}[sys.argv[1]](
        Path(sys.argv[2]), json.loads(sys.argv[3])
    )
