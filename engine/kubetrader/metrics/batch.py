"""Headline metrics of many equity curves at once, for parameter screening.

A sweep that evaluates thousands of parameter sets on the same dates can
compute their equity curves as one 2-D array; this module scores them with
no Python loop per curve. Each value equals what `compute_metrics` returns for
that row (same formulas, same conventions); where `compute_metrics` says None
(undefined) the array holds NaN.

The day-axis reductions (returns' mean, std, downside deviation, maximum
drawdown) run in one numba pass per row (`_batch_kernel`: numpy's pairwise sums,
so the same doubles, and no (rows, days) temporaries) when numba is installed, in
numpy otherwise.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from kubetrader.metrics._numbers import TINY_STD

if TYPE_CHECKING:
    import pandas as pd

BATCH_METRICS: tuple[str, ...] = (
    "total_return",
    "cagr",
    "annual_volatility",
    "sharpe_ratio",
    "sortino_ratio",
    "max_drawdown",
    "calmar_ratio",
)


def _calendar_days(dates: pd.DatetimeIndex | np.ndarray) -> float:
    """Calendar days from the first to the last date (local wall time for tz-aware dates)."""
    import pandas as pd

    index = pd.DatetimeIndex(dates)
    if index.tz is not None:
        index = index.tz_localize(None)
    return float((index[-1] - index[0]) / pd.Timedelta(days=1))


def _divide(numerator: np.ndarray, denominator: np.ndarray, defined: np.ndarray) -> np.ndarray:
    """numerator / denominator where `defined`, NaN elsewhere (without warnings for the rest)."""
    out = np.full(numerator.shape, np.nan)
    np.divide(numerator, denominator, out=out, where=defined)
    return out


def compute_metrics_batch(
    equity: np.ndarray,
    dates: pd.DatetimeIndex | np.ndarray,
    *,
    periods_per_year: int = 252,
) -> dict[str, np.ndarray]:
    """BATCH_METRICS for each row of `equity` (shape (n_sets, n_days)), all rows on the same `dates`.

    Returns one float64 array of length n_sets per metric; NaN where the metric
    is undefined for that row (zero volatility, no drawdown for Calmar, ...).
    """
    values = np.asarray(equity, dtype=np.float64)
    if values.ndim != 2:
        raise ValueError(f"equity must have shape (n_sets, n_days), got {values.shape}")
    n_sets, n_days = values.shape
    if n_days != len(dates):
        raise ValueError(f"equity has {n_days} days but dates has {len(dates)}")
    if n_days == 0 or not np.isfinite(values).all():
        raise ValueError("equity must be non-empty and finite")

    if not values.flags.c_contiguous:
        values = np.ascontiguousarray(values)

    first = values[:, 0]
    last = values[:, -1]
    nan = np.full(n_sets, np.nan)
    total_return = _divide(last - first, first, first != 0)

    days = _calendar_days(dates)
    growth_defined = (first > 0) & (last >= 0) & (days > 0)
    growth = _divide(last, first, growth_defined)
    # Python's float ** (the C library's pow, as `compute_metrics`), not numpy's SIMD power: the same doubles.
    exponent = 365.25 / days if days > 0 else math.nan
    cagr = np.array([g**exponent - 1.0 for g in growth.tolist()]) if days > 0 else nan

    n = n_days - 1
    root = np.sqrt(periods_per_year)
    if n < 1:
        max_drawdown = values[:, 0] / values[:, 0] - 1.0  # one day: at its peak (NaN for a zero curve)
        calmar = _divide(cagr, np.abs(max_drawdown), np.isfinite(cagr) & (max_drawdown != 0))
        return dict(zip(BATCH_METRICS, (total_return, cagr, nan, nan, nan, max_drawdown, calmar), strict=True))
    mean, std, downside, max_drawdown = _row_stats(values)
    calmar = _divide(cagr, np.abs(max_drawdown), np.isfinite(cagr) & (max_drawdown != 0))
    if n > 1:
        volatility = std * root
        sharpe = _divide(mean, std, std >= TINY_STD) * root
    else:
        volatility = sharpe = nan
    sortino = _divide(mean, downside, downside >= TINY_STD) * root
    return dict(
        zip(
            BATCH_METRICS,
            (total_return, cagr, volatility, sharpe, sortino, max_drawdown, calmar),
            strict=True,
        )
    )


def _row_stats(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per row (at least two days): mean and std (ddof=1) of the daily returns, downside deviation,
    maximum drawdown."""
    try:
        from kubetrader.metrics._batch_kernel import row_stats
    except ImportError:  # numba is optional: the same numbers with numpy's temporaries
        return _row_stats_numpy(values)
    stats = np.empty((values.shape[0], 4))
    row_stats(values, stats)
    return stats[:, 0], stats[:, 1], stats[:, 2], stats[:, 3]


def _row_stats_numpy(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    max_drawdown = (values / np.maximum.accumulate(values, axis=1) - 1.0).min(axis=1)
    r = values[:, 1:] / values[:, :-1] - 1.0
    n = r.shape[1]
    mean = r.mean(axis=1)
    std = r.std(axis=1, ddof=1) if n > 1 else np.full(values.shape[0], np.nan)
    negative = np.minimum(r, 0.0)
    downside = np.sqrt(np.einsum("ij,ij->i", negative, negative) / n)
    return mean, std, downside, max_drawdown
