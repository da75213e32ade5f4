"""The runner's faster per-bar path changes nothing (issue 20): FrameFeed's one-call preload and its own
`advance`/`advance_peek` leave every line and every `tick_*` price exactly as Backtrader's PandasData
does, bar for bar; and the runner's equity and gross exposure (the gate skipping BackBroker's per-bar
work on bars with nothing to do, the recorder reading the feed's arrays at the end for one feed) are
the values a per-bar analyzer reads from a stock BackBroker and PandasData, to the bit."""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import backtrader as bt
import numpy as np
import pytest

from kubetrader.costs import build_broker
from kubetrader.data import load_bars
from kubetrader.runner import BacktestRunner, FrameFeed
from strategies.sma_crossover import SMACrossover

TICKS = ("open", "high", "low", "close", "volume", "openinterest", "last")


def _bits(value: Any) -> Any:
    """A value compared by its bits (NaN equals NaN, -0.0 differs from 0.0); None stays None."""
    return None if value is None else float(value).hex()


class _Probe(bt.Strategy):
    """Records, at every bar, what the loop and the broker see of each feed."""

    def __init__(self) -> None:
        self.seen: list[tuple[Any, ...]] = []

    def prenext(self) -> None:
        self.next()

    def next(self) -> None:
        for data in self.datas:
            ticks = tuple(_bits(getattr(data, f"tick_{name}", None)) for name in TICKS)
            peek = data.advance_peek()
            self.seen.append((len(data), data.buflen(), _bits(data.datetime[0]), _bits(peek), ticks))


def _probe_run(feed: type, frames: list[Any], *, preload: bool, **feed_params: Any) -> tuple[list[Any], list[Any]]:
    cerebro = bt.Cerebro(stdstats=False, preload=preload, runonce=preload)
    for frame in frames:
        cerebro.adddata(feed(dataname=frame.tz_convert(None), openinterest=None, **feed_params))
    cerebro.addstrategy(_Probe)
    (strategy,) = cerebro.run()
    arrays = [[line.array.tobytes() for line in data.lines.lines] for data in strategy.datas]
    return strategy.seen, arrays


def _bars(store: Any, symbol: str, timeframe: str = "1d", start: str = "2005-01-01", end: str = "2014-12-31") -> Any:
    return load_bars(
        symbol, timeframe=timeframe, start=dt.date.fromisoformat(start), end=dt.date.fromisoformat(end), store=store
    )


@pytest.mark.parametrize("preload", [True, False], ids=["preloaded", "bar-by-bar"])
def test_frame_feed_moves_bar_to_bar_as_pandas_data_does(bundled_store: Any, preload: bool) -> None:
    frames = [_bars(bundled_store, "ORCL")]
    theirs = _probe_run(bt.feeds.PandasData, frames, preload=preload)
    ours = _probe_run(FrameFeed, frames, preload=preload)
    assert len(ours[0]) == len(frames[0]) > 2000
    assert ours == theirs


def test_frame_feeds_of_other_lengths_and_intraday_bars_move_as_pandas_data_does(bundled_store: Any) -> None:
    """Two feeds that do not start together (NVDA's bars begin later), and 5-minute bars."""
    daily = [_bars(bundled_store, "ORCL", start="1998-01-01"), _bars(bundled_store, "NVDA", start="1998-01-01")]
    assert daily[0].index[0] != daily[1].index[0]
    intraday = [_bars(bundled_store, "IDX2006", "5m", start="2006-01-01", end="2006-03-31")]
    for frames in (daily, intraday):
        assert _probe_run(FrameFeed, frames, preload=True) == _probe_run(bt.feeds.PandasData, frames, preload=True)


def test_a_frame_feed_with_a_date_range_loads_through_backtrader(bundled_store: Any) -> None:
    """Backtrader's own loading loop applies the range; the faster preload is only for the plain case."""
    frames = [_bars(bundled_store, "ORCL")]
    window = {"fromdate": dt.datetime(2008, 3, 1), "todate": dt.datetime(2009, 6, 30)}
    ours = _probe_run(FrameFeed, frames, preload=True, **window)
    assert ours == _probe_run(bt.feeds.PandasData, frames, preload=True, **window)
    assert 300 < len(ours[0]) < 400


class _PerBarReference(bt.Analyzer):
    """The recorder as it was: at every bar the broker's value, the latest feed time, and the gross
    position value from `getposition` and each feed's close."""

    def __init__(self) -> None:
        self.rows: list[tuple[float, float, float]] = []

    def notify_cashvalue(self, cash: float, value: float) -> None:
        broker = self.strategy.broker
        when = max(data.datetime[0] for data in self.datas if len(data))
        gross = 0.0
        for data in self.datas:
            size = broker.getposition(data).size
            if size:
                gross += abs(size) * data.close[0]
        self.rows.append((when, value, gross))


def _reference(spec: Any, frames: dict[str, Any]) -> list[tuple[float, float, float]]:
    cerebro = bt.Cerebro(stdstats=False, tradehistory=True)
    cerebro.broker = build_broker(spec.broker)  # CostBroker: BackBroker's own `next` on every bar
    for symbol in spec.data.symbols:
        cerebro.adddata(bt.feeds.PandasData(dataname=frames[symbol].tz_convert(None), openinterest=None), name=symbol)
    cerebro.addstrategy(SMACrossover, **spec.strategy.params)
    cerebro.addanalyzer(_PerBarReference, _name="reference")
    (strategy,) = cerebro.run()
    return list(strategy.analyzers.reference.rows)


@pytest.mark.parametrize("symbols", [("ORCL",), ("ORCL", "NVDA")], ids=["one-feed", "two-feeds"])
def test_the_recorded_equity_and_exposure_are_the_per_bar_values(
    bundled_store: Any, make_spec: Any, symbols: tuple[str, ...]
) -> None:
    spec = make_spec(params={"fast": 10, "slow": 30}, symbols=symbols, start="2003-01-01", end="2012-12-31")
    runner = BacktestRunner(spec, store=bundled_store)
    result = runner.run()
    rows = _reference(spec, runner.load_data())
    times, values, gross = (np.array(column) for column in zip(*rows, strict=True))
    bar_equity = result.bar_equity
    assert len(bar_equity) == len(rows) > 2000
    assert [_bits(v) for v in bar_equity.to_numpy()] == [_bits(v) for v in values]
    assert [d.date() for d in bar_equity.index] == [bt.num2date(t).date() for t in times]
    exposure = np.divide(gross, values, out=np.zeros_like(gross), where=values != 0)
    assert [_bits(v) for v in result.exposure.to_numpy()] == [_bits(v) for v in exposure]  # daily bars: one a day
    assert exposure.max() > 0.5 and not math.isnan(exposure.sum())
