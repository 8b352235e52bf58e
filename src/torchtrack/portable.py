"""Float64 math that gives the same bits on every CPU: the numbers prepare and evaluate write.

    z = matvec(X, weights) + bias; y = tanh(z) + z  # not X @ weights, not np.tanh

NumPy's np.tanh, np.sin and np.exp run different code on different CPUs (SIMD loops per
instruction set, Intel's SVML on AVX-512, the C library elsewhere), and `@` and linalg run
OpenBLAS kernels chosen by the CPU: each may differ in the last bit. Here only IEEE basic
operations appear (+ - * / sqrt, one NumPy call each, so no fused multiply-add), which every
CPU rounds the same way, in a fixed order; sums are `math.fsum`, exactly rounded. Accurate
to a few units in the last place, which the float32 splits do not see.
"""

from __future__ import annotations

import math

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


def matvec(X: np.ndarray, w: np.ndarray | list[float]) -> np.ndarray:
    """X (N, F) @ w (F,) as a sum over the columns in order, instead of a BLAS kernel."""
    X = np.asarray(X, np.float64)
    out = np.zeros(len(X))
    for j, weight in enumerate(np.asarray(w, np.float64)):
        out += X[:, j] * weight
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
    values = np.asarray(values, np.float64).reshape(-1)
    deviation = values - mean(values)
    return math.sqrt(exact_sum(deviation * deviation) / (len(values) - ddof))


def exact_sum(values: np.ndarray) -> float:
    """`math.fsum`: the exactly rounded sum, whatever the order. Where it overflows (or meets
    inf and -inf) NumPy's sum gives the inf or nan instead of an exception, the same anywhere."""
    try:
        return math.fsum(values.tolist())
    except (OverflowError, ValueError):
        return float(np.sum(values))


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
