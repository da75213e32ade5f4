"""The twins' indicators equal Backtrader's line arrays bit for bit (runonce mode, as the runner runs)."""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import backtrader as bt
import numpy as np
import pytest

from kubetrader.vectorized import indicators as ind
from kubetrader.vectorized.exact_sum import rolling_mean


@pytest.mark.parametrize("period", [1, 2, 7, 64, 299])
def test_rolling_mean_equals_math_fsum_over_each_window_on_values_of_mixed_magnitude(period: int) -> None:
    rng = np.random.default_rng(period)
    values = rng.lognormal(3, 1, 1500) * rng.choice([1e-6, 1.0, 1e6], 1500) * rng.choice([-1.0, 1.0], 1500)
    windows = [values[i - period + 1 : i + 1] for i in range(period - 1, 1500)]
    expected = [math.nan] * (period - 1) + [math.fsum(w) / period for w in windows]
    assert np.array_equal(rolling_mean(values, period), np.array(expected), equal_nan=True)


class _Lines(bt.Strategy):
    def __init__(self) -> None:
        close = self.data.close
        self.sma = {p: bt.indicators.SMA(close, period=p) for p in (2, 30, 250)}
        self.rsi = {p: bt.indicators.RSI(close, period=p, safediv=True) for p in (2, 14)}
        self.bb = {(p, d): bt.indicators.BollingerBands(close, period=p, devfactor=d) for p, d in ((5, 1.5), (20, 2.0))}
        self.hi = {p: bt.indicators.Highest(self.data.high(-1), period=p) for p in (1, 55)}
        self.lo = {p: bt.indicators.Lowest(self.data.low(-1), period=p) for p in (1, 10)}


@pytest.fixture(scope="module")
def orcl_lines(bundled_store: Any) -> tuple[Any, Any]:
    from kubetrader.data import load_bars
    from kubetrader.runner import FrameFeed

    frame = load_bars("ORCL", timeframe="1d", start=dt.date(1995, 1, 1), end=dt.date(2014, 12, 31), store=bundled_store)
    cerebro = bt.Cerebro(stdstats=False, preload=True, runonce=True)
    cerebro.adddata(FrameFeed(dataname=frame.tz_convert(None)))
    cerebro.addstrategy(_Lines)
    (strategy,) = cerebro.run()
    return frame, strategy


def _array(line: Any, n: int) -> np.ndarray:
    return np.array(line.array[:n])


def test_sma_rsi_bollinger_and_channels_equal_backtrader_bit_for_bit_on_orcl(orcl_lines: tuple[Any, Any]) -> None:
    frame, s = orcl_lines
    close, high, low = (frame[c].to_numpy() for c in ("close", "high", "low"))
    n = len(close)
    for p, line in s.sma.items():
        assert np.array_equal(_array(line.lines[0], n), ind.sma(close, p), equal_nan=True), f"sma {p}"
    for p, line in s.rsi.items():
        assert np.array_equal(_array(line.lines[0], n), ind.rsi(close, p), equal_nan=True), f"rsi {p}"
    for (p, d), line in s.bb.items():
        mid, bot = ind.bollinger(close, p, d)
        assert np.array_equal(_array(line.mid, n), mid, equal_nan=True), f"bb mid {p}"
        assert np.array_equal(_array(line.bot, n), bot, equal_nan=True), f"bb bot {p} {d}"
    for p, line in s.hi.items():
        assert np.array_equal(_array(line.lines[0], n), ind.highest_before(high, p), equal_nan=True), f"highest {p}"
    for p, line in s.lo.items():
        assert np.array_equal(_array(line.lines[0], n), ind.lowest_before(low, p), equal_nan=True), f"lowest {p}"
