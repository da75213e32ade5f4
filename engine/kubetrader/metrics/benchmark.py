"""Metrics of the strategy against a benchmark's daily returns (rf = 0, 252 periods a year).

Joint estimators use only the days both series were observed (a benchmark
that starts later, or has gaps, is NaN there), as quantstats does.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from kubetrader.metrics._numbers import TINY_STD, clean, ratio


class BenchmarkStats(NamedTuple):
    benchmark_return: float | None
    alpha: float | None
    beta: float | None
    r_squared: float | None
    information_ratio: float | None
    tracking_error: float | None


def benchmark_stats(r: np.ndarray, b: np.ndarray, periods_per_year: int) -> BenchmarkStats:
    """Regression and active-return statistics of strategy returns `r` on benchmark returns `b`.

    benchmark_return = prod(1 + b) - 1 over the strategy's return days (gaps count as flat).
    beta = cov(r, b) / var(b); alpha = (mean(r) - beta * mean(b)) * periods
    (quantstats' `greeks`: annualised by simple multiplication).
    r_squared = corr(r, b) ** 2 (quantstats' `r_squared`).
    tracking_error = std(r - b, ddof=1) * sqrt(periods).
    information_ratio = mean(r - b) / std(r - b) * sqrt(periods).

    Difference from quantstats: its `information_ratio` is not annualised
    (mean / std of daily active returns); ours is, like every other ratio here,
    so ours = quantstats' * sqrt(252). quantstats reports alpha and beta as 0
    when undefined; we report None.
    """
    observed = np.isfinite(b)
    total = clean(float(np.prod(1.0 + b[observed])) - 1.0) if observed.any() else None
    rp = r[observed]
    bp = b[observed]
    if rp.size < 2:
        return BenchmarkStats(total, None, None, None, None, None)
    dr = rp - rp.mean()
    db = bp - bp.mean()
    sxy = float(np.dot(dr, db))
    sxx = float(np.dot(dr, dr))
    syy = float(np.dot(db, db))
    dof = rp.size - 1.0
    # a (numerically) constant series has no variance: its regression is undefined, not huge
    benchmark_moves = syy / dof >= TINY_STD**2
    beta = ratio(sxy, syy) if benchmark_moves else None
    alpha = None if beta is None else clean((float(rp.mean()) - beta * float(bp.mean())) * periods_per_year)
    r_squared = ratio(sxy * sxy, sxx * syy) if benchmark_moves and sxx / dof >= TINY_STD**2 else None
    active = rp - bp
    active_std = float(active.std(ddof=1))
    tracking_error = clean(active_std * np.sqrt(periods_per_year))
    information = (
        None if active_std < TINY_STD else clean(float(active.mean()) / active_std * np.sqrt(periods_per_year))
    )
    return BenchmarkStats(total, alpha, beta, r_squared, information, tracking_error)
