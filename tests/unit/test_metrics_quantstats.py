"""compute_metrics against quantstats 0.0.86 on real data (ORCL 1995-2014, NVDA as the benchmark).

Every metric quantstats also defines is compared to a relative 1e-6; where
kubetrader chose a different definition (see kubetrader.metrics' docstring), the
test checks our formula against quantstats' building blocks instead.
"""

from __future__ import annotations

import math
from functools import cache, partial
from typing import Any

import numpy as np
import pandas as pd
import pytest
import quantstats as qs

from kubetrader.metrics import compute_metrics
from tests.helpers import EXAMPLES

REL = 1e-6
CASH = 100_000.0


def _adjusted_close(name: str) -> pd.Series:
    frame = pd.read_csv(EXAMPLES / "data" / name, parse_dates=["Date"], index_col="Date")
    return frame["Adj Close"].astype(float)


@cache
def _curves() -> dict[str, tuple[pd.Series, pd.Series]]:
    """name -> (equity, benchmark returns on the equity's dates)."""
    orcl = _adjusted_close("orcl-1995-2014.txt")
    nvda_returns = _adjusted_close("nvda-1999-2014.txt").pct_change().reindex(orcl.index)
    buy_and_hold = CASH * orcl / orcl.iloc[0]
    # long when yesterday's close was above its 50-day average, flat otherwise
    long = (orcl > orcl.rolling(50).mean()).shift(1, fill_value=False)
    strategy_returns = orcl.pct_change().fillna(0.0).where(long, 0.0)
    long_flat = CASH * (1.0 + strategy_returns).cumprod()
    return {"buy_and_hold": (buy_and_hold, nvda_returns), "long_flat_sma50": (long_flat, nvda_returns)}


@cache
def _metrics(name: str) -> dict[str, float | None]:
    equity, benchmark = _curves()[name]
    return compute_metrics(equity, benchmark_returns=benchmark)


def _returns(name: str) -> pd.Series:
    equity, _ = _curves()[name]
    return equity.pct_change().iloc[1:]


CURVES = ["buy_and_hold", "long_flat_sma50"]


def _scalar(value: Any) -> float:
    """quantstats' functions are typed float | Series; on a Series input they return a float."""
    return float(value)


def _close(ours: float | None, reference: Any) -> bool:
    return ours is not None and math.isclose(ours, float(reference), rel_tol=REL, abs_tol=1e-12)


@pytest.mark.parametrize("curve", CURVES)
@pytest.mark.parametrize(
    ("metric", "reference"),
    [
        ("total_return", qs.stats.comp),
        ("best_day", qs.stats.best),
        ("worst_day", qs.stats.worst),
        ("best_month", partial(qs.stats.best, aggregate="ME")),
        ("worst_month", partial(qs.stats.worst, aggregate="ME")),
        ("daily_win_rate", qs.stats.win_rate),
        ("annual_volatility", qs.stats.volatility),
        ("max_drawdown", qs.stats.max_drawdown),
        ("cvar_95", partial(qs.stats.cvar, method="historical")),
        ("skew", qs.stats.skew),
        ("kurtosis", qs.stats.kurtosis),
        ("tail_ratio", qs.stats.tail_ratio),
        ("sharpe_ratio", qs.stats.sharpe),
        ("sortino_ratio", qs.stats.sortino),
        ("omega_ratio", qs.stats.omega),
    ],
)
def test_return_metric_matches_quantstats_on_orcl(curve: str, metric: str, reference: Any) -> None:
    expected = reference(_returns(curve))
    assert _close(_metrics(curve)[metric], expected), (metric, _metrics(curve)[metric], expected)


@pytest.mark.parametrize("curve", CURVES)
def test_max_drawdown_of_equity_matches_quantstats_given_prices(curve: str) -> None:
    equity, _ = _curves()[curve]
    assert _close(_metrics(curve)["max_drawdown"], qs.stats.max_drawdown(equity))


@pytest.mark.parametrize("curve", CURVES)
def test_avg_drawdown_matches_quantstats_drawdown_details_on_orcl(curve: str) -> None:
    equity, _ = _curves()[curve]
    details = qs.stats.drawdown_details(qs.stats.to_drawdown_series(equity))
    assert _close(_metrics(curve)["avg_drawdown"], details["max drawdown"].mean() / 100)


@pytest.mark.parametrize("curve", CURVES)
def test_max_drawdown_duration_spans_quantstats_episodes_from_peak_to_recovery(curve: str) -> None:
    """Same episodes as quantstats' drawdown_details, measured from the bar before to the bar after."""
    equity, _ = _curves()[curve]
    details = qs.stats.drawdown_details(qs.stats.to_drawdown_series(equity))
    dates = equity.index
    longest = 0
    for start, end in zip(pd.to_datetime(details["start"]), pd.to_datetime(details["end"]), strict=True):
        peak = dates[int(dates.searchsorted(start)) - 1]
        recovery = dates[min(int(dates.searchsorted(end)) + 1, len(dates) - 1)]
        longest = max(longest, pd.Timedelta(recovery - peak).days)
    assert _metrics(curve)["max_drawdown_duration"] == float(longest)
    assert longest >= details["days"].max()  # peak-to-recovery never undercounts quantstats


