"""Trading state survives a restart, and the account is reconciled with the broker's.

Real ib_insync client against the TWS peer. A peer replaying a flat price (100.00) makes
every equity change a known number: the round trip's commissions.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest

from kubetrader.live.broker import OrderRequest
from kubetrader.live.connection import RetryPolicy
from kubetrader.live.ib_broker import IBBroker
from kubetrader.live.journal import Journal
from kubetrader.live.session import Session, SessionConfig
from kubetrader.live.testing.tws_peer import TwsPeer
from kubetrader.risk import TradingState
from kubetrader.specs import RiskSpec
from tests.helpers import free_port, wait_until


@pytest.fixture
def flat_peer(tmp_path: Path) -> Iterator[TwsPeer]:
    """A peer whose only symbol, FLAT, trades at 100.00 on every bar."""
    data = tmp_path / "peer-data"
    data.mkdir()
    day = dt.date(2020, 1, 1)
    rows = [f"{day + dt.timedelta(days=i)},100,100,100,100,100,1000000" for i in range(2000)]
    (data / "flat-2020.txt").write_text("Date,Open,High,Low,Close,Adj Close,Volume\n" + "\n".join(rows) + "\n")
    peer = TwsPeer(port=free_port(), data_dir=data, bar_interval=0.01)
    peer.start()
    yield peer
    peer.stop()


def start(peer: TwsPeer, journal: Journal, limits: RiskSpec, *, reconcile_interval: float = 60.0) -> Session:
    broker = IBBroker("127.0.0.1", peer.port, 1, timeout=3.0)
    retry = RetryPolicy(attempts=3, base_delay=0.1)
    config = SessionConfig(
        "persist", ["FLAT"], limits, health_interval=5.0, retry=retry, reconcile_interval=reconcile_interval
    )
    session = Session(broker, journal, config)
    session.start()
    pump(session, lambda: "FLAT" in session.prices, "a first bar")
    return session


def pump(session: Session, condition: object, what: str) -> None:
    def step() -> object:
        session.pump(0.02)
        return condition()  # type: ignore[operator]

    wait_until(step, timeout=10, interval=0.0, what=what)


def crash(session: Session) -> None:
    """The runner dies: the socket goes, nothing is said or saved on the way out."""
    session.broker.disconnect()


def test_the_kill_switch_survives_a_restart_and_holds_before_the_first_order(
    flat_peer: TwsPeer, journal: Journal
) -> None:
    first = start(flat_peer, journal, RiskSpec())
    first.commands.put("halt")
    first.pump(0.0)
    assert first.risk.state is TradingState.REDUCING
    crash(first)

    second = start(flat_peer, journal, RiskSpec())
    try:
        assert second.risk.state is TradingState.REDUCING and second.halted == "kill switch"
        refused = second.submit(OrderRequest("kt-after-restart", "FLAT", "BUY", 10))
        assert refused is not None and refused.startswith("REDUCING: kill switch")
        assert flat_peer.place_orders_received == []
        second.commands.put("resume")
        second.pump(0.0)
        assert second.risk.state is TradingState.ACTIVE
        assert second.submit(OrderRequest("kt-resumed", "FLAT", "BUY", 10)) is None
    finally:
        crash(second)


def test_a_daily_loss_halt_and_its_baseline_survive_a_restart(flat_peer: TwsPeer, journal: Journal) -> None:
    limits = RiskSpec(max_daily_loss=0.00005)  # $50 of 1,000,000: the round trip's $100 of commissions
    first = start(flat_peer, journal, limits)
    baseline = first.day_start_equity
    assert baseline == 1_000_000.0
    assert first.submit(OrderRequest("kt-rt-buy", "FLAT", "BUY", 10_000)) is None
    assert first.submit(OrderRequest("kt-rt-sell", "FLAT", "SELL", 10_000)) is None
    pump(first, lambda: first.risk.halted_day is not None, "the daily-loss halt")
    crash(first)

    second = start(flat_peer, journal, limits)
    try:
        assert second.day_start_equity == baseline  # not today's lower equity
        assert second.risk.state is TradingState.REDUCING and "daily loss" in (second.halted or "")
        refused = second.submit(OrderRequest("kt-again", "FLAT", "BUY", 10))
        assert refused is not None and "daily loss" in refused
        assert [ref for _, _, ref in flat_peer.place_orders_received] == ["kt-rt-buy", "kt-rt-sell"]
    finally:
        crash(second)


def test_a_position_the_journal_does_not_know_halts_at_start_with_the_reason(
    flat_peer: TwsPeer, journal: Journal
) -> None:
    first = start(flat_peer, journal, RiskSpec())
    assert first.submit(OrderRequest("kt-own", "FLAT", "BUY", 100)) is None
    pump(first, lambda: journal.positions() == {"FLAT": 100}, "the fill journaled")
    crash(first)
    flat_peer.seed_position("FLAT", 250)  # someone trades the account by hand while the runner is down

    second = start(flat_peer, journal, RiskSpec())
    try:
        assert second.risk.state is TradingState.HALTED
        assert "FLAT: the journal holds 100, the broker 250" in (second.halted or "")
        refused = second.submit(OrderRequest("kt-blind", "FLAT", "SELL", 10))
        assert refused is not None and refused.startswith("HALTED:")
        assert second.positions["FLAT"].quantity == 250  # the broker's account is adopted, trading stops
    finally:
        crash(second)


def test_a_fill_during_a_socket_cut_is_in_the_cash_after_the_reconnect(flat_peer: TwsPeer, journal: Journal) -> None:
    session = start(flat_peer, journal, RiskSpec())
    try:
        flat_peer.fail_next_place("drop_before_ack")
        session.submit(OrderRequest("kt-cut", "FLAT", "BUY", 3_000))
        pump(session, lambda: not session.connected, "the cut")
        pump(session, lambda: session.connected and journal.positions() == {"FLAT": 3_000}, "reconcile")
        broker_cash = session.broker.account_values()["TotalCashValue"]
        assert abs(session.cash - broker_cash) < 0.01  # 300,000 + commission: not overstated
        assert abs(session.equity - 999_985.0) < 0.01  # 1,000,000 less the $15 commission
        assert session.risk.state is TradingState.ACTIVE  # an explained difference is no halt
    finally:
        crash(session)


def test_the_periodic_check_halts_on_a_position_that_appears_at_the_broker(
    flat_peer: TwsPeer, journal: Journal
) -> None:
    session = start(flat_peer, journal, RiskSpec(), reconcile_interval=0.2)
    try:
        flat_peer.seed_position("FLAT", 40)
        pump(session, lambda: session.risk.state is TradingState.HALTED, "the periodic check to halt")
        assert "FLAT: the journal holds 0, the broker 40" in (session.halted or "")
    finally:
        crash(session)
