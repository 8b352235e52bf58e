"""The default recipe's parts: a budget of optimizer steps in whole epochs, a batch no larger
than a tenth of the train rows, a model that starts at the target's mean, and early stopping
that counts epochs within the budget and keeps the best weights."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from helpers import RecordingLogger
from torchtrack.budget import MIN_STEPS_PER_EPOCH, Budget
from torchtrack.config import TrainConfig
from torchtrack.loader import BLOCK_ROWS
from torchtrack.models import MLP, RegressionModel
from torchtrack.tabular import TabularDataset
from torchtrack.training import STEP_LOSS, final_epoch, fit, seed_everything, start_at_the_target_mean

CPU = torch.device("cpu")


def table(rows: int, mean: float = 0.0, seed: int = 0) -> TabularDataset:
    """`rows` rows of 3 standard normal features and a target near `mean` that depends on them."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(rows, 3))
    y = mean + X @ [2.0, -1.0, 0.5] + rng.normal(0, 0.3, rows)
    return TabularDataset(pd.DataFrame({"a": X[:, 0], "b": X[:, 1], "c": X[:, 2], "y": y}))


def test_a_small_table_gets_batches_of_a_tenth_of_its_rows_and_the_whole_step_budget():
    plan = Budget.plan(TrainConfig(batch_size=256, max_steps=2000), n_rows=274)
    assert plan.batch_size == 274 // MIN_STEPS_PER_EPOCH
    assert plan.steps_per_epoch == math.ceil(274 / plan.batch_size) >= MIN_STEPS_PER_EPOCH
    assert 2000 <= plan.steps < 2000 + plan.steps_per_epoch  # the budget, rounded up to a whole epoch


def test_a_large_table_keeps_the_batch_and_takes_fewer_epochs_for_the_same_steps():
    plan = Budget.plan(TrainConfig(batch_size=256, max_steps=2000), n_rows=35000)
    assert plan.batch_size == 256 and plan.steps_per_epoch == math.ceil(35000 / 256)
    assert plan.epochs == math.ceil(2000 / plan.steps_per_epoch)


def test_epochs_cap_the_run_when_set():
    assert Budget.plan(TrainConfig(max_steps=2000, epochs=3), n_rows=35000).epochs == 3
    assert Budget.plan(TrainConfig(max_steps=10, epochs=300), n_rows=35000).epochs == 1


def test_a_table_of_a_few_rows_trains_one_row_per_step():
    plan = Budget.plan(TrainConfig(max_steps=12), n_rows=5)
    assert (plan.batch_size, plan.steps_per_epoch, plan.epochs) == (1, 5, 3)


@pytest.mark.parametrize("world_size", [2, 3])
def test_the_capped_batch_splits_evenly_over_the_processes(world_size):
    for rows in (7, 61, 274, 1000):
        batch = Budget.plan(TrainConfig(batch_size=256), rows, world_size).batch_size
        assert batch % world_size == 0 and world_size <= batch <= max(rows // MIN_STEPS_PER_EPOCH, world_size)


def test_fit_takes_the_planned_batches_for_the_step_budget():
    train, val = table(274), table(60, seed=1)
    config = TrainConfig(max_steps=55)
    plan = Budget.plan(config, len(train))
    logger = RecordingLogger()
    history = fit(
        RegressionModel(3),
        train,
        val,
        config,
        generator=seed_everything(0),
        device=CPU,
        loggers=[logger],
        log_every=1,
    )
    assert len(history) == plan.epochs
    assert logger.steps_of(STEP_LOSS) == list(range(1, plan.steps + 1))


def test_the_default_recipe_fits_a_small_table_whose_target_is_far_from_zero():
    """Mean 150 and a few hundred rows: the case a fixed 20 epochs of batch 256 never fitted."""
    train, val = table(300, mean=150.0), table(100, mean=150.0, seed=1)
    model = RegressionModel(3, "learnable_tanh_plus_x")
    history = fit(model, train, val, TrainConfig(), generator=seed_everything(0), device=CPU)
    assert history[-1].val_loss < 2 * 0.3**2  # near the noise, against a variance of about 5


def test_a_model_starts_at_the_mean_of_its_target():
    rows = table(200, mean=150.0)
    for model in (
        RegressionModel(3, "tanh_plus_x"),
        RegressionModel(3, "learnable_tanh_plus_x"),
        MLP(3, (8,)),
    ):
        assert start_at_the_target_mean(model, rows)
        with torch.no_grad():
            assert model(rows.X).mean().item() == pytest.approx(rows.y.mean().item(), abs=1e-3)


def test_a_bounded_output_out_of_reach_of_the_target_keeps_its_bias():
    model = RegressionModel(3, "tanh")  # outputs in (-1, 1): a mean of 150 is out of reach
    before = model.linear.bias.clone()
    assert not start_at_the_target_mean(model, table(200, mean=150.0))
    assert torch.equal(model.linear.bias, before)


def test_starting_at_the_mean_draws_nothing_from_the_random_stream():
    model, rows = MLP(3, (8,), dropout=0.5), table(50, mean=3.0)
    state = torch.get_rng_state()
    start_at_the_target_mean(model, rows)
    assert torch.equal(torch.get_rng_state(), state)


def test_a_model_gives_evenly_spread_rows_of_a_column_major_table_the_bits_of_their_copy():
    """Why `start_at_the_target_mean` may copy its rows[::k] once: that view has no unit
    stride, so every forward pass copies it to the same contiguous layout anyway."""
    X = table(3 * BLOCK_ROWS + 5).X  # (N, 3), column-major
    spread = X[::3]
    assert 1 not in spread.stride()
    with torch.no_grad():
        for model in (RegressionModel(3, "learnable_tanh_plus_x"), MLP(3, (8,))):
            model.eval()
            assert torch.equal(model(spread).view(torch.int32), model(spread.contiguous()).view(torch.int32))


def test_early_stopping_counts_epochs_within_the_budget_and_keeps_the_best_weights():
    train = table(274)
    val = TabularDataset(train.data.assign(y=-train.data.y))  # val_loss rises as training fits train
    config = TrainConfig(max_steps=2000, early_stopping_patience=3)
    model = RegressionModel(3, "identity")
    history = fit(model, train, val, config, generator=seed_everything(0), device=CPU)
    best = final_epoch(history, config)
    assert len(history) == best.epoch + 3 < Budget.plan(config, len(train)).epochs
    with torch.no_grad():
        kept = torch.nn.functional.mse_loss(model(val.X), val.y).item()
    assert kept == pytest.approx(best.val_loss, rel=1e-5)


def test_a_split_larger_than_a_block_starts_at_its_mean_from_evenly_spread_rows():
    rows = table(3 * BLOCK_ROWS + 5, mean=40.0)
    rows = TabularDataset(rows.data.sort_values("y", ignore_index=True))  # first rows: the lowest targets
    model = RegressionModel(3, "identity")
    assert start_at_the_target_mean(model, rows)
    with torch.no_grad():
        assert model(rows.X).mean().item() == pytest.approx(rows.y.mean().item(), rel=1e-3)
