"""Backtrader's indicators as numpy arrays, equal to Backtrader's line arrays bit for bit.

Each function follows the installed Backtrader's `once()` code path (the runner
runs with `runonce=True`), operation by operation, because a twin's signals are
comparisons (`fast > slow`, `close < bot`) and one ulp flips a near tie:

- `sma`: `Average.once`: math.fsum(window) / period (see `exact_sum`).
- `rsi`: `UpDay`/`DownDay` = max(+-(close[t] - close[t-1]), 0.0); Wilder's smoothing is
  `ExponentialSmoothing` with alpha = 1.0 / period: seeded at index `period` with
  math.fsum(x[1 : period + 1]) / period, then prev * (1.0 - alpha) + x * alpha;
  `DivZeroByZero(up, down)` with RSI 100 for x/0 and 50 for 0/0 (`safediv=True`);
  rsi = 100.0 - 100.0 / (1.0 + rs).
- `bollinger`: mid = SMA; `StandardDeviation(safepow=True)`: pow(abs(SMA(pow(c, 2)) -
  pow(mid, 2)), 0.5); bot = mid - devs * sd. The powers go through CPython's float
  `**` (the C library's `pow`, as in Backtrader), not numpy's or LLVM's rewrites.
- `highest_before` / `lowest_before`: `Highest(high(-1), n)`: the max of the n values
  before bar t (bar t excluded); first value at index n.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from kubetrader.vectorized.exact_sum import rolling_mean


def sma(close: np.ndarray, period: int) -> np.ndarray:
    """Simple moving average (first value at index period - 1)."""
    return rolling_mean(close, period)


@njit(cache=True)
def _wilder(x: np.ndarray, seed: float, period: int) -> np.ndarray:
    n = x.shape[0]
    out = np.full(n, np.nan)
    if period >= n:
        return out
    alpha = 1.0 / period
    alpha1 = 1.0 - alpha
    prev = seed
    out[period] = prev
    for i in range(period + 1, n):
        prev = prev * alpha1 + x[i] * alpha
        out[i] = prev
    return out


@njit(cache=True)
def _rsi_from(up: np.ndarray, down: np.ndarray) -> np.ndarray:
    n = up.shape[0]
    out = np.full(n, np.nan)
    for i in range(n):
        a = up[i]
        b = down[i]
        if math.isnan(a) or math.isnan(b):
            continue
        # b == 0: safelow (RSI 50) is rs 1.0 for 0/0, safehigh (RSI 100) is rs inf for x/0
        rs = (1.0 if a == 0.0 else math.inf) if b == 0.0 else a / b
        out[i] = 100.0 - 100.0 / (1.0 + rs)
    return out


def rsi(close: np.ndarray, period: int) -> np.ndarray:
    """Wilder's RSI with Backtrader's seed and safediv (first value at index `period`)."""
    c = np.ascontiguousarray(close, dtype=np.float64)
    n = c.shape[0]
    change = np.full(n, np.nan)
    change[1:] = c[1:] - c[:-1]
    up = np.full(n, np.nan)
    down = np.full(n, np.nan)
    # Backtrader's Max(d, 0.0) is Python's max: d when d > 0.0, else 0.0 (d, not -0.0, for d == 0.0).
    up[1:] = np.where(change[1:] > 0.0, change[1:], np.where(change[1:] == 0.0, change[1:], 0.0))
    neg = np.full(n, np.nan)
    neg[1:] = c[:-1] - c[1:]
    down[1:] = np.where(neg[1:] > 0.0, neg[1:], np.where(neg[1:] == 0.0, neg[1:], 0.0))
    if period >= n:
        return np.full(n, np.nan)
    seed_up = math.fsum(up[1 : period + 1].tolist()) / period
    seed_down = math.fsum(down[1 : period + 1].tolist()) / period
    return _rsi_from(_wilder(up, seed_up, period), _wilder(down, seed_down, period))


def _py_pow(values: np.ndarray, exponent: float | int) -> np.ndarray:
    """Elementwise CPython `x ** exponent` (the C library's pow), NaN kept."""
    return np.array([x**exponent for x in values.tolist()], dtype=np.float64)


def squares(close: np.ndarray) -> np.ndarray:
    """pow(close, 2) as Backtrader computes it (shared by every Bollinger period)."""
    return _py_pow(np.asarray(close, dtype=np.float64), 2)


def bollinger(
    close: np.ndarray, period: int, devs: float, close_squared: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(mid, bot) of Backtrader's BollingerBands (first value at index period - 1)."""
    c = np.asarray(close, dtype=np.float64)
    mid = rolling_mean(c, period)
    sq = close_squared if close_squared is not None else squares(c)
    meansq = rolling_mean(sq, period)
    sd = _py_pow(np.abs(meansq - _py_pow(mid, 2)), 0.5)
    return mid, mid - devs * sd


@njit(cache=True)
def _extreme_before(values: np.ndarray, period: int, highest: bool) -> np.ndarray:
    n = values.shape[0]
    out = np.full(n, np.nan)
    for i in range(period, n):
        best = values[i - period]
        for j in range(i - period + 1, i):
            v = values[j]
            if (v > best) if highest else (v < best):
                best = v
        out[i] = best
    return out


def highest_before(high: np.ndarray, period: int) -> np.ndarray:
    """max(high[t - period] .. high[t - 1]); NaN before index `period`."""
    return _extreme_before(np.ascontiguousarray(high, dtype=np.float64), int(period), True)


def lowest_before(low: np.ndarray, period: int) -> np.ndarray:
    """min(low[t - period] .. low[t - 1]); NaN before index `period`."""
    return _extreme_before(np.ascontiguousarray(low, dtype=np.float64), int(period), False)
