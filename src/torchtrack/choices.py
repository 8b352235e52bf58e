"""The allowed values of every params.yaml choice, written once.

config.py validates params.yaml against these types, and each factory (data.load_source,
preprocessing.scales_target, preprocessing.infer_role,
synthetic.make_synthetic, models.build_model, activations.build_activation, losses.build_loss,
training.make_optimizer, make_lr_schedule, resolve_device) builds exactly these names, and
names them when refusing another (tests/test_choices.py holds both sides to this list). Plain
typing only, so that reading params.yaml imports no torch.
"""

from __future__ import annotations

from typing import Literal, get_args, get_origin

Source = Literal["synthetic", "csv", "diabetes"]  # data.source: where the rows come from
Family = Literal[  # data.family, a synthetic target rule: y = f(z) + noise with z = X @ weights + bias
    "tanh_plus_x",  # tanh(z) + z: exactly what the default model (linear + tanh_plus_x) represents
    "line",  # 2x + 3 on one column x in [0, 10]: the journal's week-1 linear regression
    "linear",  # z: multi-column linear regression
    "nonlinear",  # sin(2z) + z^2 / 2: bends both ways, so no linear model fits it; an MLP can
    "outliers",  # tanh(z) + z, plus a positive heavy-tailed error on a fraction of rows
    "scaled_tanh",  # a * tanh(z) + b * z: what learnable_tanh_plus_x represents, a and b to recover
]
DateFeatures = Literal["parts", "drop"]  # data.date_features: a date as year, month, day of year, or dropped
TargetScaling = Literal[  # data.scale_target
    "auto",  # standardize for csv and diabetes; none for synthetic (its rule is on the target's scale)
    "standardize",  # train on (y - mean) / std of the train split; predictions are mapped back
    "none",  # train on y as it is
]
ModelKind = Literal["linear", "mlp"]  # model.kind
Activation = Literal[  # model.activation
    "identity",
    "tanh_plus_x",
    "learnable_tanh_plus_x",
    "manual_grad_tanh_plus_x",
    "relu",
    "leaky_relu",
    "gelu",
    "silu",
    "elu",
    "tanh",
    "sigmoid",
    "softplus",
]
Loss = Literal["mse", "l1", "huber"]  # train.loss
Optimizer = Literal["sgd", "adam", "adamw"]  # train.optimizer
LrSchedule = Literal["none", "step", "cosine"]  # train.lr_schedule
Device = Literal["auto", "cpu", "cuda"]  # train.device
PromoteRule = Literal["best_test_mse"]  # tracking.promote: which version gets the champion alias


def names(choice: object) -> tuple[str, ...]:
    """The allowed values of a choice type, in order: `names(Loss) == ("mse", "l1", "huber")`;
    an optional one (`PromoteRule | None`) ends with "null", as params.yaml writes None."""
    if get_origin(choice) is Literal:
        return get_args(choice)
    return tuple(n for arg in get_args(choice) for n in (("null",) if arg is type(None) else names(arg)))


def unknown(what: str, value: object, choice: object) -> ValueError:
    """The error a factory raises for a name outside `choice`."""
    return ValueError(f"unknown {what} {value!r}; allowed: {', '.join(names(choice))}")
