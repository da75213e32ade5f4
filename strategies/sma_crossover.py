"""Simple moving average crossover, long only."""

from __future__ import annotations

from typing import Any

import backtrader as bt

from strategies.base_strategy import BaseStrategy


class SMACrossover(BaseStrategy):
    """Go long when the fast SMA crosses above the slow SMA; go flat when it crosses below.

    Rules, per symbol, evaluated at the close of bar t (orders are market orders
    filled at bar t+1's open, with the broker's slippage and commission):

    - fast[t], slow[t]: simple means of the last `fast` / `slow` closes (bar t included).
    - Entry: flat, no order waiting, fast[t] > slow[t] and fast[t-1] <= slow[t-1]:
      buy floor(target / n_symbols * equity[t] / close[t]) shares, where equity[t]
      is the portfolio value at bar t's close.
    - Exit: long, no order waiting, fast[t] < slow[t] and fast[t-1] >= slow[t-1]:
      sell the whole position.
    - The first decision is taken on the first bar where slow[t-1] exists (bar index
      `slow`, counting from 0). A buy the cash cannot pay at the fill is rejected
      by the broker and not retried.

    `target` below 1 leaves room for a gap up, slippage and commission (0.95 by default).
    """

    params = (
        ("fast", 10),  # bars in the fast average
        ("slow", 30),  # bars in the slow average
        ("target", 0.95),  # fraction of equity invested on entry, split evenly across symbols
    )

    def __init__(self) -> None:
        super().__init__()
        if not 0 < self.p.fast < self.p.slow:
            raise ValueError(f"need 0 < fast < slow, got fast={self.p.fast}, slow={self.p.slow}")
        self.fast_ma: dict[Any, Any] = {}
        self.slow_ma: dict[Any, Any] = {}
        for data in self.datas:
            self.fast_ma[data] = bt.indicators.SimpleMovingAverage(data.close, period=self.p.fast)
            self.slow_ma[data] = bt.indicators.SimpleMovingAverage(data.close, period=self.p.slow)

    def next(self) -> None:
        share = self.p.target / len(self.datas)
        for data in self.datas:
            if len(data) <= self.p.slow or self.has_open_order(data):
                continue  # slow[t-1] does not exist yet, or an order is on its way
            fast, slow = self.fast_ma[data], self.slow_ma[data]
            position = self.getposition(data).size
            if not position and fast[0] > slow[0] and fast[-1] <= slow[-1]:
                self.buy(data=data, size=self.entry_size(data, share))
            elif position > 0 and fast[0] < slow[0] and fast[-1] >= slow[-1]:
                self.close(data=data)
