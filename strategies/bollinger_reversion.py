"""Bollinger band mean reversion, long only."""

from __future__ import annotations

from typing import Any

import backtrader as bt

from strategies.base_strategy import BaseStrategy


class BollingerReversion(BaseStrategy):
    """Buy a close below the lower band; sell when the close gets back to the middle band.

    Rules, per symbol, evaluated at the close of bar t (market orders filled at bar
    t+1's open, with the broker's slippage and commission):

    - mid[t] = mean of the last `period` closes; sd[t] = their population standard
      deviation (divide by `period`); lower[t] = mid[t] - devs * sd[t]. The first
      band is at bar index `period - 1`.
    - Entry: flat, no order waiting, close[t] < lower[t]: buy floor(target /
      n_symbols * equity[t] / close[t]) shares.
    - Exit: long, no order waiting, close[t] >= mid[t]: sell the whole position.
    """

    params = (
        ("period", 20),  # bars in the average and the deviation
        ("devs", 2.0),  # band width in standard deviations
        ("target", 0.95),  # fraction of equity invested on entry, split evenly across symbols
    )

    def __init__(self) -> None:
        super().__init__()
        if self.p.period < 2 or self.p.devs <= 0:
            raise ValueError(f"need period >= 2 and devs > 0, got period={self.p.period}, devs={self.p.devs}")
        self.bands: dict[Any, Any] = {
            data: bt.indicators.BollingerBands(data.close, period=self.p.period, devfactor=self.p.devs)
            for data in self.datas
        }

    def next(self) -> None:
        share = self.p.target / len(self.datas)
        for data in self.datas:
            if self.has_open_order(data):
                continue
            bands = self.bands[data]
            close = data.close[0]
            position = self.getposition(data).size
            if not position and close < bands.bot[0]:
                self.buy(data=data, size=self.entry_size(data, share))
            elif position > 0 and close >= bands.mid[0]:
                self.close(data=data)
