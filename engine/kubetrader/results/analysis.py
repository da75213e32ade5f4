"""Research views of one result, for the tearsheet and the dashboard alike: rolling Sharpe
and volatility, the deepest drawdowns, the strategy's metrics beside its benchmark's, and
the cost settings the run used.

Pure functions over the stored series (dates, equity, daily returns as lists), so the API
computes them from a result document without the runner. Episodes follow
`kubetrader.metrics.drawdowns` (from the peak to the first day back at it); the
benchmark's metrics are `compute_metrics` of its buy-and-hold curve, the same code as the
strategy's.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel

PERIODS_PER_YEAR = 252
ROLLING_WINDOW = 126  # about six months of sessions
SIDE_BY_SIDE = (
    "total_return",
    "cagr",
    "annual_volatility",
    "sharpe_ratio",
    "sortino_ratio",
    "max_drawdown",
    "calmar_ratio",
    "best_day",
    "worst_day",
)


class DrawdownEpisode(BaseModel):
    """One drawdown: from its peak, through its trough, to the day it was back at the peak (or not yet)."""

    peak: str
    trough: str
    recovered: str | None
    depth: float
    days: int | None


class Rolling(BaseModel):
    window: int
    dates: list[str]
    sharpe: list[float | None]
    volatility: list[float | None]


def rolling(dates: Sequence[str], returns: Sequence[float], window: int = ROLLING_WINDOW) -> Rolling:
    """Annualised Sharpe and volatility over a trailing window of daily returns (None in the warm-up)."""
    sharpe: list[float | None] = []
    vol: list[float | None] = []
    total = total_sq = 0.0
    for i, value in enumerate(returns):
        total += value
        total_sq += value * value
        if i >= window:
            old = returns[i - window]
            total -= old
            total_sq -= old * old
        if i + 1 < window:
            sharpe.append(None)
            vol.append(None)
            continue
        mean = total / window
        var = max((total_sq - window * mean * mean) / (window - 1), 0.0)
        std = math.sqrt(var)
        vol.append(std * math.sqrt(PERIODS_PER_YEAR))
        sharpe.append(mean / std * math.sqrt(PERIODS_PER_YEAR) if std > 1e-12 else None)
    return Rolling(window=window, dates=list(dates), sharpe=sharpe, volatility=vol)


def _days(start: str, end: str) -> int:
    import datetime as dt

    return (dt.date.fromisoformat(end[:10]) - dt.date.fromisoformat(start[:10])).days


def top_drawdowns(dates: Sequence[str], equity: Sequence[float], n: int = 5) -> list[DrawdownEpisode]:
    """The `n` deepest drawdown episodes, deepest first."""
    episodes: list[DrawdownEpisode] = []
    peak_value, peak_at = -math.inf, 0
    trough_value, trough_at = math.inf, 0
    inside = False
    for i, value in enumerate(equity):
        if value >= peak_value:
            if inside:
                episodes.append(_episode(dates, peak_at, trough_at, i, trough_value / peak_value - 1.0))
                inside = False
            peak_value, peak_at = value, i
        elif not inside:
            inside, trough_value, trough_at = True, value, i
        elif value < trough_value:
            trough_value, trough_at = value, i
    if inside:
        episodes.append(_episode(dates, peak_at, trough_at, None, trough_value / peak_value - 1.0))
    episodes.sort(key=lambda e: e.depth)
    return episodes[:n]


def _episode(dates: Sequence[str], peak: int, trough: int, recovered: int | None, depth: float) -> DrawdownEpisode:
    return DrawdownEpisode(
        peak=dates[peak],
        trough=dates[trough],
        recovered=dates[recovered] if recovered is not None else None,
        depth=depth,
        days=_days(dates[peak], dates[recovered]) if recovered is not None else None,
    )


def benchmark_metrics(dates: Sequence[str], benchmark_returns: Sequence[float] | None) -> dict[str, float | None]:
    """The benchmark's buy-and-hold metrics, from the same `compute_metrics` as the strategy's."""
    if not benchmark_returns:
        return {}
    import numpy as np

    from kubetrader.metrics import metrics_of_arrays

    level, curve = 1.0, []
    for value in benchmark_returns:
        level *= 1.0 + (value if math.isfinite(value) else 0.0)
        curve.append(level)
    stamps = np.array([d[:10] for d in dates], dtype="datetime64[D]").astype("datetime64[ns]").view("i8")
    metrics = metrics_of_arrays(stamps, np.array(curve, dtype=np.float64), pnl=np.empty(0))
    return {name: metrics.get(name) for name in SIDE_BY_SIDE}


def cost_settings(spec: dict[str, Any]) -> dict[str, str]:
    """The broker's commission, fees and slippage as the run used them (from the stored spec)."""
    inner = spec.get("spec") if isinstance(spec.get("spec"), dict) and "kind" in spec else spec
    broker = inner.get("broker", {}) if isinstance(inner, dict) else {}
    out: dict[str, str] = {}
    if "cash" in broker:
        out["Starting cash"] = f"{float(broker['cash']):,.2f}"
    for section in ("commission", "slippage"):
        values = broker.get(section)
        if isinstance(values, dict):
            for key, value in values.items():
                out[f"{section.capitalize()} {key}"] = str(value)
    for key, value in broker.items():
        if key not in ("cash", "commission", "slippage") and not isinstance(value, dict | list):
            out[key] = str(value)
    return out
