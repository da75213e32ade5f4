"""Donchian channel breakout, long only (the turtle rule, without pyramiding or stops)."""

from __future__ import annotations

from typing import Any

import backtrader as bt

from strategies.base_strategy import BaseStrategy


class DonchianBreakout(BaseStrategy):
    """Buy a close above the highest high of the previous `entry` bars; sell below the lowest low of `exit` bars.

    Rules, per symbol, evaluated at the close of bar t (market orders filled at bar
    t+1's open, with the broker's slippage and commission):

    - upper[t] = max(high[t-entry] .. high[t-1]); lower[t] = min(low[t-exit] ..
      low[t-1]) (bar t itself excluded). The first decision is at bar index
      max(entry, exit).
    - Entry: flat, no order waiting, close[t] > upper[t]: buy floor(target /
      n_symbols * equity[t] / close[t]) shares.
    - Exit: long, no order waiting, close[t] < lower[t]: sell the whole position.
    """

    params = (
        ("entry", 20),  # bars in the breakout channel
        ("exit", 10),  # bars in the exit channel
        ("target", 0.95),  # fraction of equity invested on entry, split evenly across symbols
    )

    def __init__(self) -> None:
        super().__init__()
        if self.p.entry < 1 or self.p.exit < 1:
            raise ValueError(f"need entry >= 1 and exit >= 1, got entry={self.p.entry}, exit={self.p.exit}")
        self.upper: dict[Any, Any] = {}
        self.lower: dict[Any, Any] = {}
        for data in self.datas:
            self.upper[data] = bt.indicators.Highest(data.high(-1), period=self.p.entry)
            self.lower[data] = bt.indicators.Lowest(data.low(-1), period=self.p.exit)

    def next(self) -> None:
        share = self.p.target / len(self.datas)
        for data in self.datas:
            if self.has_open_order(data):
                continue
            close = data.close[0]
            position = self.getposition(data).size
            if not position and close > self.upper[data][0]:
                self.buy(data=data, size=self.entry_size(data, share))
            elif position > 0 and close < self.lower[data][0]:
                self.close(data=data)
