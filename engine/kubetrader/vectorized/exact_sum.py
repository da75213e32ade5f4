"""Rolling means that equal Backtrader's `Average` bit for bit.

Backtrader's SMA (and the seed of its Wilder/EMA smoothing) is
`math.fsum(window) / period`: the correctly rounded sum of the window. A cumulative
sum difference is off by a few ulps, which flips `fast > slow` on near ties, so the
twins use an exact rolling sum instead: Shewchuk's non-overlapping partials (the
algorithm behind CPython's `math.fsum`) updated with the entering value and the
negated leaving value. The partials always hold the exact sum of the window, and the
final rounding is CPython's (`Modules/mathmodule.c`, `math_fsum`), half-even across
partials included, so the result is the same double as `math.fsum(window)`.

Values before the first full window are NaN, as in Backtrader's line arrays.
"""

from __future__ import annotations

import numpy as np
from numba import njit

# Non-overlapping partials of doubles never exceed ~40 (2098 exponent bits / 53); room to spare.
_CAPACITY = 96


@njit(cache=True)
def _add(partials: np.ndarray, count: int, x: float) -> int:
    """CPython's inner fsum loop: fold `x` into the partials; returns the new count."""
    i = 0
    for j in range(count):
        y = partials[j]
        if abs(x) < abs(y):
            x, y = y, x
        hi = x + y
        lo = y - (hi - x)
        if lo != 0.0:
            partials[i] = lo
            i += 1
        x = hi
    if x != 0.0:
        partials[i] = x
        i += 1
    return i


@njit(cache=True)
def _round(partials: np.ndarray, count: int) -> float:
    """CPython's final step: the correctly rounded value of the partials' exact sum."""
    n = count
    if n == 0:
        return 0.0
    n -= 1
    hi = partials[n]
    lo = 0.0
    while n > 0:
        x = hi
        n -= 1
        y = partials[n]
        hi = x + y
        lo = y - (hi - x)
        if lo != 0.0:
            break
    if n > 0 and ((lo < 0.0 and partials[n - 1] < 0.0) or (lo > 0.0 and partials[n - 1] > 0.0)):
        y = lo * 2.0
        x = hi + y
        if y == x - hi:
            hi = x
    return hi


@njit(cache=True)
def rolling_fsum(values: np.ndarray, period: int, first: int) -> np.ndarray:
    """out[i] = math.fsum(values[i - period + 1 : i + 1]) for i >= first + period - 1, NaN before.

    `first` is the index of the first valid value (values before it are ignored).
    """
    n = values.shape[0]
    out = np.full(n, np.nan)
    partials = np.zeros(_CAPACITY)
    count = 0
    for i in range(first, n):
        count = _add(partials, count, values[i])
        if i - period >= first:
            count = _add(partials, count, -values[i - period])
        if i >= first + period - 1:
            out[i] = _round(partials, count)
    return out


def rolling_mean(values: np.ndarray, period: int, first: int = 0) -> np.ndarray:
    """Backtrader's `Average`: math.fsum(window) / period, NaN before the first full window."""
    if period < 1:
        raise ValueError(f"period must be >= 1, got {period}")
    return rolling_fsum(np.ascontiguousarray(values, dtype=np.float64), int(period), int(first)) / period
