"""Synthetic families: seeded, each made by a known rule with a known noise level."""

import numpy as np
import pytest

from torchtrack.choices import Family, names
from torchtrack.synthetic import SyntheticTruth, make_synthetic

FAMILIES = names(Family)


def residuals(frame, truth):
    return frame["y"].to_numpy() - truth.clean_target(frame.drop(columns="y").to_numpy())


@pytest.mark.parametrize("family", FAMILIES)
def test_each_family_is_seeded(family):
    first, first_truth = make_synthetic(300, 3, 0.3, seed=7, family=family)
    again, again_truth = make_synthetic(300, 3, 0.3, seed=7, family=family)
    other, _ = make_synthetic(300, 3, 0.3, seed=8, family=family)
    assert first.equals(again) and first_truth == again_truth
    assert not first.equals(other)


@pytest.mark.parametrize("family", FAMILIES)
def test_each_family_has_its_known_noise_level(family):
    frame, truth = make_synthetic(200_000, 3, 0.3, seed=1, family=family)
    noise = residuals(frame, truth)
    assert np.var(noise) == pytest.approx(truth.noise_variance, rel=0.05)


def test_noise_free_rows_follow_the_rule_exactly():
    for family in FAMILIES:
        frame, truth = make_synthetic(100, 2, 0.0, seed=0, family=family)
        np.testing.assert_allclose(residuals(frame, truth), 0.0, atol=1e-12)


def test_line_is_the_journals_y_equals_2x_plus_3():
    frame, truth = make_synthetic(500, n_features=5, noise_std=0.0, seed=0, family="line")
    assert list(frame.columns) == ["x", "y"]  # one column, whatever n_features says
    np.testing.assert_allclose(frame["y"], 2 * frame["x"] + 3)
    assert frame["x"].between(0, 10).all()


def test_linear_family_is_linear_in_every_column():
    frame, truth = make_synthetic(50, 4, 0.0, seed=3, family="linear")
    X = frame.drop(columns="y").to_numpy()
    np.testing.assert_allclose(frame["y"], X @ np.asarray(truth.weights) + truth.bias)
    assert X.shape[1] == 4


def test_scaled_tanh_uses_the_given_a_and_b():
    frame, truth = make_synthetic(
        50, 2, 0.0, seed=0, family="scaled_tanh", scaled_tanh_a=-1.5, scaled_tanh_b=0.25
    )
    z = frame.drop(columns="y").to_numpy() @ np.asarray(truth.weights) + truth.bias
    np.testing.assert_allclose(frame["y"], -1.5 * np.tanh(z) + 0.25 * z)


def test_outliers_are_a_positive_heavy_tail_on_the_given_fraction_of_rows():
    frame, truth = make_synthetic(
        100_000, 2, 0.3, seed=0, family="outliers", outlier_fraction=0.1, outlier_scale=10.0
    )
    noise = residuals(frame, truth)
    assert np.mean(noise > 5 * 0.3) == pytest.approx(0.1 * np.exp(-5 / 10), abs=0.005)
    assert np.mean(noise) == pytest.approx(0.1 * 10 * 0.3, rel=0.05)  # skewed: MSE's fit shifts up
    assert np.median(noise) == pytest.approx(0.0, abs=0.05)  # the bulk is untouched


def test_other_families_have_no_outliers():
    _, truth = make_synthetic(10, 2, 0.3, seed=0, family="tanh_plus_x", outlier_fraction=0.5)
    assert truth.outlier_fraction == 0.0 and truth.noise_variance == pytest.approx(0.09)


def test_nonlinear_family_is_not_monotone_in_z():
    frame, truth = make_synthetic(2000, 2, 0.0, seed=0, family="nonlinear")
    z = frame.drop(columns="y").to_numpy() @ np.asarray(truth.weights) + truth.bias
    order = np.argsort(z)
    steps = np.diff(frame["y"].to_numpy()[order])
    assert (steps > 0).any() and (steps < 0).any()


def test_truth_round_trips_through_json(tmp_path):
    _, truth = make_synthetic(10, 3, 0.2, seed=0, family="outliers")
    truth.save(tmp_path / "truth.json")
    assert SyntheticTruth.load(tmp_path / "truth.json") == truth


def test_unknown_family_names_the_allowed_values():
    with pytest.raises(ValueError, match="unknown synthetic family 'cubic'; allowed: tanh_plus_x, line"):
        make_synthetic(10, family="cubic")


def test_defaults_make_one_feature_float_rows():
    frame, _ = make_synthetic()
    assert list(frame.columns) == ["x0", "y"] and len(frame) == 1000


def drawn_whole(n_samples, n_features, seed, family):
    """The rows as one (N, F) draw and whole-table arithmetic make them: what make_synthetic's
    blocks of rows must give, bit for bit."""
    _, truth = make_synthetic(n_samples, n_features, 0.3, seed=seed, family=family)
    rng = np.random.default_rng(seed)
    if family == "line":
        X = rng.uniform(0.0, 10.0, (n_samples, 1))
    else:
        scales = rng.uniform(0.5, 5.0, n_features)
        offsets = rng.uniform(-3.0, 3.0, n_features)
        X = rng.standard_normal((n_samples, n_features))
        X *= scales
        X += offsets
        rng.standard_normal(n_features)  # the direction of the truth's weights
    noise = rng.normal(0.0, truth.noise_std, n_samples)
    if truth.outlier_fraction > 0:
        corrupted = rng.random(n_samples) < truth.outlier_fraction
        noise += corrupted * rng.exponential(truth.outlier_scale * truth.noise_std, n_samples)
    return X, truth.clean_target(X) + noise


@pytest.mark.parametrize("family", FAMILIES)
def test_rows_drawn_a_block_at_a_time_are_the_rows_of_one_draw(family):
    rows = 1_100_000 if family == "line" else 5_000  # past one block of 2^20 values either way
    frame, _ = make_synthetic(rows, 300, 0.3, seed=11, family=family)
    X, y = drawn_whole(rows, 300, 11, family)
    assert frame.drop(columns="y").to_numpy().tobytes() == X.tobytes()
    assert frame["y"].to_numpy().tobytes() == y.tobytes()


def test_the_clean_target_of_its_columns_one_at_a_time_is_that_of_its_rows_at_once():
    frame, truth = make_synthetic(1_100_000, 3, 0.3, seed=2)  # past one block of 2^20 rows
    features = frame.drop(columns="y")
    columns = (features[name].to_numpy() for name in features.columns)
    whole = truth.clean_target(features.to_numpy())
    assert truth.clean_target_of(columns, len(features)).tobytes() == whole.tobytes()
