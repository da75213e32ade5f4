"""Enough bars for the slowest indicator: one check and one message for the engine and the twins.

Backtrader computes a strategy's indicators over the whole preloaded feed before the
first `next`; a feed shorter than the strategy's minimum period (the slowest
indicator's window, e.g. 50 bars for SMA 50) ends in `IndexError: array assignment
index out of range` deep inside Backtrader. The runner calls `check_warmup` so the run
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


def check_warmup(strategy: Any) -> None:
    """Refuse the run when a feed has fewer bars than the strategy's minimum period for it.

    Call it from an analyzer's `start` (the runner's recorder does): analyzers start after the
    strategy's `__init__` has built its indicators and Backtrader has set the per-feed minimum
    periods (`Strategy._periodset`), and before the indicators are computed, which is exactly
    when the check can be made. A function rather than an analyzer of its own: Backtrader calls
    every analyzer three times a bar (`_notify_cashvalue`, `_notify_fund`, `_next`), about 3 %
    of a daily run for a check that is done before the first bar."""
    for data, needed in zip(strategy.datas, strategy._minperiods, strict=True):
        have = data.buflen()
        if have < needed:
            stamps = data.datetime.array
            first, last = (bt.num2date(stamps[0]), bt.num2date(stamps[have - 1])) if have else (None, None)
            raise not_enough_bars(data._name, needed, have, first, last)
