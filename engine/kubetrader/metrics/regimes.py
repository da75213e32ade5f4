"""How the strategy did in market regimes: trend of the benchmark, and its own volatility.

Each return day is put in a regime by what was known at the close of the day
before (no look-ahead: the regime in force while the return was earned). Days
for which the regime is not yet known (too little history) are in neither.
For each regime: the compounded return over its days and the annualised
Sharpe ratio of those days (None with fewer than two days or no spread).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from kubetrader.metrics.returns import compounded, sharpe

TREND_WINDOW = 200  # days in the benchmark's moving average
VOL_WINDOW = 21  # days in the rolling volatility (one trading month)


class RegimeStats(NamedTuple):
    ret: float | None
    sharpe: float | None


def regime_stats(r: np.ndarray, mask: np.ndarray, periods_per_year: int) -> RegimeStats:
    """Compounded return and Sharpe ratio of the days in `mask`."""
    if not mask.any():
        return RegimeStats(None, None)
    days = r[mask]
    return RegimeStats(compounded(days), sharpe(days, periods_per_year))


def trend_masks(b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(bull, bear) masks over the return days from benchmark returns `b` (NaN before it starts).

    The benchmark price is rebuilt as prod(1 + b) from its first observed
    return (gaps later count as flat). Its 200-day simple moving average is
    known from the 200th observed price on. Day t is bull when the price at
    t - 1 is above the average at t - 1, bear when at or below it.
    """
    m = b.size
    bull = np.zeros(m, dtype=bool)
    bear = np.zeros(m, dtype=bool)
    observed = np.flatnonzero(np.isfinite(b))
    if observed.size == 0:
        return bull, bear
    start = int(observed[0])
    price = np.cumprod(1.0 + np.nan_to_num(b[start:], nan=0.0))
    if price.size < TREND_WINDOW:
        return bull, bear
    csum = np.concatenate(([0.0], np.cumsum(price)))
    average = (csum[TREND_WINDOW:] - csum[:-TREND_WINDOW]) / TREND_WINDOW  # at price index TREND_WINDOW-1 ..
    above = price[TREND_WINDOW - 1 :] > average
    # price index k (return day start + k) decides return day start + k + 1
    first = start + TREND_WINDOW
    bull[first:] = above[: m - first]
    bear[first:] = ~above[: m - first]
    return bull, bear


def volatility_masks(r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(high, low) masks over the return days from the strategy's own rolling volatility.

    The 21-day rolling standard deviation (ddof=1) of the returns up to day
    t - 1 decides day t: high when above the median of all such values, low
    when at or below it (so the two halves are as equal as ties allow).
    """
    m = r.size
    high = np.zeros(m, dtype=bool)
    low = np.zeros(m, dtype=bool)
    if m <= VOL_WINDOW:
        return high, low
    vol = sliding_window_view(r[:-1], VOL_WINDOW).std(axis=1, ddof=1)  # decides days VOL_WINDOW .. m-1
    median = np.median(vol)
    high[VOL_WINDOW:] = vol > median
    low[VOL_WINDOW:] = vol <= median
    return high, low
