"""The four example strategies as signal arrays, and the registry that names their twins.

A twin states a strategy's rules as two boolean arrays over the bars (`enter[t]`:
the entry condition holds at bar t's close; `leave[t]`: the exit condition holds)
and the first bar `next` decides on. Position state, order waiting, sizing, costs
and risk limits are the fill engine's (`kubetrader.vectorized.simulate`), shared by
all twins. The rules are the docstrings of the strategy classes, with indicators
from `kubetrader.vectorized.indicators` (equal to Backtrader's bit for bit).

The registry maps a strategy import path to its twin. A twin is used for screening
only when `verified` is True: it agreed with Backtrader on every point of the
equivalence harness (tests/vectorized, bench/bench_vectorized.py). No edit in
`strategies/` is needed to declare one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from kubetrader.vectorized import indicators as ind

Arrays = dict[tuple[Any, ...], np.ndarray]
Signals = tuple[np.ndarray, np.ndarray, int]


@dataclass(frozen=True)
class Bars:
    """One symbol's bars as float64 arrays, plus each bar's UTC day number (for the daily-loss rule)."""

    dates: Any  # pandas.DatetimeIndex (UTC)
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    day: np.ndarray

    @classmethod
    def from_frame(cls, frame: Any) -> Bars:
        import pandas as pd

        index = pd.DatetimeIndex(frame.index)
        index = index.tz_localize("UTC") if index.tz is None else index.tz_convert("UTC")
        index = index.as_unit("ns")
        day = index.asi8 // 86_400_000_000_000

        def column(name: str) -> np.ndarray:
            return np.ascontiguousarray(frame[name].to_numpy(dtype=np.float64))

        return cls(index, column("open"), column("high"), column("low"), column("close"), day.astype(np.int64))

    def __len__(self) -> int:
        return int(self.close.shape[0])


class IndicatorCache:
    """Indicator arrays of one `Bars`, computed once per (kind, parameters) across a grid."""

    def __init__(self, bars: Bars) -> None:
        self.bars = bars
        self._arrays: Arrays = {}

    def get(self, key: tuple[Any, ...], build: Callable[[], np.ndarray]) -> np.ndarray:
        found = self._arrays.get(key)
        if found is None:
            found = self._arrays[key] = build()
        return found

    def sma(self, period: int) -> np.ndarray:
        return self.get(("sma", period), lambda: ind.sma(self.bars.close, period))

    def rsi(self, period: int) -> np.ndarray:
        return self.get(("rsi", period), lambda: ind.rsi(self.bars.close, period))

    def bollinger(self, period: int, devs: float) -> tuple[np.ndarray, np.ndarray]:
        squares = self.get(("squares",), lambda: ind.squares(self.bars.close))
        key = ("bb", period, float(devs))
        if key not in self._arrays:
            mid, bot = ind.bollinger(self.bars.close, period, devs, squares)
            self._arrays[key] = np.stack([mid, bot])
        pair = self._arrays[key]
        return pair[0], pair[1]

    def highest_before(self, period: int) -> np.ndarray:
        return self.get(("hi", period), lambda: ind.highest_before(self.bars.high, period))

    def lowest_before(self, period: int) -> np.ndarray:
        return self.get(("lo", period), lambda: ind.lowest_before(self.bars.low, period))


def _mask(condition: np.ndarray, start: int) -> np.ndarray:
    out = np.asarray(condition, dtype=np.bool_).copy()
    out[: max(start, 0)] = False
    return out


def sma_crossover(cache: IndicatorCache, p: Mapping[str, Any]) -> Signals:
    """SMACrossover: enter on fast crossing above slow, leave on crossing below; from bar `slow`."""
    fast, slow = int(p["fast"]), int(p["slow"])
    if not 0 < fast < slow:
        raise ValueError(f"need 0 < fast < slow, got fast={fast}, slow={slow}")
    f, s = cache.sma(fast), cache.sma(slow)
    f0, s0 = f[1:], s[1:]
    f1, s1 = f[:-1], s[:-1]
    enter = np.zeros(len(f), dtype=np.bool_)
    leave = np.zeros(len(f), dtype=np.bool_)
    enter[1:] = (f0 > s0) & (f1 <= s1)
    leave[1:] = (f0 < s0) & (f1 >= s1)
    return _mask(enter, slow), _mask(leave, slow), slow


def rsi_momentum(cache: IndicatorCache, p: Mapping[str, Any]) -> Signals:
    """RSIMomentum: enter while RSI > entry, leave while RSI < exit; from bar `period`."""
    period, entry, exit_ = int(p["period"]), float(p["entry"]), float(p["exit"])
    if not 0 <= exit_ <= entry <= 100:
        raise ValueError(f"need 0 <= exit <= entry <= 100, got exit={exit_}, entry={entry}")
    r = cache.rsi(period)
    return _mask(r > entry, period), _mask(r < exit_, period), period


def bollinger_reversion(cache: IndicatorCache, p: Mapping[str, Any]) -> Signals:
    """BollingerReversion: enter on close < lower band, leave on close >= middle; from bar period - 1."""
    period, devs = int(p["period"]), float(p["devs"])
    if period < 2 or devs <= 0:
        raise ValueError(f"need period >= 2 and devs > 0, got period={period}, devs={devs}")
    mid, bot = cache.bollinger(period, devs)
    close = cache.bars.close
    start = period - 1
    return _mask(close < bot, start), _mask(close >= mid, start), start


def donchian_breakout(cache: IndicatorCache, p: Mapping[str, Any]) -> Signals:
    """DonchianBreakout: enter on close > highest high of the previous `entry` bars, leave on
    close < lowest low of the previous `exit` bars; from bar max(entry, exit)."""
    entry, exit_ = int(p["entry"]), int(p["exit"])
    if entry < 1 or exit_ < 1:
        raise ValueError(f"need entry >= 1 and exit >= 1, got entry={entry}, exit={exit_}")
    close = cache.bars.close
    start = max(entry, exit_)
    return _mask(close > cache.highest_before(entry), start), _mask(close < cache.lowest_before(exit_), start), start


@dataclass(frozen=True)
class Twin:
    """A strategy's vectorized twin: its signal function and whether it has passed the harness.

    `min_bars(params)` is Backtrader's minimum period of the strategy (its slowest
    indicator): a range with fewer bars is refused, as the runner refuses it
    (kubetrader.warmup); tests compare it with Backtrader's for each twin.
    """

    path: str
    signals: Callable[[IndicatorCache, Mapping[str, Any]], Signals]
    verified: bool
    fraction_param: str = "target"
    min_bars: Callable[[Mapping[str, Any]], int] = lambda _params: 1


TWINS: dict[str, Twin] = {
    twin.path: twin
    for twin in (
        Twin("strategies.sma_crossover.SMACrossover", sma_crossover, True, min_bars=lambda p: int(p["slow"])),
        # RSI smooths one-bar changes: its first value needs period + 1 closes
        Twin("strategies.rsi_momentum.RSIMomentum", rsi_momentum, True, min_bars=lambda p: int(p["period"]) + 1),
        Twin(
            "strategies.bollinger_reversion.BollingerReversion",
            bollinger_reversion,
            True,
            min_bars=lambda p: int(p["period"]),
        ),
        # the channels look at the previous bars (high(-1), low(-1)): one bar more
        Twin(
            "strategies.donchian_breakout.DonchianBreakout",
            donchian_breakout,
            True,
            min_bars=lambda p: max(int(p["entry"]), int(p["exit"])) + 1,
        ),
    )
}


def twin_for(path: str) -> Twin | None:
    """The registered twin of a strategy import path, if any."""
    return TWINS.get(path)
