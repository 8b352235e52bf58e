"""The model against the least-squares baseline that evaluate scores beside it: a model that
cannot beat the best straight line through the same features has not fitted, and says so.

    warning = least_squares_warning(metrics["test_mse"], metrics["test_mse_least_squares"])
"""

from __future__ import annotations

WORSE_TAG = "torchtrack.worse_than_least_squares"  # on the model run when it is; the warning's text
ADVICE = (
    "try a larger train.max_steps, model.activation learnable_tanh_plus_x or identity (which hold "
    "the least-squares line) with train.least_squares_line true, or see docs/training-recipe.md"
)


# The model predicts in float32, the baseline in float64: a model that is the least-squares
# line (least_squares_line.py) lands within a few 1e-7 of it, on either side.
SAME_FIT = 1e-6  # relative: a test MSE this close to least squares' is the same fit


def no_worse_than_least_squares(test_mse: float, least_squares_mse: float) -> bool:
    """Whether the model's test MSE is at most least squares', to float32's resolution (SAME_FIT)."""
    return test_mse <= least_squares_mse * (1 + SAME_FIT)


def least_squares_warning(test_mse: float, least_squares_mse: float) -> str | None:
    """One line saying by how much the model's test MSE is worse than least squares' on the
    same rows, and what to try; None when the model is as good or better (`no_worse_than_least_squares`)."""
    if no_worse_than_least_squares(test_mse, least_squares_mse):
        return None
    if least_squares_mse > 0:
        by = f"{test_mse / least_squares_mse - 1:.1%} worse than"
    else:  # least squares fits the test rows exactly: no ratio to give
        by = "worse than"
    return (
        f"the model's test MSE {test_mse:.6g} is {by} the least-squares baseline's "
        f"{least_squares_mse:.6g} on the same rows; {ADVICE}"
    )
