"""Warm-up for intraday timeframes from IB history, within IB's limits (issue #15 item 4, intraday).

IB's limits for reqHistoricalData (https://interactivebrokers.github.io/tws-api/historical_limitations.html):
a longest duration per bar size (1 D of 1 min bars, 1 W of 5 mins, 1 M of 1 hour, 1 Y of 1 day;
longer: error 162 "Time length exceed max."), and the pacing rules (error 162 "... pacing
violation"). The peer refuses as IB does; the runner's warm-up pages back from now in requests
of the longest allowed duration, paced, and makes a refused request again after a pause.

The peer replays the bundled 5-minute bars of IDX2006 on their own timestamps, each as 5-second
bars inside its 5 minutes, and answers historical requests only up to the replay's "now". The
live bars are cut on a round-the-clock calendar ("24/7": the file's own 5-minute grid, UTC), so
a backtest of the store's 5-minute bars of the same dates (for 1h: resampled to UTC hours) must
see the same bars, bar by bar. (1m: the peer has no 1-minute data; its plan is checked against
IB's limits only.)
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import backtrader as bt
import pytest

from kubetrader.data import load_bars
from kubetrader.live.broker import BrokerUnavailableError
from kubetrader.live.download import RESOLUTIONS, WARMUP, Pacer, page_back
from kubetrader.live.ib_broker import IBBroker
from kubetrader.live.journal import Journal
from kubetrader.live.runner import LiveRunner
from kubetrader.live.session import Session, SessionConfig
from kubetrader.live.testing import history as hmds
from kubetrader.live.testing.tws_peer import TwsPeer
from kubetrader.specs import RiskSpec
from tests.helpers import free_port
from tests.live.probe_strategies import SmaProbe

SYMBOL = "IDX2006"
FIRST_LIVE = dt.datetime(2006, 1, 17, 10, 0, tzinfo=dt.UTC)
LIVE_BARS = 6


def connected(peer: TwsPeer, client_id: int) -> IBBroker:
    broker = IBBroker("127.0.0.1", peer.port, client_id, timeout=10.0)
    broker.connect()
    return broker


@pytest.mark.parametrize(
    ("bar_size", "longest", "too_long"),
    [("1 min", "1 D", "2 D"), ("5 mins", "1 W", "8 D"), ("1 hour", "1 M", "32 D"), ("1 day", "1 Y", "2 Y")],
)
def test_the_peer_refuses_a_duration_past_ibs_limit_for_the_bar_size(
    bar_size: str, longest: str, too_long: str
) -> None:
    with TwsPeer(port=free_port()) as peer:
        broker = connected(peer, 31)
        try:
            broker.historical_bars(SYMBOL, None, longest, bar_size)  # allowed (1 min: the peer has no such data)
            with pytest.raises(BrokerUnavailableError, match=r"IB error 162: .*Time length exceed max\."):
                broker.historical_bars(SYMBOL, None, too_long, bar_size)
            with pytest.raises(BrokerUnavailableError, match=r"IB error 321: .*bar size setting is invalid"):
                broker.historical_bars(SYMBOL, None, "1 D", "7 mins")
        finally:
            broker.disconnect()
    assert [code for _, _, code in peer.refused_historical] == [162, 321]
    assert peer.historical_requests == 1  # a refused request is not served


def test_every_warmup_plan_asks_for_no_more_than_ib_allows_per_request() -> None:
    for timeframe, plan in WARMUP.items():
        assert hmds.check_request(plan.resolution.bar_size, plan.resolution.duration) is None, timeframe
    for res in RESOLUTIONS.values():
        assert hmds.check_request(res.bar_size, res.duration) is None, res
        assert hmds.check_request(res.bar_size, f"{res.chunk_days} D") is None, res  # a download chunk too


def store_bars(start: dt.date, end: dt.date) -> list[tuple[Any, ...]]:
    frame = load_bars(SYMBOL, timeframe="5m", start=start, end=end)
    return [(t.to_pydatetime(), r.open, r.high, r.low, r.close, r.volume) for t, r in zip(
        frame.index, frame.itertuples(index=False), strict=True)]  # fmt: skip


def test_a_pacing_violation_is_made_good_without_losing_or_duplicating_a_bar() -> None:
    """The peer allows only 2 requests per 10 minutes (as IB's throttle may, or another client of the
    login using the budget): the third request is refused with 162, the warm-up pauses (15 s, then
    doubling, on a clock shared with the peer) and makes it again; every bar arrives once."""
    clock = [1_000.0]

    def sleep(seconds: float) -> None:
        clock[0] += seconds

    bars = hmds.load_intraday_bars(SYMBOL)
    bars_total = len(bars)
    since = bars[-1].start + dt.timedelta(minutes=5) - dt.timedelta(weeks=4)  # four weeks back from "now"
    with TwsPeer(port=free_port(), historical_limit=(2, 600.0), clock=lambda: clock[0],
                 replay_start={SYMBOL: bars_total - 1}) as peer:  # fmt: skip
        broker = connected(peer, 32)
        try:
            pacer = Pacer(clock=lambda: clock[0], sleep=sleep)
            got = page_back(broker, SYMBOL, RESOLUTIONS["5min"], 4, pacer, now=dt.datetime.now(dt.UTC))
        finally:
            broker.disconnect()
    assert [code for _, _, code in peer.refused_historical] == [162] * len(peer.refused_historical)
    assert len(peer.refused_historical) >= 1  # the violation happened
    assert peer.historical_requests == 4 and all(d == "1 W" for _, _, d, _ in peer.historical_log)
    expected = [row for row in store_bars(dt.date(2006, 1, 1), dt.date(2006, 1, 31)) if row[0] >= since]
    assert len(got) == len({b.time for b in got}) == len(expected) > 2000  # nothing twice, nothing lost
    assert [(b.time, b.open, b.high, b.low, b.close, b.volume) for b in got] == expected
    assert clock[0] - 1_000.0 >= 600.0  # it waited out IB's window, on the shared clock


def test_an_hourly_warmup_pages_back_a_month_at_a_time() -> None:
    bars = hmds.load_intraday_bars(SYMBOL)
    with TwsPeer(port=free_port(), replay_start={SYMBOL: len(bars) - 1}) as peer:
        broker = connected(peer, 33)
        try:
            got = page_back(broker, SYMBOL, RESOLUTIONS["hour"], 2, Pacer(), now=dt.datetime.now(dt.UTC))
        finally:
            broker.disconnect()
    hours = hmds.aggregate(bars, 3600)
    assert [(b.time, b.open, b.high, b.low, b.close, b.volume) for b in got] == [
        (h.start, h.open, h.high, h.low, h.close, h.volume) for h in hours]  # fmt: skip
    assert [(d, s) for _, _, d, s in peer.historical_log] == [("1 M", "1 hour")] * 2


def backtest_rows(start: dt.date, end: dt.date, timeframe: str) -> list[tuple[Any, ...]]:
    """The probe's rows in a backtest of the store's 5-minute bars; hourly: those bars resampled to
    UTC hours (labelled by their start), the only hourly bars of these dates there are."""
    frame = load_bars(SYMBOL, timeframe="5m", start=start, end=end)
    if timeframe == "1h":
        ohlcv = {"open": "first", "high": "max", "low": "min", "close": "last", "volume": "sum"}
        frame = frame.resample("1h", label="left", closed="left").agg(ohlcv).dropna()
    cerebro = bt.Cerebro(stdstats=False)
    cerebro.adddata(bt.feeds.PandasData(dataname=frame.tz_localize(None)))
    cerebro.addstrategy(SmaProbe, period=20, intraday=True)
    strategy = cerebro.run()[0]
    return [row[:-1] for row in strategy.seen]


@pytest.mark.parametrize("timeframe", ["5m", "1h"])
@pytest.mark.parametrize("mid_bar_join", [0, 2], ids=["subscribed-at-a-bar-start", "subscribed-mid-bar"])
def test_the_intraday_warmup_and_the_first_live_decision_match_a_backtest_of_the_same_dates(
    journal: Journal, mid_bar_join: int, timeframe: str
) -> None:
    """Subscribed mid-bar, the first live bar misses its beginning (the warm-up left it out while it
    was forming): the session takes it from IB's history once it has ended, so the strategy's
    first live bar is the whole bar, as in the backtest."""
    bars = hmds.load_intraday_bars(SYMBOL)
    start = next(i for i, b in enumerate(bars) if b.start >= FIRST_LIVE) - 1  # the replay's "now"
    with TwsPeer(port=free_port(), bar_interval=0.02, replay_start={SYMBOL: start}) as peer:
        peer.mid_bar_join = mid_bar_join
        config = SessionConfig(deployment="warm", symbols=[SYMBOL], limits=RiskSpec(), timeframe=timeframe,
                               warmup=WARMUP[timeframe], calendar="24/7")  # fmt: skip
        session = Session(IBBroker("127.0.0.1", peer.port, 1, timeout=10.0), journal, config)
        session.start()
        try:
            probe = LiveRunner(session, SmaProbe, {"period": 20, "live_bars": LIVE_BARS, "intraday": True}).run()
        finally:
            session.broker.disconnect()
    # within IB's limit; and one more for the first live bar when it began before the subscription
    res = WARMUP[timeframe].resolution
    requests = [(d, s) for _, _, d, s in peer.historical_log]
    assert requests == [(res.duration, res.bar_size)] * (3 if mid_bar_join else 2)
    partial = journal.events("partial_bar")
    assert [e["detail"]["from_history"] for e in partial] == ([True] if mid_bar_join else [])
    live = [row for row in probe.seen if row[-1]]
    history = [row for row in probe.seen if not row[-1]]
    assert len(live) == LIVE_BARS and live[0][0] == FIRST_LIVE.replace(tzinfo=None)
    last_history = FIRST_LIVE - dt.timedelta(minutes=5 if timeframe == "5m" else 60)
    assert history[-1][0] == last_history.replace(tzinfo=None)  # the history ends where the live feed starts
    assert history[0][0].date() <= dt.date(2006, 1, 4)  # two weeks (two months) back: the file's start
    expected = backtest_rows(dt.date(2006, 1, 2), live[-1][0].date(), timeframe)
    got = [row[:-1] for row in probe.seen]
    first = next(i for i, row in enumerate(expected) if row[0] == got[0][0])
    assert got == expected[first : first + len(got)]  # bar by bar: times, OHLCV, SMA, decision
    assert live[0][6] > 0 and live[0][7] == next(row[7] for row in expected if row[0] == live[0][0])
