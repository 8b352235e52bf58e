"""The least-squares line as the trained model's fallback: a linear model whose activation can
be a straight line ends as the train split's exact least-squares fit, unless its trained
weights pay for their extra parameters by Akaike's criterion.

    choice = keep_the_better(model, train_set, config)  # the model now holds the kept weights

a*tanh(z) + b*z has two parameters more than the line b*z, so on the train rows it always
fits a little better, noise included: on a few hundred rows of a nearly linear table the
trained curve ended up to 6% above least squares on the test rows. Akaike's criterion (for
a Gaussian error, Mallows' Cp) says what those parameters must earn: a curve is expected to
be better on new rows only when it lowers the train rows' sum of squared errors by more than
2 * sigma^2 per extra parameter, sigma^2 being the line's residual variance. It reads the
train rows only, where the several hundred rows of a small table are, rather than its few
dozen validation rows. docs/training-recipe.md has the figures.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from torchtrack import portable
from torchtrack.activations import LearnableTanhPlusX
from torchtrack.config import TrainConfig
from torchtrack.evaluation import NormalEquations, predict
from torchtrack.models import RegressionModel
from torchtrack.tabular import ParquetRows, TabularDataset

Split = TabularDataset | ParquetRows

LINE_ACTIVATIONS = (nn.Identity, LearnableTanhPlusX)  # what can be z itself (a = 0, b = 1)
AKAIKE_COST = 2.0  # the sum of squared errors, in units of sigma^2, that each extra parameter must save


@dataclass(frozen=True)
class LineChoice:
    """Which weights the model kept, and the train figures that decided it."""

    kept_line: bool
    saved: float  # the line's train sum of squared errors minus the trained model's, over sigma^2
    cost: float  # what the trained model's extra parameters had to save: AKAIKE_COST each
    line_train_loss: float  # the line's mean squared error on the train rows

    def metrics(self) -> dict[str, float]:
        """What the train stage records: 1.0 when the model is the line, and the saving against its cost."""
        return {
            "kept_least_squares_line": float(self.kept_line),
            "akaike_saving": self.saved,
            "akaike_cost": self.cost,
        }

    def describe(self) -> str:
        """One short line (no wrap at 100 columns) saying which weights were kept and why."""
        figures = f"the curve's Akaike saving is {self.saved:.3g} sigma^2, {self.cost:g} needed"
        return f"kept the {'least-squares line' if self.kept_line else 'trained model'}: {figures}"


def can_be_a_line(model: nn.Module) -> bool:
    """Whether `model` can hold a straight line: a linear layer, then identity or a*tanh(z) + b*z."""
    return isinstance(model, RegressionModel) and isinstance(model.activation, LINE_ACTIVATIONS)


@torch.no_grad()
def set_to_line(model: RegressionModel, coef: list[float]) -> None:
    """Make `model` the line with these weights and intercept (`least_squares_fit`'s order):
    its linear layer holds them, and a learnable activation becomes 0*tanh(z) + 1*z."""
    weight = model.linear.weight
    weight.copy_(torch.tensor(coef[:-1], dtype=weight.dtype).reshape(weight.shape))
    model.linear.bias.fill_(coef[-1])
    if isinstance(model.activation, LearnableTanhPlusX):
        model.activation.a.fill_(0.0)
        model.activation.b.fill_(1.0)


def keep_the_better(model: nn.Module, train_set: Split, config: TrainConfig) -> LineChoice | None:
    """After training: set `model` to the least-squares line on `train_set` unless its trained
    weights lower the train sum of squared errors by more than AKAIKE_COST times sigma^2 per
    parameter of its activation; return what was decided. None, and the model untouched, when
    it cannot be a line or the loss is not `mse` (the criterion is Gaussian's; least squares is
    not the fit an l1 or huber loss asks for). The rows are read a block at a time, twice: once
    for the trained weights' errors and the normal equations, once for the line's errors.
    """
    if config.loss != "mse" or not can_be_a_line(model):
        return None
    trained = {name: value.clone() for name, value in model.state_dict().items()}
    trained_sse, equations = portable.ExactSums(1), NormalEquations(len(train_set.features))
    for X, y in train_set.blocks():  # float32: made float64 a block at a time
        trained_sse.add(_squared_errors(model, X, y))
        equations.add(X.numpy(), y.numpy())
    set_to_line(model, equations.solve())
    line_sse = _sum_of_squared_errors(model, train_set)
    degrees = max(len(train_set) - len(train_set.features) - 1, 1)  # the line's residual degrees of freedom
    sigma2 = line_sse / degrees
    saving = line_sse - trained_sse.totals()[0]
    saved = saving / sigma2 if sigma2 > 0 else 0.0  # an exact line: nothing to save
    cost = AKAIKE_COST * sum(p.numel() for p in model.activation.parameters())
    kept_line = not saved > cost
    if not kept_line:
        model.load_state_dict(trained)
    return LineChoice(kept_line, float(saved), cost, line_sse / len(train_set))


def line_losses(model: nn.Module, choice: LineChoice, val_set: Split) -> dict[str, float]:
    """The kept line's mean squared error on the train and val rows, under the names of the
    epochs' losses: so that the records end on the weights kept, not on the curve they replaced."""
    val_loss = _sum_of_squared_errors(model, val_set) / len(val_set)
    return {"train_loss": choice.line_train_loss, "val_loss": val_loss}


def _sum_of_squared_errors(model: nn.Module, rows: Split) -> float:
    """The sum of squared errors of `model` on `rows`, a block of BLOCK_ROWS rows at a time: the
    batches `predict` cuts, and an exactly rounded sum (not np.dot, whose BLAS kernel the CPU
    chooses), so the bits of a whole-table computation."""
    sums = portable.ExactSums(1)
    for X, y in rows.blocks():
        sums.add(_squared_errors(model, X, y))
    return sums.totals()[0]


def _squared_errors(model: nn.Module, X: torch.Tensor, y: torch.Tensor) -> np.ndarray:
    """(n, 1) squared errors of `model` on rows X (n, F) with targets y (n, 1), in float64."""
    errors = predict(model, X) - y.numpy().reshape(-1).astype(np.float64)  # (n,)
    return (errors * errors)[:, None]
