"""Live bars at the spec's timeframe (issue #15 item 4): 5-second bars aggregated on the exchange calendar."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from kubetrader.live.bars import BarAggregator
from kubetrader.live.broker import Bar
from kubetrader.live.connection import RetryPolicy
from kubetrader.live.ib_broker import IBBroker
from kubetrader.live.journal import Journal
from kubetrader.live.session import Session, SessionConfig
from kubetrader.live.testing.tws_peer import TwsPeer, load_daily_bars
from kubetrader.specs import RiskSpec
from tests.helpers import free_port
from tests.live.test_live_ib import pump_until

UTC = dt.UTC


def five_second_bars(start: dt.datetime, count: int, price: float = 10.0) -> list[Bar]:
    """`count` 5-second bars from `start`, each one cent higher, its low a cent under its open."""
    return [
        Bar("ORCL", start + dt.timedelta(seconds=5 * i), price + i / 100, price + i / 100 + 0.02,
            price + i / 100 - 0.01, price + i / 100 + 0.01, 100.0)
        for i in range(count)
    ]  # fmt: skip


def feed(agg: BarAggregator, bars: list[Bar]) -> list[Bar]:
    out: list[Bar] = []
    for bar in bars:
        out += agg.add(bar)
    return out


def test_five_minute_bars_start_at_the_open_and_carry_the_ohlcv_of_their_sixty_5_second_bars() -> None:
    opening = dt.datetime(2024, 1, 2, 14, 30, tzinfo=UTC)  # 09:30 New York
    got = feed(BarAggregator("ORCL", "5m"), five_second_bars(opening, 120))
    assert [b.time for b in got] == [opening, opening + dt.timedelta(minutes=5)]
    first = got[0]
    assert (first.open, first.high, first.low, first.close, first.volume) == (10.0, 10.61, 9.99, 10.6, 6000.0)


def test_no_bar_spans_the_session_break_and_the_last_hour_bar_ends_at_the_close() -> None:
    late = dt.datetime(2024, 1, 2, 20, 45, tzinfo=UTC)  # 15:45 New York; the close is 16:00 (21:00 UTC)
    next_open = dt.datetime(2024, 1, 3, 14, 30, tzinfo=UTC)
    agg = BarAggregator("ORCL", "1h")
    got = feed(agg, five_second_bars(late, 180) + five_second_bars(next_open, 12, price=20.0))
    assert [b.time for b in got] == [dt.datetime(2024, 1, 2, 20, 30, tzinfo=UTC)]  # the 20:30-21:00 bar, cut
    assert got[0].volume == 180 * 100.0  # the after-hours prints (after 21:00) are in no bar
    assert agg.flush()[0].open == 20.0  # the next session's bar starts fresh


def test_a_daily_bar_is_the_whole_session_and_closes_at_an_early_close() -> None:
    opening = dt.datetime(2024, 11, 29, 14, 30, tzinfo=UTC)  # the day after Thanksgiving: closes 13:00 New York
    bars = five_second_bars(opening, 7 * 360)  # 3.5 hours
    got = feed(BarAggregator("ORCL", "1d"), bars)
    assert len(got) == 1 and got[0].time == dt.datetime(2024, 11, 29, tzinfo=UTC)
    assert got[0].close == bars[-1].close and got[0].volume == len(bars) * 100.0


def test_holidays_and_repeated_bars_make_no_bar() -> None:
    agg = BarAggregator("ORCL", "1m")
    christmas = dt.datetime(2024, 12, 25, 15, 0, tzinfo=UTC)
    assert feed(agg, five_second_bars(christmas, 24)) == []
    opening = dt.datetime(2024, 12, 26, 14, 30, tzinfo=UTC)
    bars = five_second_bars(opening, 12)
    got = feed(agg, [*bars[:6], bars[5], *bars[6:]])  # a resubscription repeats the latest bar
    assert len(got) == 1 and got[0].volume == 1200.0


def test_a_session_on_the_peer_hands_the_strategy_bars_of_the_spec_timeframe_not_5_second_bars(
    tmp_path: Path,
) -> None:
    """The defect: with IB, `timeframe: 5m` gave the strategy the raw 5-second bars."""
    daily = load_daily_bars("ORCL")
    with TwsPeer(port=free_port(), bar_interval=0.005, replay_start={"ORCL": 0}) as peer:
        journal = Journal(f"sqlite:///{tmp_path / 'j.db'}", deployment="bars")
        config = SessionConfig("bars", ["ORCL"], RiskSpec(), health_interval=5.0, timeframe="5m",
                               retry=RetryPolicy(attempts=3, base_delay=0.1))  # fmt: skip
        session = Session(IBBroker("127.0.0.1", peer.port, 1, timeout=3.0), journal, config)
        session.start()
        try:
            pump_until(session, lambda: len(session.bars["ORCL"]) >= 2, "two 5-minute bars", timeout=30)
        finally:
            session.broker.disconnect()
            journal.close()
    first, second = list(session.bars["ORCL"])[:2]
    opening = dt.datetime(2024, 1, 2, 14, 30, tzinfo=UTC)
    assert [first.time, second.time] == [opening, opening + dt.timedelta(minutes=5)]
    rows = daily[60:120]  # replayed bar i starts at the open + 5 i s: the second bar is i = 60..119
    assert (second.open, second.close) == (rows[0].open, rows[-1].close)
    assert second.high == max(r.high for r in rows) and second.low == min(r.low for r in rows)
    assert second.volume == sum(r.volume for r in rows)
