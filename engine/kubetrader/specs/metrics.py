"""Names of the metrics every backtest result carries.

They live beside the specs (and not in `kubetrader.metrics`) because the specs
need them to validate an objective metric, and specs must not import numpy.
`kubetrader.metrics` computes exactly these keys; a test checks it.

Conventions: returns and drawdowns are fractions (0.12 is 12 %), drawdowns are
negative, ratios are annualised with 252 trading days and a zero risk-free rate,
durations are in calendar days.
"""

from __future__ import annotations

# The metrics by kind, in the order tables show them; METRIC_NAMES is the same, flat.
METRIC_GROUPS: dict[str, tuple[str, ...]] = {
    "returns": (
        "total_return",
        "cagr",
        "final_value",
        "avg_daily_return",
        "best_day",
        "worst_day",
        "best_month",
        "worst_month",
        "daily_win_rate",
    ),
    "risk": (
        "annual_volatility",
        "max_drawdown",
        "max_drawdown_duration",
        "avg_drawdown",
        "var_95",
        "cvar_95",
        "skew",
        "kurtosis",
        "tail_ratio",
    ),
    "risk_adjusted": ("sharpe_ratio", "sortino_ratio", "calmar_ratio", "omega_ratio"),
    "trades": (
        "num_trades",
        "trade_win_rate",
        "profit_factor",
        "payoff_ratio",
        "avg_trade_pnl",
        "expectancy",
        "exposure",
    ),
    # against the benchmark
    "benchmark": ("benchmark_return", "alpha", "beta", "r_squared", "information_ratio", "tracking_error"),
    # benchmark above/below its 200-day average; rolling 21-day vol above/below its median
    "regimes": (
        "bull_return",
        "bull_sharpe",
        "bear_return",
        "bear_sharpe",
        "high_vol_return",
        "high_vol_sharpe",
        "low_vol_return",
        "low_vol_sharpe",
    ),
}

METRIC_NAMES: tuple[str, ...] = tuple(name for names in METRIC_GROUPS.values() for name in names)

# Shown in `kubectl get backtests` and patched into a Backtest's status.
HEADLINE_METRICS: tuple[str, ...] = ("sharpe_ratio", "total_return", "max_drawdown", "cagr", "num_trades")

# Metrics where smaller is better; everything else is maximized by default (drawdowns and
# VaR are negative numbers, so maximizing them already prefers the smaller loss).
MINIMIZED_METRICS: frozenset[str] = frozenset({"annual_volatility", "max_drawdown_duration", "tracking_error"})
