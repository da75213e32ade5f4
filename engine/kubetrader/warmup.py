"""Enough bars for the slowest indicator: one check and one message for the engine and the twins.

Backtrader computes a strategy's indicators over the whole preloaded feed before the
first `next`; a feed shorter than the strategy's minimum period (the slowest
indicator's window, e.g. 50 bars for SMA 50) ends in `IndexError: array assignment
index out of range` deep inside Backtrader. The runner adds `WarmupCheck` so the run
stops before that with a message that says what is wrong; each vectorized twin states
the same minimum (`Twin.min_bars`, checked against Backtrader's in tests) and refuses
with the same words.
"""

from __future__ import annotations

from typing import Any

import backtrader as bt

from kubetrader.errors import DataError


def not_enough_bars(symbol: str, needed: int, have: int, first: Any = None, last: Any = None) -> DataError:
    """The error for a range of `have` bars of `symbol` (from `first` to `last`) when `needed` are required."""
    span = f" ({first:%Y-%m-%d} .. {last:%Y-%m-%d})" if have and first is not None and last is not None else ""
    return DataError(f"{symbol}: not enough bars: the strategy needs at least {needed}, the range has {have}{span}")


class WarmupCheck(bt.Analyzer):
    """Refuses the run when a feed has fewer bars than the strategy's minimum period for it.

    Analyzers start after the strategy's `__init__` has built its indicators and
    Backtrader has set the per-feed minimum periods (`Strategy._periodset`), and
    before the indicators are computed, which is exactly when the check can be made.
    """

    def start(self) -> None:
        for data, needed in zip(self.strategy.datas, self.strategy._minperiods, strict=True):
            have = data.buflen()
            if have < needed:
                stamps = data.datetime.array
                first, last = (bt.num2date(stamps[0]), bt.num2date(stamps[have - 1])) if have else (None, None)
                raise not_enough_bars(data._name, needed, have, first, last)
