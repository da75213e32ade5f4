"""Warm-up from IB history and replay-vs-backtest bar parity (issue #15 item 4), real ib_insync client.

The peer replays ORCL's daily bars on their own dates, each as 5-second bars inside that
day's NYSE session, and serves reqHistoricalData up to the replay's "now" (`dated_sessions`).
The runner asks for a year of daily history before it subscribes, hands it to the strategy
first (DELAYED: nothing is sent on those bars), then the live 5-second bars aggregated to
1d. A backtest of the same dates on the same file must see the same bars, in the same order,
with the same indicator values and decisions, bar by bar.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import backtrader as bt

from kubetrader.data import load_bars
from kubetrader.live.download import WARMUP
from kubetrader.live.ib_broker import IBBroker
from kubetrader.live.journal import Journal
from kubetrader.live.runner import LiveRunner
from kubetrader.live.session import Session, SessionConfig
from kubetrader.live.testing.tws_peer import TwsPeer, load_daily_bars
from kubetrader.specs import RiskSpec
from tests.helpers import free_port
from tests.live.probe_strategies import SmaProbe

LIVE_BARS = 8
FIRST_LIVE = dt.date(2012, 6, 1)


def backtest_rows(start: dt.date, end: dt.date) -> list[tuple[Any, ...]]:
    frame = load_bars("ORCL", start=start, end=end, adjust=False)  # IB's TRADES bars: as traded
    cerebro = bt.Cerebro(stdstats=False)
    cerebro.adddata(bt.feeds.PandasData(dataname=frame.tz_localize(None)))
    cerebro.addstrategy(SmaProbe, period=20)
    strategy = cerebro.run()[0]
    return [row[:-1] for row in strategy.seen]


def warm_run(journal: Journal, strategy: type[Any], params: dict[str, Any]) -> tuple[Any, TwsPeer, int]:
    """`strategy` run live on the dated replay of ORCL from FIRST_LIVE, warmed up from history; the
    strategy, the (stopped) peer and the index of the replay's "now" (the last history bar)."""
    start = next(i for i, b in enumerate(load_daily_bars("ORCL")) if b.date >= FIRST_LIVE) - 1
    with TwsPeer(port=free_port(), bar_interval=0.02, replay_start={"ORCL": start}, dated_sessions=True) as peer:
        config = SessionConfig(deployment="warm", symbols=["ORCL"], limits=RiskSpec(), timeframe="1d",
                               warmup=WARMUP["1d"])  # fmt: skip
        session = Session(IBBroker("127.0.0.1", peer.port, 1, timeout=5.0), journal, config)
        session.start()
        try:
            return LiveRunner(session, strategy, params).run(), peer, start
        finally:
            session.broker.disconnect()


def test_the_first_live_decision_and_every_bar_match_a_backtest_of_the_same_dates(journal: Journal) -> None:
    probe, peer, start = warm_run(journal, SmaProbe, {"period": 20, "live_bars": LIVE_BARS})
    daily = load_daily_bars("ORCL")
    assert peer.historical_requests == 1
    live = [row for row in probe.seen if row[-1]]
    assert len(live) == LIVE_BARS and live[0][0] == FIRST_LIVE
    history = [row for row in probe.seen if not row[-1]]
    assert len(history) > 200  # a year of daily bars, less the SMA's first 19
    assert history[-1][0] == daily[start].date  # the history ends where the live feed starts
    expected = backtest_rows(history[0][0] - dt.timedelta(days=40), live[-1][0])
    got = [row[:-1] for row in probe.seen]
    first = next(i for i, row in enumerate(expected) if row[0] == got[0][0])
    assert got == expected[first:]  # bar by bar: dates, OHLCV, SMA, decision
    assert live[0][6] == live[0][6] and live[0][6] > 0  # the SMA is ready at the first live bar (not NaN)
    assert live[0][7] == next(row[7] for row in expected if row[0] == FIRST_LIVE)  # the same first decision


def test_no_order_leaves_on_a_warm_up_bar(journal: Journal) -> None:
    """A strategy that trades on every bar: only its live bars reach the broker."""
    _, peer, _ = warm_run(journal, EveryBarBuyer, {"live_bars": 2})
    sent = peer.orders()
    assert 1 <= len(sent) <= 2 and len(journal.intents()) == len(sent)


class EveryBarBuyer(SmaProbe):
    def next(self) -> None:
        super().next()
        self.buy(size=1)