@pytest.mark.parametrize("curve", CURVES)
def test_cagr_uses_calendar_days_on_quantstats_total_return(curve: str) -> None:
    equity, _ = _curves()[curve]
    years = (equity.index[-1] - equity.index[0]).days / 365.25
    expected = (1.0 + qs.stats.comp(_returns(curve))) ** (1.0 / years) - 1.0
    assert _close(_metrics(curve)["cagr"], expected)
    # quantstats counts years as returns / 252; on NYSE days the two agree to within 1 %
    assert math.isclose(_metrics(curve)["cagr"] or 0.0, _scalar(qs.stats.cagr(_returns(curve))), rel_tol=0.01)


@pytest.mark.parametrize("curve", CURVES)
def test_calmar_is_our_cagr_over_quantstats_max_drawdown(curve: str) -> None:
    metrics = _metrics(curve)
    assert metrics["cagr"] is not None
    assert _close(metrics["calmar_ratio"], metrics["cagr"] / abs(qs.stats.max_drawdown(_returns(curve))))


@pytest.mark.parametrize("curve", CURVES)
def test_var_95_is_historical_quantile_not_quantstats_parametric(curve: str) -> None:
    returns = _returns(curve)
    assert _close(_metrics(curve)["var_95"], returns.quantile(0.05))
    parametric = qs.stats.value_at_risk(returns)
    assert not math.isclose(_metrics(curve)["var_95"] or 0.0, _scalar(parametric), rel_tol=0.01)


@pytest.mark.parametrize("curve", CURVES)
def test_avg_daily_return_is_mean_of_all_days(curve: str) -> None:
    returns = _returns(curve)
    assert _close(_metrics(curve)["avg_daily_return"], returns.mean())


@pytest.mark.parametrize("curve", CURVES)
def test_exposure_without_series_is_quantstats_exposure_before_rounding(curve: str) -> None:
    returns = _returns(curve)
    ours = _metrics(curve)["exposure"]
    assert _close(ours, (returns != 0).mean())
    assert ours is not None
    assert math.ceil(ours * 100) / 100 == qs.stats.exposure(returns)


@pytest.mark.parametrize("curve", CURVES)
def test_alpha_beta_r_squared_match_quantstats_against_nvda(curve: str) -> None:
    returns = _returns(curve)
    _, benchmark = _curves()[curve]
    greeks = qs.stats.greeks(returns, benchmark.iloc[1:])
    metrics = _metrics(curve)
    assert _close(metrics["beta"], greeks["beta"])
    assert _close(metrics["alpha"], greeks["alpha"])
    assert _close(metrics["r_squared"], qs.stats.r_squared(returns, benchmark.iloc[1:]))


@pytest.mark.parametrize("curve", CURVES)
def test_information_ratio_is_quantstats_annualised(curve: str) -> None:
    returns = _returns(curve)
    _, benchmark = _curves()[curve]
    per_day = qs.stats.information_ratio(returns, benchmark.iloc[1:])
    assert _close(_metrics(curve)["information_ratio"], per_day * np.sqrt(252))
    active = (returns - benchmark.iloc[1:]).dropna()
    assert _close(_metrics(curve)["tracking_error"], active.std() * np.sqrt(252))


@pytest.mark.parametrize("curve", CURVES)
def test_benchmark_return_compounds_nvda_over_strategy_days(curve: str) -> None:
    _, benchmark = _curves()[curve]
    assert _close(_metrics(curve)["benchmark_return"], qs.stats.comp(benchmark.iloc[1:].dropna()))


@pytest.mark.parametrize("curve", CURVES)
def test_regimes_match_a_pandas_rolling_reference(curve: str) -> None:
    """Bull/bear from NVDA vs its 200-day average, high/low from 21-day vol, both as of the day before."""
    returns = _returns(curve)
    _, benchmark = _curves()[curve]
    b = benchmark.iloc[1:]
    price = (1.0 + b.loc[b.first_valid_index() :].fillna(0.0)).cumprod().reindex(b.index)
    above = (price > price.rolling(200).mean()).where(price.rolling(200).mean().notna())
    decided = above.shift(1)
    vol = returns.rolling(21).std().shift(1)
    median = vol.median()
    masks = {
        "bull": decided == 1.0,
        "bear": decided == 0.0,
        "high_vol": vol > median,
        "low_vol": vol <= median,
    }
    metrics = _metrics(curve)
    for name, mask in masks.items():
        days = returns[mask]
        assert _close(metrics[f"{name}_return"], qs.stats.comp(days)), name
        assert _close(metrics[f"{name}_sharpe"], qs.stats.sharpe(days)), name
