"""portable: float64 math from IEEE basic operations only, close to the C library's and exact
in what it promises (fixed summation order, exactly rounded sums)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from torchtrack import portable

POINTS = np.concatenate(
    [
        np.linspace(-30.0, 30.0, 20_001),
        np.random.default_rng(0).normal(0.3, 1.5, 20_000),
        [0.0, -0.0, 1e-300, -1e-12, 1e-8, 0.5 * math.log(2), 19.999, 20.0, 21.0, -700.0],
    ]
)


def ulps(got: np.ndarray, want: np.ndarray) -> float:
    """The largest error in units of the last place of the expected values."""
    return float(np.max(np.abs(got - want) / np.spacing(np.maximum(np.abs(want), 1e-300))))


def test_exp_is_within_a_few_units_in_the_last_place_of_the_c_library():
    x = POINTS[np.abs(POINTS) < 700]
    assert ulps(portable.exp(x), np.array([math.exp(v) for v in x])) <= 4


def test_tanh_matches_the_c_library_to_rounding_and_saturates_at_one():
    want = np.array([math.tanh(v) for v in POINTS])
    got = portable.tanh(POINTS)
    assert np.max(np.abs(got - want)) <= 4 * np.spacing(1.0)  # absolute: 1 - 2/(e^2x + 1) near 0
    assert portable.tanh(np.array([25.0, -25.0])).tolist() == [1.0, -1.0]
    assert math.copysign(1.0, portable.tanh(np.array([-0.0]))[0]) == -1.0  # odd, down to the sign of 0


def test_sin_matches_the_c_library_to_rounding_in_every_quadrant():
    x = np.concatenate([POINTS, 2 * POINTS, np.arange(-64, 65) * math.pi / 4])
    want = np.array([math.sin(v) for v in x])
    assert np.max(np.abs(portable.sin(x) - want)) <= 4 * np.spacing(1.0)


def test_matvec_sums_the_columns_in_order():
    rng = np.random.default_rng(1)
    X, w = rng.normal(size=(500, 7)), rng.normal(size=7)
    in_order = X[:, 0] * w[0]
    for j in range(1, 7):
        in_order = in_order + X[:, j] * w[j]
    assert portable.matvec(X, w).tobytes() == in_order.tobytes()
    assert portable.matvec(X, w) == pytest.approx(X @ w, rel=1e-12)


def test_sums_are_exactly_rounded_so_order_cannot_change_them():
    values = np.array([1e16, 1.0, -1e16, 3.0])  # a plain left-to-right sum loses the 1.0
    assert portable.mean(values) == 1.0
    assert portable.dot(values, np.ones(4)) == 4.0
    shuffled = np.random.default_rng(2).normal(size=10_001) * 1e6
    assert portable.mean(shuffled) == portable.mean(shuffled[::-1])


def test_a_sum_of_more_values_than_a_piece_is_fsum_of_them_all():
    values = np.random.default_rng(5).normal(size=portable.PIECE_VALUES + 3)
    values[1::2] *= 1e16  # cancellations that a sum piece by piece would lose
    values[-3:] = [1e16 * 1e16, 1.0, -1e32]
    assert portable.exact_sum(values) == math.fsum(values.tolist())


def test_mean_and_std_agree_with_numpy():
    values = np.random.default_rng(3).normal(5.0, 2.0, 9_999)
    assert portable.mean(values) == pytest.approx(values.mean(), rel=1e-14)
    assert portable.std(values) == pytest.approx(values.std(), rel=1e-12)
    assert portable.std(values, ddof=1) == pytest.approx(values.std(ddof=1), rel=1e-12)


def test_mean_and_std_of_more_values_than_a_piece_are_those_of_the_whole():
    values = np.random.default_rng(4).normal(3.0, 2.0, portable.PIECE_VALUES + 12_345)
    deviation = values - math.fsum(values) / len(values)
    want = math.sqrt(math.fsum(deviation * deviation) / (len(values) - 1))
    assert portable.mean_std(values, ddof=1) == (math.fsum(values) / len(values), want)


def median_cases():
    """Columns np.median is asked of: sizes around the sample's, gaps, ties, order, zeros."""
    rng = np.random.default_rng(9)
    big = rng.normal(2.0, 3.0, 4 * portable.MEDIAN_SAMPLE + 7)
    gappy = big.copy()
    gappy[rng.random(len(big)) < 0.3] = np.nan
    return {
        "one": np.array([4.5]),
        "two": np.array([3.0, -1.0]),
        "odd": rng.normal(size=101),
        "even large": big[:-1],
        "odd large": big,
        "gaps": gappy,
        "sorted": np.sort(big),
        "reversed": np.sort(big)[::-1].copy(),
        "few values": rng.integers(0, 5, len(big)).astype(np.float64),
        "constant": np.full(1000, 7.25),
        "zeros of both signs": np.array([-0.0, 0.0, 0.0, -0.0, 1.0]),
        "middle zero": np.concatenate([-np.arange(1.0, 500.0), [-0.0], np.arange(1.0, 500.0)]),
        "periodic": np.tile(np.arange(64.0), len(big) // 64),
        "huge": np.array([1.7e308, 1.7e308, 1.0, 1.7e308]),
    }


@pytest.mark.parametrize("name", list(median_cases()))
def test_median_is_numpys_of_the_values_that_are_not_nan_bit_for_bit(name):
    values = median_cases()[name]
    before = values.copy()
    want = np.median(values[~np.isnan(values)])
    assert np.array([portable.median(values)]).tobytes() == np.array([want]).tobytes()
    assert values.tobytes() == before.tobytes()  # read, not reordered


def test_sums_that_overflow_give_inf_or_nan_as_numpy_does():
    assert portable.dot(np.array([1e200, 1e200]), np.array([1e200, 1e200])) == math.inf
    assert math.isnan(portable.dot(np.array([1e200, -1e200]), np.array([1e200, 1e200])))
    assert portable.mean(np.array([1e308, 1e308])) == math.inf  # as NumPy's mean, not an exception


@pytest.mark.parametrize(
    "scale",
    [1.0, 10.0 ** np.arange(-290, 290, 7)[:, None], 5e-324],  # ordinary, exponents far apart, subnormal
    ids=["ordinary", "wide", "subnormal"],
)
def test_exact_sums_are_fsum_of_every_value_however_the_rows_are_chunked(scale):
    rng = np.random.default_rng(4)
    values = rng.normal(size=(83, 3)) * scale  # (83, 3)
    values = np.concatenate([values, values * -1e16, values * 1e16])  # cancellations
    want = [math.fsum(values[:, j].tolist()) for j in range(3)]
    for cuts in ([], [7, 14, 21], list(range(1, len(values)))):
        sums = portable.ExactSums(3)
        for chunk in np.split(values, cuts):
            sums.add(chunk)
        assert sums.totals() == want


def test_exact_sums_of_zeros_subnormals_and_far_exponents_mixed_are_fsum_in_any_pieces(monkeypatch):
    """Each piece is summed over the exponents it spans (zeros at its top one): pieces of a few
    rows each span other exponents, and the totals are still fsum's."""
    monkeypatch.setattr(portable, "SUM_PIECE_VALUES", 12)
    rng = np.random.default_rng(7)
    values = rng.normal(size=(500, 4)) * 10.0 ** rng.integers(-300, 300, size=(500, 4))
    values[rng.random((500, 4)) < 0.3] = 0.0
    values[rng.random((500, 4)) < 0.05] *= 1e-310  # subnormal, or zero
    sums = portable.ExactSums(4)
    for chunk in np.array_split(values, 9):
        sums.add(chunk)
    assert sums.totals() == [math.fsum(values[:, j].tolist()) for j in range(4)]


def test_exact_sums_of_one_column_take_flat_chunks_and_start_at_zero():
    sums = portable.ExactSums()
    assert sums.totals() == [0.0]
    sums.add(np.array([1e16, 1.0]))
    sums.add(np.array([-1e16, 3.0]))
    assert sums.totals() == [4.0]


def test_exact_sums_that_overflow_give_inf_or_nan_as_numpy_does():
    sums = portable.ExactSums(3)
    sums.add(np.array([[1e308, math.inf, 1.0], [1e308, -math.inf, math.nan]]))
    total, opposite_infinities, with_nan = sums.totals()
    assert total == math.inf
    assert math.isnan(opposite_infinities) and math.isnan(with_nan)
