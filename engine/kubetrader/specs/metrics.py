"""Names of the metrics every backtest result carries.

They live beside the specs (and not in `kubetrader.metrics`) because the specs
need them to validate an objective metric, and specs must not import numpy.
`kubetrader.metrics` computes exactly these keys; a test checks it.

Conventions: returns and drawdowns are fractions (0.12 is 12 %), drawdowns are
negative, ratios are annualised with 252 trading days and a zero risk-free rate,
durations are in calendar days.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

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


class MetricInfo(NamedTuple):
    """How a metric reads to a person: its label, its unit, and what it means (the tooltip)."""

    label: str
    unit: Literal["fraction", "money", "count", "days", "ratio"]
    description: str


# One row per metric: every table, card and chart takes its label, unit and tooltip from here
# (kubetrader.formatting formats by unit: fractions as percent, money with separators).
METRICS: dict[str, MetricInfo] = {
    "total_return": MetricInfo("Total return", "fraction", "Final equity over initial cash, minus 1."),
    "cagr": MetricInfo("CAGR", "fraction", "Compound annual growth rate (years of 365.25 calendar days)."),
    "final_value": MetricInfo("Final value", "money", "Account value (cash plus positions) on the last day."),
    "avg_daily_return": MetricInfo("Avg daily return", "fraction", "Mean of all daily returns."),
    "best_day": MetricInfo("Best day", "fraction", "Largest one-day return."),
    "worst_day": MetricInfo("Worst day", "fraction", "Smallest one-day return."),
    "best_month": MetricInfo("Best month", "fraction", "Largest calendar-month return."),
    "worst_month": MetricInfo("Worst month", "fraction", "Smallest calendar-month return."),
    "daily_win_rate": MetricInfo("Daily win rate", "fraction", "Share of active days with a positive return."),
    "annual_volatility": MetricInfo(
        "Volatility (ann.)", "fraction", "Standard deviation of daily returns x sqrt(252)."
    ),
    "max_drawdown": MetricInfo("Max drawdown", "fraction", "Deepest fall from a running peak (negative)."),
    "max_drawdown_duration": MetricInfo(
        "Longest drawdown", "days", "Calendar days from a peak to its recovery (or to the last day)."
    ),
    "avg_drawdown": MetricInfo("Avg drawdown", "fraction", "Mean depth of the drawdown periods (negative)."),
    "var_95": MetricInfo("VaR 95%", "fraction", "Historical value at risk: the 5% quantile of daily returns."),
    "cvar_95": MetricInfo("CVaR 95%", "fraction", "Expected shortfall: mean of the days at or below VaR 95%."),
    "skew": MetricInfo("Skew", "ratio", "Skewness of daily returns."),
    "kurtosis": MetricInfo("Kurtosis", "ratio", "Excess kurtosis of daily returns."),
    "tail_ratio": MetricInfo("Tail ratio", "ratio", "95th percentile of daily returns over the abs. 5th percentile."),
    "sharpe_ratio": MetricInfo("Sharpe", "ratio", "Annualised mean over volatility of daily returns (risk-free 0)."),
    "sortino_ratio": MetricInfo("Sortino", "ratio", "Like Sharpe, with downside deviation as the risk."),
    "calmar_ratio": MetricInfo("Calmar", "ratio", "CAGR over the absolute max drawdown."),
    "omega_ratio": MetricInfo("Omega", "ratio", "Sum of gains over sum of losses of daily returns (threshold 0)."),
    "num_trades": MetricInfo("Trades", "count", "Closed round trips (open positions are not counted)."),
    "trade_win_rate": MetricInfo("Trade win rate", "fraction", "Share of closed trades with a positive net PnL."),
    "profit_factor": MetricInfo("Profit factor", "ratio", "Gross profit over gross loss of closed trades."),
    "payoff_ratio": MetricInfo("Payoff ratio", "ratio", "Mean winning trade over mean losing trade."),
    "avg_trade_pnl": MetricInfo("Avg trade PnL", "money", "Mean net PnL of closed trades."),
    "expectancy": MetricInfo(
        "Expectancy", "ratio", "Avg trade PnL over the mean losing trade (Van Tharp's R-multiples)."
    ),
    "exposure": MetricInfo("Exposure", "fraction", "Share of days with a position."),
    "benchmark_return": MetricInfo("Benchmark return", "fraction", "Buy-and-hold return of the benchmark."),
    "alpha": MetricInfo("Alpha (ann.)", "fraction", "Annualised return not explained by beta to the benchmark."),
    "beta": MetricInfo("Beta", "ratio", "Sensitivity of daily returns to the benchmark's."),
    "r_squared": MetricInfo("R²", "ratio", "Share of the variance explained by the benchmark."),
    "information_ratio": MetricInfo("Information ratio", "ratio", "Annualised excess return over tracking error."),
    "tracking_error": MetricInfo("Tracking error", "fraction", "Annualised volatility of the excess return."),
    "bull_return": MetricInfo("Bull return", "fraction", "Return on days the benchmark is above its 200-day average."),
    "bull_sharpe": MetricInfo("Bull Sharpe", "ratio", "Sharpe on days the benchmark is above its 200-day average."),
    "bear_return": MetricInfo("Bear return", "fraction", "Return on days the benchmark is below its 200-day average."),
    "bear_sharpe": MetricInfo("Bear Sharpe", "ratio", "Sharpe on days the benchmark is below its 200-day average."),
    "high_vol_return": MetricInfo("High-vol return", "fraction", "Return on days of above-median 21-day volatility."),
    "high_vol_sharpe": MetricInfo("High-vol Sharpe", "ratio", "Sharpe on days of above-median 21-day volatility."),
    "low_vol_return": MetricInfo("Low-vol return", "fraction", "Return on days of below-median 21-day volatility."),
    "low_vol_sharpe": MetricInfo("Low-vol Sharpe", "ratio", "Sharpe on days of below-median 21-day volatility."),
}

GROUP_LABELS: dict[str, str] = {
    "returns": "Returns",
    "risk": "Risk",
    "risk_adjusted": "Risk-adjusted",
    "trades": "Trades",
    "benchmark": "Against the benchmark",
    "regimes": "Regimes",
}
