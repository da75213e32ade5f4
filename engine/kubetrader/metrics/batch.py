"""Headline metrics of many equity curves at once, for parameter screening.

A sweep that evaluates thousands of parameter sets on the same dates can
compute their equity curves as one 2-D array; this module scores them with
numpy reductions along the day axis, with no Python loop per curve. Each value
equals what `compute_metrics` returns for that row (same formulas, same
conventions); where `compute_metrics` says None (undefined) the array holds NaN.
"""

from __future__ import annotations

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

    first = values[:, 0]
    last = values[:, -1]
    nan = np.full(n_sets, np.nan)
    total_return = _divide(last - first, first, first != 0)

    days = _calendar_days(dates)
    growth_defined = (first > 0) & (last >= 0) & (days > 0)
    growth = _divide(last, first, growth_defined)
    cagr = np.power(growth, 365.25 / days) - 1.0 if days > 0 else nan

    max_drawdown = (values / np.maximum.accumulate(values, axis=1) - 1.0).min(axis=1)
    calmar = _divide(cagr, np.abs(max_drawdown), np.isfinite(cagr) & (max_drawdown != 0))

    r = values[:, 1:] / values[:, :-1] - 1.0
    n = r.shape[1]
    root = np.sqrt(periods_per_year)
    if n < 1:
        return dict(zip(BATCH_METRICS, (total_return, cagr, nan, nan, nan, max_drawdown, calmar), strict=True))
    mean = r.mean(axis=1)
    if n > 1:
        std = r.std(axis=1, ddof=1)
        volatility = std * root
        sharpe = _divide(mean, std, std >= TINY_STD) * root
    else:
        volatility = sharpe = nan
    negative = np.minimum(r, 0.0)
    downside = np.sqrt(np.einsum("ij,ij->i", negative, negative) / n)
    sortino = _divide(mean, downside, downside >= TINY_STD) * root
    return dict(
        zip(
            BATCH_METRICS,
            (total_return, cagr, volatility, sharpe, sortino, max_drawdown, calmar),
            strict=True,
        )
    )
