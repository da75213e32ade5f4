"""compute_metrics on tiny hand-computed series: trades, drawdowns, edge cases, output contract."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from kubetrader.metrics import compute_metrics
from kubetrader.specs.metrics import METRIC_NAMES


def _equity(values: list[float], dates: list[str] | None = None) -> pd.Series:
    index = pd.DatetimeIndex(dates) if dates else pd.bdate_range("2024-01-01", periods=len(values))
    return pd.Series(values, index=index, dtype=float)


FLAT_WEEK = _equity([100.0, 101.0, 100.5, 102.0, 103.0])


def test_trade_metrics_match_hand_computed_values() -> None:
    trades = pd.DataFrame({"pnl_net": [100.0, -50.0, 200.0, -25.0, 0.0]})
    metrics = compute_metrics(FLAT_WEEK, trades=trades)
    assert metrics["num_trades"] == 5.0
    assert metrics["trade_win_rate"] == pytest.approx(2 / 5)  # the break-even trade is not a win
    assert metrics["profit_factor"] == pytest.approx(300 / 75)
    assert metrics["payoff_ratio"] == pytest.approx(150 / 37.5)
    assert metrics["avg_trade_pnl"] == pytest.approx(225 / 5)
    assert metrics["expectancy"] == pytest.approx(45 / 37.5)  # = 0.4 * 4 - 0.4 in R-multiples


def test_no_trades_gives_zero_count_and_undefined_ratios() -> None:
    for trades in (None, pd.DataFrame(), pd.DataFrame({"pnl_net": pd.Series([], dtype=float)})):
        metrics = compute_metrics(FLAT_WEEK, trades=trades)
        assert metrics["num_trades"] == 0.0
        for name in ("trade_win_rate", "profit_factor", "payoff_ratio", "avg_trade_pnl", "expectancy"):
            assert metrics[name] is None, name


def test_only_winning_trades_leave_loss_ratios_undefined() -> None:
    metrics = compute_metrics(FLAT_WEEK, trades=pd.DataFrame({"pnl_net": [10.0, 30.0]}))
    assert metrics["trade_win_rate"] == 1.0
    assert metrics["avg_trade_pnl"] == 20.0
    assert metrics["profit_factor"] is None
    assert metrics["payoff_ratio"] is None
    assert metrics["expectancy"] is None


def test_drawdown_depth_and_duration_across_a_weekend() -> None:
    """Episodes: Wed 3rd (peak) -> Mon 8th (recovery) 5 days, -10 %; Tue 9th -> Thu 11th, -10 %;
    Thu 11th -> Fri 12th (unrecovered), 115 / 121 - 1."""
    dates = ["2024-01-01", "2024-01-02", "2024-01-03", "2024-01-04", "2024-01-05"]
    dates += ["2024-01-08", "2024-01-09", "2024-01-10", "2024-01-11", "2024-01-12"]
    equity = _equity([100.0, 110.0, 110.0, 99.0, 104.5, 110.0, 121.0, 108.9, 121.0, 115.0], dates)
    metrics = compute_metrics(equity)
    assert metrics["max_drawdown"] == pytest.approx(-0.1, rel=1e-12)
    assert metrics["max_drawdown_duration"] == 5.0
    assert metrics["avg_drawdown"] == pytest.approx((-0.1 - 0.1 + (115 / 121 - 1)) / 3, rel=1e-12)


def test_unrecovered_drawdown_lasts_until_the_last_day() -> None:
    equity = _equity([100.0, 90.0, 95.0, 97.0], ["2024-01-01", "2024-01-02", "2024-01-07", "2024-01-11"])
    metrics = compute_metrics(equity)
    assert metrics["max_drawdown_duration"] == 10.0
    assert metrics["max_drawdown"] == pytest.approx(-0.1)
    assert metrics["avg_drawdown"] == pytest.approx(-0.1)


def test_rising_equity_has_no_drawdown() -> None:
    metrics = compute_metrics(_equity([100.0, 101.0, 103.0, 107.0]))
    assert (metrics["max_drawdown"], metrics["max_drawdown_duration"], metrics["avg_drawdown"]) == (0.0, 0.0, 0.0)
    assert metrics["calmar_ratio"] is None


def test_constant_equity_has_zero_volatility_and_no_sharpe() -> None:
    metrics = compute_metrics(_equity([100.0] * 30))
    assert metrics["annual_volatility"] == 0.0
    assert metrics["total_return"] == 0.0
    for name in ("sharpe_ratio", "sortino_ratio", "omega_ratio", "daily_win_rate", "skew", "kurtosis"):
        assert metrics[name] is None, name


def test_keys_are_metric_names_in_order_and_values_finite_floats_or_none() -> None:
    rng = np.random.default_rng(7)
    equity = _equity(list(100 * np.cumprod(1 + rng.normal(0.0005, 0.01, 600))))
    benchmark = pd.Series(rng.normal(0.0004, 0.012, 600), index=equity.index)
    benchmark.iloc[:50] = np.nan
    metrics = compute_metrics(
        equity,
        trades=pd.DataFrame({"pnl_net": [5.0, -3.0, 8.0]}),
        benchmark_returns=benchmark,
        exposure=pd.Series(1.0, index=equity.index),
    )
    assert tuple(metrics) == METRIC_NAMES
    for name, value in metrics.items():
        assert value is None or (type(value) is float and math.isfinite(value)), name
    assert all(metrics[name] is not None for name in METRIC_NAMES), [k for k, v in metrics.items() if v is None]


def test_without_benchmark_the_benchmark_metrics_are_none() -> None:
    metrics = compute_metrics(_equity(list(np.linspace(100.0, 120.0, 300))))
    for name in ("benchmark_return", "alpha", "beta", "r_squared", "information_ratio", "tracking_error"):
        assert metrics[name] is None, name
    for name in ("bull_return", "bull_sharpe", "bear_return", "bear_sharpe"):
        assert metrics[name] is None, name


def test_exposure_counts_days_with_a_position() -> None:
    exposure = pd.Series([0.0, 0.5, 0.0, 1.2, np.nan], index=FLAT_WEEK.index)
    assert compute_metrics(FLAT_WEEK, exposure=exposure)["exposure"] == pytest.approx(2 / 4)


def test_timezone_aware_index_gives_the_same_metrics_as_naive() -> None:
    rng = np.random.default_rng(3)
    naive = _equity(list(100 * np.cumprod(1 + rng.normal(0.0, 0.01, 400))))
    aware = naive.tz_localize("America/New_York")
    assert compute_metrics(aware) == compute_metrics(naive)


def test_monthly_returns_compound_within_calendar_months() -> None:
    equity = _equity([100.0, 110.0, 99.0, 120.0], ["2024-01-30", "2024-01-31", "2024-02-01", "2024-02-29"])
    metrics = compute_metrics(equity)
    assert metrics["best_month"] == pytest.approx(0.1)  # January: 100 -> 110
    assert metrics["worst_month"] == pytest.approx(120 / 110 - 1)  # February: 110 -> 120


def test_cagr_over_exactly_one_calendar_year_is_total_return() -> None:
    equity = _equity([100.0, 150.0, 112.0], ["2023-01-01", "2023-07-01", "2024-01-01"])
    metrics = compute_metrics(equity)
    # 365 days against 365.25 a year: 12 % compounded over 365/365.25 of a year
    assert metrics["cagr"] == pytest.approx(1.12 ** (365.25 / 365) - 1, rel=1e-12)


def test_missing_equity_value_is_refused_with_its_date() -> None:
    equity = _equity([100.0, np.nan, 101.0])
    with pytest.raises(ValueError, match="2024-01-02"):
        compute_metrics(equity)


def test_tz_aware_benchmark_lines_up_with_naive_equity_by_wall_time() -> None:
    rng = np.random.default_rng(5)
    equity = _equity(list(100 * np.cumprod(1 + rng.normal(0.0, 0.01, 300))))
    benchmark = pd.Series(rng.normal(0.0, 0.01, 300), index=equity.index)
    expected = compute_metrics(equity, benchmark_returns=benchmark)
    aware = benchmark.tz_localize("Europe/Berlin").sample(frac=1.0, random_state=1)  # any order
    assert compute_metrics(equity, benchmark_returns=aware) == expected
    assert expected["beta"] is not None


def test_benchmark_on_other_dates_is_refused_not_ignored() -> None:
    other = pd.Series([0.01, 0.02], index=pd.DatetimeIndex(["1990-01-01", "1990-01-02"]))
    with pytest.raises(ValueError, match="benchmark_returns has no date in common"):
        compute_metrics(FLAT_WEEK, benchmark_returns=other)


def test_trades_without_pnl_net_are_refused() -> None:
    with pytest.raises(ValueError, match="pnl_net"):
        compute_metrics(FLAT_WEEK, trades=pd.DataFrame({"pnl": [1.0]}))


def test_single_day_equity_gives_only_finite_or_none_values() -> None:
    metrics = compute_metrics(_equity([100.0]))
    assert metrics["final_value"] == 100.0
    assert metrics["total_return"] == 0.0
    assert metrics["sharpe_ratio"] is None
    assert metrics["cagr"] is None
    assert all(value is None or math.isfinite(value) for value in metrics.values())


def test_trend_regimes_need_200_benchmark_days_before_they_are_known() -> None:
    rng = np.random.default_rng(9)
    equity = _equity(list(100 * np.cumprod(1 + rng.normal(0.0, 0.01, 200))))
    benchmark = pd.Series(0.001, index=equity.index)  # 199 returns after the first day: one short
    metrics = compute_metrics(equity, benchmark_returns=benchmark)
    assert metrics["beta"] is None  # a constant benchmark has no variance
    assert metrics["benchmark_return"] == pytest.approx(1.001**199 - 1)
    assert (metrics["bull_return"], metrics["bear_return"]) == (None, None)
    longer = _equity(list(100 * np.cumprod(1 + rng.normal(0.0, 0.01, 202))))
    rising = compute_metrics(longer, benchmark_returns=pd.Series(0.001, index=longer.index))
    # a rising price sits above its average: day 201 (the first after 200 prices) is bull, none is bear
    assert rising["bull_return"] == pytest.approx(longer.iloc[-1] / longer.iloc[-2] - 1)
    assert rising["bear_return"] is None
