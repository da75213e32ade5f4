"""Performance metrics of a backtest: pure functions over an equity curve and a trade list.

`compute_metrics(equity, trades=..., benchmark_returns=..., exposure=...)` returns
every metric of `kubetrader.specs.metrics.METRIC_NAMES`, in that order, as
finite floats or None. `compute_metrics_batch` computes the headline metrics of
many equity curves at once (parameter screening without a Python loop per run).

Conventions: simple daily returns r = equity.pct_change() (first day dropped);
fractions, not percent; drawdowns negative; ratios annualised with
`periods_per_year` (252) and a zero risk-free rate; durations in calendar days.

Every metric quantstats (0.0.86) also defines is tested against it on real data
(ORCL 1995-2014, NVDA as the benchmark) to a relative 1e-6. Where we chose a
different definition, on purpose:

| metric | kubetrader | quantstats |
| --- | --- | --- |
| cagr | years = calendar days / 365.25 | years = number of returns / 252 |
| calmar_ratio | our cagr / abs(max_drawdown) | its cagr / abs(max_drawdown) |
| max_drawdown_duration | peak day to recovery (or last) day | first to last underwater day + 1 ("Longest DD Days") |
| var_95 | historical: 5 % quantile of daily returns | parametric normal: mean + std * Phi^-1(0.05) |
| cvar_95 | historical: mean of days at or below var_95 | parametric by default (we equal its `method="historical"`) |
| information_ratio | annualised: * sqrt(252) | per period |
| avg_daily_return | mean of all daily returns (Sharpe's numerator) | `avg_return` skips zero-return days |
| exposure | share of days with a position (exposure series) | share of non-zero-return days, rounded up to 1 % |
| trade metrics | per closed trade, from pnl_net | `win_rate`, `profit_factor`, `payoff_ratio` are per day |
| undefined values | None (e.g. win rate with no active day, beta on a flat benchmark) | 0.0 or NaN |
| regimes | (not in quantstats) | |
"""

from __future__ import annotations

from kubetrader.metrics.batch import BATCH_METRICS, compute_metrics_batch
from kubetrader.metrics.compute import compute_metrics, metrics_of_arrays

__all__ = ["BATCH_METRICS", "compute_metrics", "compute_metrics_batch", "metrics_of_arrays"]
