"""SimulatedBroker fills (the --replay broker), and connection faults against the TWS peer."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pytest

from kubetrader.costs import commission_schedule
from kubetrader.live.broker import Bar, BarUpdate, BrokerUnavailableError, FillUpdate, OrderRejectedError, OrderRequest
from kubetrader.live.connection import RetryPolicy
from kubetrader.live.ib_broker import IBBroker
from kubetrader.live.journal import Journal
from kubetrader.live.session import Session, SessionConfig
from kubetrader.live.simulated import SimulatedBroker
from kubetrader.live.testing.tws_peer import TwsPeer
from kubetrader.specs import BrokerSpec, CommissionSpec, RiskSpec
from tests.helpers import wait_until

DAY = dt.datetime(2020, 1, 2, tzinfo=dt.UTC)


def bars(*ohlc: tuple[float, float, float, float]) -> list[Bar]:
    return [Bar("ABC", DAY + dt.timedelta(days=i), o, h, lo, c, 1000) for i, (o, h, lo, c) in enumerate(ohlc)]


def sim(*ohlc: tuple[float, float, float, float]) -> SimulatedBroker:
    no_costs = commission_schedule(BrokerSpec(commission=CommissionSpec(model="none")))
    broker = SimulatedBroker({"ABC": bars(*ohlc)}, cash=10_000.0, schedule=no_costs)
    broker.connect()
    broker.subscribe_bars("ABC")
    return broker


def test_market_order_fills_at_the_next_bars_open_and_moves_cash_and_position() -> None:
    broker = sim((10, 11, 9, 10.5), (11, 12, 10, 11.5))
    broker.poll(0)  # bar 0 is the present
    broker.place_order(OrderRequest("m1", "ABC", "BUY", 100))
    events = broker.poll(0)
    fills = [e.fill for e in events if isinstance(e, FillUpdate)]
    assert [(f.order_ref, f.price, f.quantity) for f in fills] == [("m1", 11.0, 100)]
    assert [(p.symbol, p.quantity, p.avg_cost) for p in broker.positions()] == [("ABC", 100, 11.0)]
    assert broker.account_values()["TotalCashValue"] == pytest.approx(10_000.0 - 1_100.0)
    assert broker.open_orders() == [] and broker.completed_orders()[0].status == "Filled"


def test_limit_order_waits_for_a_bar_trading_through_and_fills_at_the_better_price() -> None:
    broker = sim((10, 10.5, 9.8, 10), (10, 10.2, 9.6, 10), (9.2, 9.4, 9.0, 9.1))
    broker.poll(0)
    broker.place_order(OrderRequest("l1", "ABC", "BUY", 10, "LMT", 9.5))
    broker.poll(0)  # low 9.6 never reaches 9.5
    assert [o.order_ref for o in broker.open_orders()] == ["l1"]
    fills = [e.fill for e in broker.poll(0) if isinstance(e, FillUpdate)]
    assert [f.price for f in fills] == [9.2]  # opened below the limit: the open is the better price


def test_sell_limit_cancel_and_global_cancel_leave_no_open_order() -> None:
    broker = sim((10, 10, 10, 10), (10, 10, 10, 10))
    broker.place_order(OrderRequest("s1", "ABC", "SELL", 5, "LMT", 50))
    broker.place_order(OrderRequest("s2", "ABC", "SELL", 5, "LMT", 60))
    broker.cancel_order("s1")
    assert [o.order_ref for o in broker.open_orders()] == ["s2"]
    broker.global_cancel()
    assert broker.open_orders() == [] and broker.positions() == []


def test_simulated_broker_refuses_unknown_symbols_and_every_query_when_disconnected() -> None:
    broker = sim((10, 10, 10, 10))
    with pytest.raises(OrderRejectedError, match="unknown symbol"):
        broker.place_order(OrderRequest("u1", "XYZ", "BUY", 1))
    broker.disconnect()
    for query in (broker.positions, broker.open_orders, broker.ping, broker.executions):
        with pytest.raises(BrokerUnavailableError):
            query()


def peer_session(peer: TwsPeer, journal: Journal, timeout: float = 0.5) -> Session:
    broker = IBBroker("127.0.0.1", peer.port, 7, timeout=timeout)
    config = SessionConfig(
        "faults", ["ORCL"], RiskSpec(), health_interval=0.2, retry=RetryPolicy(3, base_delay=0.1, max_delay=0.3)
    )
    session = Session(broker, journal, config)
    session.start()
    return session


def pump_until(session: Session, condition: Callable[[], object], what: str, timeout: float = 10.0) -> object:
    def step() -> object:
        session.pump(0.02)
        return condition()

    return wait_until(step, timeout=timeout, interval=0.0, what=what)


def test_unresponsive_gateway_fails_the_health_check_then_the_session_reconnects(
    tws_peer: TwsPeer, journal: Journal
) -> None:
    session = peer_session(tws_peer, journal)
    try:
        pump_until(session, lambda: session.prices.get("ORCL"), "a first bar")
        tws_peer.unresponsive = True  # the port stays open, the API answers nothing
        pump_until(session, lambda: not session.connected, "the failed ping to drop the connection")
        assert session.snapshot()["connected"] is False
        lost = journal.events("connection_lost")
        assert lost and "reqCurrentTime" in str(lost[-1])
        tws_peer.unresponsive = False
        pump_until(session, lambda: session.connected, "the reconnect", timeout=15)
        before = len(journal.events("connection_restored"))
        assert before == 1
        seen = session.prices["ORCL"]
        pump_until(session, lambda: session.prices["ORCL"] != seen, "bars again after the reconnect")
    finally:
        session.broker.disconnect()


def test_code_1101_connectivity_restored_data_lost_resubscribes_the_bars(tws_peer: TwsPeer, journal: Journal) -> None:
    session = peer_session(tws_peer, journal, timeout=3.0)
    try:
        pump_until(session, lambda: session.prices.get("ORCL"), "a first bar")

        def subscriptions() -> set[int]:
            return {req for conn in tws_peer._connections for req in conn.realtime}

        first = subscriptions()
        assert len(first) == 1
        tws_peer.broadcast_error(1101, "Connectivity between IB and TWS has been restored - data lost.")
        pump_until(session, lambda: subscriptions() and subscriptions() != first, "a new reqRealTimeBars")
        assert len(subscriptions()) == 1  # the old one was cancelled, not doubled
        assert journal.events("connection")[-1]["detail"]["state"] == "restored_data_lost"
        count = len(session.bars["ORCL"])
        pump_until(session, lambda: len(session.bars["ORCL"]) > count, "bars on the new subscription")
        assert session.connected
    finally:
        session.broker.disconnect()


def test_session_events_include_bars_from_the_simulated_broker() -> None:
    broker = sim((10, 10, 10, 10), (11, 11, 11, 11))
    assert [type(e) for e in broker.poll(0)] == [BarUpdate]
