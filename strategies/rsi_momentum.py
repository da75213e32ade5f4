"""RSI momentum, long only: ride strength, leave on weakness."""

from __future__ import annotations

from typing import Any

import backtrader as bt

from strategies.base_strategy import BaseStrategy


class RSIMomentum(BaseStrategy):
    """Go long when RSI is above `entry`; go flat when it falls below `exit`.

    Rules, per symbol, evaluated at the close of bar t (market orders filled at bar
    t+1's open, with the broker's slippage and commission):

    - RSI is Wilder's: up[t] = max(close[t] - close[t-1], 0), down[t] = max(close[t-1]
      - close[t], 0); each is smoothed with Wilder's average (the first value is the
      simple mean of the first `period` changes, then avg[t] = avg[t-1] + (x[t] -
      avg[t-1]) / period); RSI = 100 - 100 / (1 + avg_up / avg_down), and 100 when
      avg_down is 0 (50 when both are 0). The first RSI is at bar index `period`.
    - Entry: flat, no order waiting, RSI[t] > entry: buy floor(target / n_symbols *
      equity[t] / close[t]) shares.
    - Exit: long, no order waiting, RSI[t] < exit: sell the whole position.
    """

    params = (
        ("period", 14),  # RSI look-back in bars
        ("entry", 60.0),  # RSI above this opens a long
        ("exit", 40.0),  # RSI below this closes it
        ("target", 0.95),  # fraction of equity invested on entry, split evenly across symbols
    )

    def __init__(self) -> None:
        super().__init__()
        if not 0 <= self.p.exit <= self.p.entry <= 100:
            raise ValueError(f"need 0 <= exit <= entry <= 100, got exit={self.p.exit}, entry={self.p.entry}")
        self.rsi: dict[Any, Any] = {
            data: bt.indicators.RSI(data.close, period=self.p.period, safediv=True) for data in self.datas
        }

    def next(self) -> None:
        share = self.p.target / len(self.datas)
        for data in self.datas:
            if self.has_open_order(data):
                continue
            rsi = self.rsi[data][0]
            position = self.getposition(data).size
            if not position and rsi > self.p.entry:
                self.buy(data=data, size=self.entry_size(data, share))
            elif position > 0 and rsi < self.p.exit:
                self.close(data=data)
