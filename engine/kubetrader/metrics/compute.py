"""`compute_metrics`: every metric of kubetrader.specs.metrics.METRIC_NAMES from one equity curve."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from kubetrader.metrics import benchmark as bench
from kubetrader.metrics import drawdowns as dd
from kubetrader.metrics import regimes, returns
from kubetrader.metrics._numbers import clean, ratio
from kubetrader.metrics.trades import trade_stats
from kubetrader.specs.metrics import METRIC_NAMES

if TYPE_CHECKING:
    import pandas as pd

_NS_PER_DAY = 86_400 * 10**9


def _naive_index_ns(index: pd.Index, what: str) -> np.ndarray:
    """The index as int64 nanoseconds of local wall time (tz-aware indexes keep their local dates)."""
    import pandas as pd

    if not isinstance(index, pd.DatetimeIndex):
        raise ValueError(f"{what} must be indexed by a DatetimeIndex, got {type(index).__name__}")
    if index.tz is not None:
        index = index.tz_localize(None)
    return np.asarray(index.as_unit("ns").asi8)


def _aligned(series: pd.Series | None, stamps: np.ndarray, what: str) -> np.ndarray | None:
    """`series` as float64 values on the equity's dates `stamps` (missing dates NaN), or None.

    Dates are matched on local wall time, so a tz-aware benchmark lines up with a
    naive equity curve of the same days (a plain pandas reindex would silently
    match nothing). A series that shares no date with the equity is a caller's
    mistake, refused rather than turned into "no benchmark".
    """
    if series is None:
        return None
    own = _naive_index_ns(series.index, what)
    values = np.asarray(series.to_numpy(dtype=np.float64, na_value=np.nan))
    if own.shape == stamps.shape and (own == stamps).all():
        return values
    if own.size == 0:
        raise ValueError(f"{what} is empty")
    order = np.argsort(own, kind="stable")
    own, values = own[order], values[order]
    position = np.searchsorted(own, stamps).clip(max=own.size - 1)
    found = own[position] == stamps
    if not found.any():
        raise ValueError(f"{what} has no date in common with equity")
    return np.where(found, values[position], np.nan)


def _exposure(exposure: np.ndarray | None, r: np.ndarray) -> float | None:
    """Share of days with a non-zero position.

    From the `exposure` series when given (NaN days ignored). Without it, a day
    counts as invested when its return is non-zero: quantstats' `exposure`,
    but not rounded up to a whole percent as quantstats does.
    """
    if exposure is None:
        return ratio(float(np.count_nonzero(r)), float(r.size))
    known = exposure[np.isfinite(exposure)]
    return ratio(float(np.count_nonzero(known)), float(known.size))


def compute_metrics(
    equity: pd.Series,
    *,
    trades: pd.DataFrame | None = None,
    benchmark_returns: pd.Series | None = None,
    exposure: pd.Series | None = None,
    periods_per_year: int = 252,
) -> dict[str, float | None]:
    """All metrics of a backtest, keyed and ordered exactly as METRIC_NAMES.

    `equity` is the daily portfolio value on a DatetimeIndex (naive or tz-aware);
    returns are equity.pct_change() without the first day. `trades` needs a
    `pnl_net` column (one row per closed trade). `benchmark_returns` and
    `exposure` are matched to the equity's dates on local wall time (missing dates are NaN).
    Values are finite Python floats, or None where a metric is undefined, so the
    dict goes to JSON and MLflow as is. Conventions and the differences from
    quantstats are in the package docstring.
    """
    stamps = _naive_index_ns(equity.index, "equity")
    values = np.asarray(equity.to_numpy(dtype=np.float64, na_value=np.nan))
    if trades is None or len(trades) == 0:  # an empty frame may come without columns
        pnl = np.empty(0)
    elif "pnl_net" not in trades.columns:
        raise ValueError(f"trades needs a pnl_net column, it has {list(trades.columns)}")
    else:
        pnl = trades["pnl_net"].to_numpy(dtype=np.float64, na_value=np.nan)
    return metrics_of_arrays(
        stamps,
        values,
        pnl=pnl,
        benchmark=_aligned(benchmark_returns, stamps, "benchmark_returns"),
        exposure=_aligned(exposure, stamps, "exposure"),
        periods_per_year=periods_per_year,
    )


def metrics_of_arrays(
    stamps: np.ndarray,
    values: np.ndarray,
    *,
    pnl: np.ndarray,
    benchmark: np.ndarray | None = None,
    exposure: np.ndarray | None = None,
    periods_per_year: int = 252,
) -> dict[str, float | None]:
    """`compute_metrics` of arrays already on the equity's days, without pandas (a backtest's run path).

    `stamps` are the days as int64 ns of local wall time, `values` the equity, `pnl` the closed
    trades' net PnL; `benchmark` (returns) and `exposure` are aligned to `stamps` (NaN where unknown).
    """
    if values.size == 0:
        raise ValueError("equity is empty")
    if periods_per_year <= 0:
        raise ValueError(f"periods_per_year must be positive, got {periods_per_year}")
    if not np.isfinite(values).all():
        bad = stamps[int(np.flatnonzero(~np.isfinite(values))[0])].astype("datetime64[ns]")
        raise ValueError(f"equity has a missing or infinite value on {bad}")
    if values.size > 1 and (np.diff(stamps) <= 0).any():
        raise ValueError("equity's dates must be strictly increasing")

    days = (stamps - stamps[0]) / _NS_PER_DAY
    r = values[1:] / values[:-1] - 1.0
    out: dict[str, float | None] = dict.fromkeys(METRIC_NAMES)

    out["final_value"] = clean(values[-1])
    out["total_return"] = ratio(values[-1] - values[0], values[0])
    out["cagr"] = returns.cagr(values[0], values[-1], float(days[-1]))
    if r.size:
        out["avg_daily_return"] = clean(r.mean())
        out["best_day"] = clean(r.max())
        out["worst_day"] = clean(r.min())
        months = returns.monthly_returns(values, stamps.astype("datetime64[ns]").astype("datetime64[M]").view("i8"))
        out["best_month"] = clean(months.max())
        out["worst_month"] = clean(months.min())
        out["daily_win_rate"] = returns.win_rate(r)
        if r.size > 1:
            out["annual_volatility"] = clean(r.std(ddof=1) * np.sqrt(periods_per_year))
        out["var_95"], out["cvar_95"], out["tail_ratio"] = returns.tail_measures(r)
        out["skew"] = returns.skew(r)
        out["kurtosis"] = returns.kurtosis(r)
        out["sharpe_ratio"] = returns.sharpe(r, periods_per_year)
        out["sortino_ratio"] = returns.sortino(r, periods_per_year)
        out["omega_ratio"] = returns.omega(r)

    drawdowns = dd.drawdowns(values, days)
    out["max_drawdown"] = drawdowns.max_drawdown
    out["max_drawdown_duration"] = drawdowns.max_drawdown_duration
    out["avg_drawdown"] = drawdowns.avg_drawdown
    cagr = out["cagr"]
    out["calmar_ratio"] = None if cagr is None else ratio(cagr, abs(drawdowns.max_drawdown))

    out.update(trade_stats(pnl)._asdict())
    out["exposure"] = _exposure(exposure, r)

    high, low = regimes.volatility_masks(r)
    out["high_vol_return"], out["high_vol_sharpe"] = regimes.regime_stats(r, high, periods_per_year)
    out["low_vol_return"], out["low_vol_sharpe"] = regimes.regime_stats(r, low, periods_per_year)

    if benchmark is not None and r.size:
        b = benchmark[1:]
        out.update(bench.benchmark_stats(r, b, periods_per_year)._asdict())
        bull, bear = regimes.trend_masks(b)
        out["bull_return"], out["bull_sharpe"] = regimes.regime_stats(r, bull, periods_per_year)
        out["bear_return"], out["bear_sharpe"] = regimes.regime_stats(r, bear, periods_per_year)

    return {name: clean(out[name]) for name in METRIC_NAMES}
