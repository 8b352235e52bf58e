"""Float64 math that gives the same bits on every CPU: the numbers prepare and evaluate write.

    z = matvec(X, weights) + bias; y = tanh(z) + z  # not X @ weights, not np.tanh

NumPy's np.tanh, np.sin and np.exp run different code on different CPUs (SIMD loops per
instruction set, Intel's SVML on AVX-512, the C library elsewhere), and `@` and linalg run
OpenBLAS kernels chosen by the CPU: each may differ in the last bit. Here only IEEE basic
operations appear (+ - * / sqrt, one NumPy call each, so no fused multiply-add), which every
CPU rounds the same way, in a fixed order; sums are `math.fsum`, exactly rounded (and
`ExactSums` carries such sums across chunks of a stream). Accurate to a few units in the last
place, which the float32 splits do not see.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable

import numpy as np

# exp: x = k ln2 + r, |r| <= ln2 / 2; ln2 in two parts, the first with trailing zero bits, so
# that k * LN2_HI is exact (fdlibm's split).
LN2_HI = 6.93147180369123816490e-01
LN2_LO = 1.90821492927058770002e-10
EXP_TERMS = [1.0 / math.factorial(n) for n in range(14)]  # Taylor to r^13: error < 1e-17 at ln2/2

# sin: x = k pi/2 + r, |r| <= pi/4, pi/2 in three parts of 33 bits each (fdlibm's split).
PIO2 = (1.57079632673412561417e00, 6.07710050630396597660e-11, 2.02226624871116645580e-21)
SIN_TERMS = [(-1) ** n / math.factorial(2 * n + 1) for n in range(11)]  # to r^21
COS_TERMS = [(-1) ** n / math.factorial(2 * n) for n in range(11)]  # to r^20
TANH_SATURATES = 20.0  # tanh(20) is 1 - 8e-18: 1.0 in float64

# ExactSums: a finite float64 is a fraction times 2^e, 0.5 <= |fraction| < 1 and e from
# LOWEST_EXPONENT (the subnormals) to 1024, so M * 2^(e - 53) with an integer |M| < 2^53.
MANTISSA_BITS = 53
STORED_BITS = 52  # a float64's stored mantissa bits, below its 11 exponent bits
STORED_MANTISSA = (1 << STORED_BITS) - 1
EXPONENT_FIELD = (1 << 11) - 1
EXPONENT_BIAS = 1022  # frexp's exponent of a normal float64: its exponent field less this
LOWEST_EXPONENT = -1073
EXPONENTS = 1024 - LOWEST_EXPONENT + 1
HALF_BITS = 26  # M = high * 2^26 + low: 2^26 halves of either kind sum below 2^53, exactly in float64
FLUSH_ROWS = 1 << HALF_BITS  # rows added between moves of the float64 bucket sums into Python integers
PIECE_VALUES = 1 << 20  # values split at a time: bounds the temporaries at a few tens of MB
MEDIAN_SAMPLE = 1 << 16  # values of a column sampled to bracket its median
# ExactSums' values split at a time: each temporary 1 MB, kept in the CPU's caches, where 2^20
# values a temporary meet freshly mapped pages each time (2-3x slower per value)
SUM_PIECE_VALUES = 1 << 17


def matvec(X: np.ndarray, w: np.ndarray | list[float]) -> np.ndarray:
    """X (N, F) @ w (F,) as a sum over the columns in order, instead of a BLAS kernel."""
    X = np.asarray(X, np.float64)
    return matvec_columns(X.T, w, len(X))


def matvec_columns(columns: Iterable[np.ndarray], w: np.ndarray | list[float], rows: int) -> np.ndarray:
    """`matvec` of the F columns of X, (N,) each, given one at a time in order: the same sums,
    without X whole in memory."""
    out = np.zeros(rows)
    for values, weight in zip(columns, np.asarray(w, np.float64), strict=True):
        out += np.asarray(values, np.float64) * weight
    return out  # (N,)


def dot(a: np.ndarray, b: np.ndarray) -> float:
    """a . b for vectors, the products summed exactly rounded."""
    return exact_sum(np.asarray(a, np.float64) * np.asarray(b, np.float64))


def mean(values: np.ndarray) -> float:
    """The mean, its sum exactly rounded."""
    values = np.asarray(values, np.float64).reshape(-1)
    return exact_sum(values) / len(values)


def std(values: np.ndarray, ddof: int = 0) -> float:
    """The standard deviation (numpy's with this `ddof`), its sums exactly rounded."""
    return mean_std(values, ddof)[1]


def mean_std(values: np.ndarray, ddof: int = 0) -> tuple[float, float]:
    """`mean` and `std` of `values`, the mean summed once for both; the squared deviations
    made a piece at a time, not as a temporary of the column's size."""
    values = np.asarray(values, np.float64).reshape(-1)
    centre = mean(values)

    def squared_deviations(part: np.ndarray) -> np.ndarray:
        deviation = part - centre
        deviation *= deviation  # in place: one temporary, not two
        return deviation

    return centre, math.sqrt(_exact_sum_of(values, squared_deviations) / (len(values) - ddof))


def exact_sum(values: np.ndarray) -> float:
    """`math.fsum`: the exactly rounded sum, whatever the order. Where it overflows (or meets
    inf and -inf) NumPy's sum gives the inf or nan instead of an exception, the same anywhere."""
    return _exact_sum_of(values.reshape(-1), lambda part: part)


def _exact_sum_of(flat: np.ndarray, term: Callable[[np.ndarray], np.ndarray]) -> float:
    """`exact_sum` of `term` of the values of `flat`, `term` taken a piece at a time and the
    piece's values as Python floats (a list of a whole column's is ~30 bytes a row); NumPy's sum
    of `term(flat)` where `math.fsum` overflows or meets inf and -inf."""
    try:
        pieces = (
            term(flat[start : start + PIECE_VALUES]).tolist() for start in range(0, len(flat), PIECE_VALUES)
        )
        return math.fsum(itertools.chain.from_iterable(pieces))
    except (OverflowError, ValueError):
        return float(np.sum(term(flat)))


def median(values: np.ndarray) -> float:
    """`np.median` of the values that are not NaN, the same bits, without partitioning a copy of
    them all: a strided sample brackets the middle ranks, one pass counts the values below the
    bracket and gathers those in it, and only those are partitioned. Where the bracket misses
    (data ordered against the sample) or the middle value is a zero (-0.0 and 0.0 compare equal,
    so which one `np.partition` puts there is its own), the copy is partitioned after all."""
    flat = np.asarray(values, np.float64).reshape(-1)
    pieces = [flat[start : start + PIECE_VALUES] for start in range(0, len(flat), PIECE_VALUES)]
    count = len(flat) - sum(int(np.isnan(piece).sum()) for piece in pieces)
    middle = sorted({(count - 1) // 2, count // 2})  # np.median's ranks: one, or the two it averages
    sample = flat[:: max(1, len(flat) // MEDIAN_SAMPLE)]
    sample = np.sort(sample[~np.isnan(sample)])
    if count and len(sample):
        margin = 4 * math.isqrt(len(sample)) + 1  # ~4 standard deviations of a sample's rank
        lowest = sample[max(0, middle[0] * len(sample) // count - margin)]
        highest = sample[min(len(sample) - 1, middle[-1] * len(sample) // count + margin)]
        below = sum(int(np.count_nonzero(piece < lowest)) for piece in pieces)
        inside = np.concatenate([piece[(piece >= lowest) & (piece <= highest)] for piece in pieces])
        ranks = [rank - below for rank in middle]
        if ranks[0] >= 0 and ranks[-1] < len(inside):
            inside.partition(ranks)
            picked = inside[ranks]
            if picked.all():  # no zero
                return float(np.mean(picked))
    return float(np.median(flat[~np.isnan(flat)], overwrite_input=True))


class ExactSums:
    """Running sums of `width` columns over chunks of rows, kept exactly, so that `totals()` is
    each column's exactly rounded sum, the one `math.fsum` of all its values gives: the same
    bits however the rows were cut into chunks, and in whatever order.

        sums = ExactSums(2)
        for chunk in chunks:  # (N, 2) each
            sums.add(chunk)
        a, b = sums.totals()

    Vectorized: each value is split, from its bits, into its exponent and two halves of its
    integer mantissa, and the halves are summed per (column, exponent) by `np.bincount` in
    float64, exact while the sums stay below 2^53; now and then those bucket sums move into
    Python integers. As with
    `exact_sum`, an inf or nan gives NumPy's sum.
    """

    def __init__(self, width: int = 1):
        self.width = width
        self._exact = [0] * width  # per column: the flushed sum, in units of 2^(LOWEST_EXPONENT - 53)
        self._high = np.zeros((width, EXPONENTS))  # per column and exponent: sums of the halves
        self._low = np.zeros((width, EXPONENTS))
        self._rows = 0  # added since the last flush
        self._special = np.zeros(width)  # per column: the sum of its inf and nan values, 0.0 if none

    def add(self, values: np.ndarray) -> None:
        """Add a chunk of rows: (N, width), or (N,) when width is 1."""
        values = np.asarray(values, np.float64).reshape(-1, self.width)
        step = max(1, SUM_PIECE_VALUES // self.width)
        for start in range(0, len(values), step):
            piece = values[start : start + step]
            if self._rows + len(piece) > FLUSH_ROWS:
                self._flush()
            self._add(piece)
            self._rows += len(piece)

    def _add(self, values: np.ndarray) -> None:
        finite = np.isfinite(values)
        if not finite.all():
            with np.errstate(invalid="ignore"):  # inf - inf: nan, as NumPy's sum gives, without a warning
                self._special += np.where(finite, 0.0, values).sum(axis=0)
            values = np.where(finite, values, 0.0)
        # Each value as mantissa * 2^(exponent - 53), read from its bits: a normal number's 52
        # stored bits and its hidden one with its exponent (as frexp gives it), a subnormal's
        # stored bits with the smallest exponent.
        bits = np.ascontiguousarray(values).view(np.int64)  # (N, width)
        field = (bits >> STORED_BITS) & EXPONENT_FIELD  # the biased exponent; 0: zero or subnormal
        mantissa = bits & STORED_MANTISSA
        mantissa |= (field != 0).astype(np.int64) << STORED_BITS
        sign = bits >> 63  # 0, or -1 (all bits set) where negative
        mantissa ^= sign
        mantissa -= sign  # negated where negative: ~m + 1
        exponent = np.maximum(field, 1) - EXPONENT_BIAS
        nonzero = mantissa != 0
        if not nonzero.any():
            return
        # Sum into the exponents this piece spans only (zeros counted at its top exponent, where
        # they add nothing): a piece's values lie within a few dozen exponents, not all 2098.
        top = int(exponent.max(where=nonzero, initial=LOWEST_EXPONENT))
        bottom = int(exponent.min(where=nonzero, initial=top))
        span = top - bottom + 1
        bucket = np.where(nonzero, exponent, top) - bottom + np.arange(self.width) * span  # column-major
        high = mantissa >> HALF_BITS  # rounds down, negative mantissas too
        low = mantissa - (high << HALF_BITS)  # 0 <= low < 2^26
        size = self.width * span
        window = slice(bottom - LOWEST_EXPONENT, top - LOWEST_EXPONENT + 1)
        self._high[:, window] += np.bincount(bucket.ravel(), high.ravel(), size).reshape(self.width, span)
        self._low[:, window] += np.bincount(bucket.ravel(), low.ravel(), size).reshape(self.width, span)

    def _flush(self) -> None:
        for column in range(self.width):
            used = np.flatnonzero((self._high[column] != 0.0) | (self._low[column] != 0.0))
            highs, lows = self._high[column, used].tolist(), self._low[column, used].tolist()
            for offset, high, low in zip(used.tolist(), highs, lows, strict=True):
                self._exact[column] += ((int(high) << HALF_BITS) + int(low)) << offset
        self._high[:] = 0.0
        self._low[:] = 0.0
        self._rows = 0

    def totals(self) -> list[float]:
        """Each column's sum so far, exactly rounded (Python's int division rounds correctly)."""
        self._flush()
        unit = 1 << (MANTISSA_BITS - LOWEST_EXPONENT)  # the integers count units of 1 / unit
        totals = []
        for exact, special in zip(self._exact, self._special.tolist(), strict=True):
            try:
                total = exact / unit
            except OverflowError:  # past the largest float64: inf, as NumPy's sum gives
                total = math.inf if exact > 0 else -math.inf
            totals.append(total + special)
        return totals


def exp(x: np.ndarray) -> np.ndarray:
    """e^x for |x| < 700, elementwise."""
    x = np.asarray(x, np.float64)
    k = np.rint(x / LN2_HI)
    r = (x - k * LN2_HI) - k * LN2_LO
    return np.ldexp(_horner(r, EXP_TERMS), k.astype(np.int64))


def tanh(x: np.ndarray) -> np.ndarray:
    """tanh(x) elementwise, from `exp`: 1 - 2 / (e^2|x| + 1), with x's sign."""
    x = np.asarray(x, np.float64)
    size = np.minimum(np.abs(x), TANH_SATURATES)
    return np.copysign(1.0 - 2.0 / (exp(2.0 * size) + 1.0), x)


def sin(x: np.ndarray) -> np.ndarray:
    """sin(x) elementwise, for |x| < 1e9 (k below stays exact in float64 products)."""
    x = np.asarray(x, np.float64)
    k = np.rint(x / PIO2[0])
    r = ((x - k * PIO2[0]) - k * PIO2[1]) - k * PIO2[2]  # (N,), |r| <= pi/4 and a hair
    r2 = r * r
    sin_r, cos_r = r * _horner(r2, SIN_TERMS), _horner(r2, COS_TERMS)
    quadrant = k.astype(np.int64) % 4
    return np.where(quadrant % 2 == 0, sin_r, cos_r) * np.where(quadrant >= 2, -1.0, 1.0)


def _horner(x: np.ndarray, coefficients: list[float]) -> np.ndarray:
    """sum(c_n x^n) by Horner's rule, one multiply and one add per term, in this order."""
    result = np.full_like(x, coefficients[-1])
    for c in reversed(coefficients[:-1]):
        result *= x
        result += c
    return result
