"""Speed of kubetrader.metrics on ORCL 1995-2014 (about 5000 days), against quantstats.

Prints medians: compute_metrics for all 43 metrics (goal: under 20 ms), the
time quantstats 0.0.86 takes for the metrics it also offers, and the batch
form per curve on an SMA sweep.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from kubetrader.metrics import compute_metrics, compute_metrics_batch

DATA = Path(__file__).resolve().parents[1] / "examples" / "data"
GOAL_MS = 20.0


def _median_ms(action: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000.0


def _adjusted_close(name: str) -> pd.Series:
    frame = pd.read_csv(DATA / name, parse_dates=["Date"], index_col="Date")
    return frame["Adj Close"].astype(float)


def _quantstats_same_metrics(equity: pd.Series, returns: pd.Series, benchmark: pd.Series) -> None:
    """Everything of METRIC_NAMES quantstats computes, each the way a user would call it."""
    from quantstats import stats

    stats.comp(returns)
    stats.cagr(returns)
    stats.avg_return(returns)
    stats.best(returns)
    stats.worst(returns)
    stats.best(returns, aggregate="ME")
    stats.worst(returns, aggregate="ME")
    stats.win_rate(returns)
    stats.volatility(returns)
    stats.max_drawdown(equity)
    stats.drawdown_details(stats.to_drawdown_series(equity))  # avg drawdown, longest drawdown
    stats.value_at_risk(returns)
    stats.cvar(returns, method="historical")
    stats.skew(returns)
    stats.kurtosis(returns)
    stats.tail_ratio(returns)
    stats.sharpe(returns)
    stats.sortino(returns)
    stats.calmar(returns)
    stats.omega(returns)
    stats.exposure(returns)
    stats.greeks(returns, benchmark)
    stats.r_squared(returns, benchmark)
    stats.information_ratio(returns, benchmark)


def main() -> None:
    orcl = _adjusted_close("orcl-1995-2014.txt")
    nvda = _adjusted_close("nvda-1999-2014.txt").pct_change().reindex(orcl.index)
    long = (orcl > orcl.rolling(50).mean()).shift(1, fill_value=False)
    equity = 100_000.0 * (1.0 + orcl.pct_change().fillna(0.0).where(long, 0.0)).cumprod()
    exposure = long.astype(float)
    trades = pd.DataFrame({"pnl_net": np.random.default_rng(1).normal(50.0, 500.0, 300)})

    def ours() -> object:
        return compute_metrics(equity, trades=trades, benchmark_returns=nvda, exposure=exposure)

    started = time.perf_counter()
    ours()
    first_ms = (time.perf_counter() - started) * 1000.0
    ours_ms = _median_ms(ours, 101)

    returns = equity.pct_change().iloc[1:]
    bench_returns = nvda.iloc[1:]
    qs_ms = _median_ms(lambda: _quantstats_same_metrics(equity, returns, bench_returns), 7)

    windows = list(range(5, 205))
    closes = orcl.to_numpy()
    daily = np.concatenate(([0.0], closes[1:] / closes[:-1] - 1.0))
    curves = []
    for window in windows:
        held = (orcl > orcl.rolling(window).mean()).shift(1, fill_value=False).to_numpy()
        curves.append(100_000.0 * np.cumprod(1.0 + np.where(held, daily, 0.0)))
    sweep = np.vstack(curves)
    batch_ms = _median_ms(lambda: compute_metrics_batch(sweep, pd.DatetimeIndex(orcl.index)), 7)

    print(f"ORCL long/flat SMA(50), {len(equity)} days, NVDA benchmark, {len(trades)} trades")
    print(f"{'measure':<52}{'median ms':>11}{'goal ms':>10}{'ratio':>10}")
    print(f"{'compute_metrics, all 43 metrics':<52}{ours_ms:>11.2f}{GOAL_MS:>10.1f}{ours_ms / GOAL_MS:>9.2f}x")
    print(f"{'compute_metrics, first call in the process':<52}{first_ms:>11.2f}{'':>10}{'':>10}")
    print(f"{'quantstats, the 24 calls for the metrics it offers':<52}{qs_ms:>11.2f}{'':>10}{'':>10}")
    print(f"{'  quantstats / compute_metrics':<52}{'':>11}{'':>10}{qs_ms / ours_ms:>9.1f}x")
    per_curve = batch_ms / len(windows)
    print(f"{f'compute_metrics_batch, {len(windows)} curves, per curve':<52}{per_curve:>11.3f}{'':>10}{'':>10}")
    print(f"{'  compute_metrics / batch per curve':<52}{'':>11}{'':>10}{ours_ms / per_curve:>9.1f}x")


if __name__ == "__main__":
    main()
