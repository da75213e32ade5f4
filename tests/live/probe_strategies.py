"""Test-only strategies for live runs (loaded with KUBETRADER_STRATEGY_PREFIXES including this module)."""

from __future__ import annotations

from typing import Any

import backtrader as bt

from strategies.base_strategy import BaseStrategy


class BuyOnce(BaseStrategy):
    """Buys `size` shares on its first bar and holds: one entry, so one bracket at the broker."""

    params: tuple[tuple[str, Any], ...] = (("size", 100),)

    def next(self) -> None:
        if len(self) == 1:
            self.buy(size=self.p.size)


class SmaProbe(bt.Strategy):
    """Records every bar it is handed and its decision (a close crossing its SMA), so a live run and a
    backtest of the same dates can be compared bar by bar; stops after `live_bars` live bars."""

    # intraday: stamp rows with the bar's datetime (UTC, naive), not its date
    params: tuple[tuple[str, Any], ...] = (("period", 20), ("live_bars", 0), ("intraday", False))

    def __init__(self) -> None:
        self.sma = bt.ind.SMA(self.data.close, period=self.p.period)
        self.cross = bt.ind.CrossOver(self.data.close, self.sma)
        self.seen: list[tuple[Any, ...]] = []  # (date, open, high, low, close, volume, sma, decision, live)

    def next(self) -> None:
        d = self.data
        decision = "buy" if self.cross[0] > 0 else "sell" if self.cross[0] < 0 else "hold"
        live = d._laststatus == d.LIVE
        stamp = d.datetime.datetime(0) if self.p.intraday else d.datetime.date(0)
        self.seen.append((stamp, d.open[0], d.high[0], d.low[0], d.close[0], d.volume[0],
                          self.sma[0], decision, live))  # fmt: skip
        if live and self.p.live_bars and sum(1 for row in self.seen if row[-1]) >= self.p.live_bars:
            self.env.runstop()
