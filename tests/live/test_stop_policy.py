"""`stopPolicy.cancelOrders: false` in the stop path, against the TWS peer through the real ib_insync client.

The book in every test: long 100 ORCL (filled at market), a take-profit SELL 100 far
above the market (an exit), a BUY 10 far below it (an entry: adds to the long) and a
SELL 300 far above (an entry too: it would flip the position short).
"""

from __future__ import annotations

import datetime as dt

from kubetrader.live.broker import BrokerOrder, OrderRequest, Position
from kubetrader.live.ib_broker import IBBroker
from kubetrader.live.journal import Journal
from kubetrader.live.session import Session
from kubetrader.live.stop import FALLBACK_NOTE, emergency_stop, exposure_increasing
from kubetrader.live.testing.tws_peer import TwsPeer
from tests.live.test_live_ib import make_session, pump_until

EXIT, ADD, FLIP = "kt-exit", "kt-add", "kt-flip"


def order(ref: str, symbol: str, side: str, quantity: float, status: str = "Submitted") -> BrokerOrder:
    return BrokerOrder(ref, "1", symbol, side, quantity, "LMT", 1.0, status)  # type: ignore[arg-type]


def test_exposure_increasing_keeps_only_orders_that_shrink_a_position() -> None:
    positions = [Position("ORCL", 100, 30.0), Position("NVDA", -50, 10.0)]
    orders = [
        order("exit-long", "ORCL", "SELL", 100),
        order("partial-exit", "ORCL", "SELL", 40),
        order("add-long", "ORCL", "BUY", 10),
        order("flip-short", "ORCL", "SELL", 101),
        order("cover-short", "NVDA", "BUY", 50),
        order("add-short", "NVDA", "SELL", 5),
        order("no-position", "YHOO", "BUY", 1),
        order("done-add", "ORCL", "BUY", 10, status="Cancelled"),
    ]
    assert [o.order_ref for o in exposure_increasing(orders, positions)] == [
        "add-long",
        "flip-short",
        "add-short",
        "no-position",
    ]


def open_book(peer: TwsPeer, journal: Journal) -> Session:
    session = make_session(peer, journal, client_id=5)
    price = session.prices["ORCL"]
    assert session.submit(OrderRequest("kt-long", "ORCL", "BUY", 100)) is None
    assert session.submit(OrderRequest(EXIT, "ORCL", "SELL", 100, "LMT", round(price * 3, 2))) is None
    assert session.submit(OrderRequest(ADD, "ORCL", "BUY", 10, "LMT", round(price / 3, 2))) is None
    assert session.submit(OrderRequest(FLIP, "ORCL", "SELL", 300, "LMT", round(price * 3, 2))) is None
    pump_until(
        session,
        lambda: peer.positions() == {"ORCL": 100} and len(peer.open_orders()) == 3,
        "the position and three resting orders",
    )
    return session


def stop_at_gateway(peer: TwsPeer, **policy: bool) -> dict[str, object]:
    broker = IBBroker("127.0.0.1", peer.port, 9, timeout=3.0)
    broker.connect()
    try:
        return emergency_stop(broker, timeout=15, entry_cancel_grace=1.0, **policy).as_dict()
    finally:
        broker.disconnect()


def resting(peer: TwsPeer) -> list[str]:
    return sorted(o.order_ref for o in peer.open_orders())


def test_runner_cancels_its_entries_and_the_gateway_confirms_position_and_exit_kept(
    tws_peer: TwsPeer, journal: Journal
) -> None:
    session = open_book(tws_peer, journal)
    try:
        session.commands.put("halt-cancel-entries")  # what POST /halt?cancel=entries posts
        pump_until(session, lambda: resting(tws_peer) == [EXIT], "the runner to cancel its two entries")
        assert session.halted == "kill switch"
        report = stop_at_gateway(tws_peer, flatten=False, cancel_orders=False)
    finally:
        session.broker.disconnect()
    assert report["flat"] is True, report
    assert report["kept_orders"] == [EXIT] and report["exits_cancelled"] is False
    assert report["positions"] == {"ORCL": 100}
    assert resting(tws_peer) == [EXIT] and tws_peer.positions() == {"ORCL": 100}
    intent = journal.intent(EXIT)
    assert intent is not None and intent.state == "working"


def test_a_stop_under_the_runners_client_id_cancels_the_entries_itself(tws_peer: TwsPeer, journal: Journal) -> None:
    session = open_book(tws_peer, journal)
    session.broker.disconnect()  # the runner is gone; its client id is free again
    broker = IBBroker("127.0.0.1", tws_peer.port, 5, timeout=3.0)
    broker.connect()
    try:
        report = emergency_stop(broker, timeout=15, flatten=False, cancel_orders=False, entry_cancel_grace=10.0)
    finally:
        broker.disconnect()
    assert report.flat and not report.exits_cancelled and report.kept_orders == [EXIT]
    assert resting(tws_peer) == [EXIT] and tws_peer.positions() == {"ORCL": 100}


def test_entries_of_a_dead_runner_fall_back_to_global_cancel_and_say_so(tws_peer: TwsPeer, journal: Journal) -> None:
    session = open_book(tws_peer, journal)
    session.broker.disconnect()  # IB will not let client 9 cancel client 5's orders one by one
    started = dt.datetime.now(dt.UTC)
    report = stop_at_gateway(tws_peer, flatten=False, cancel_orders=False)
    assert report["flat"] is True and report["exits_cancelled"] is True
    assert FALLBACK_NOTE in str(report["message"])
    assert resting(tws_peer) == [] and tws_peer.positions() == {"ORCL": 100}
    assert all(o.status == "Cancelled" for o in tws_peer.orders() if o.order_ref in (EXIT, ADD, FLIP))
    assert (dt.datetime.now(dt.UTC) - started).total_seconds() < 15


def test_cancel_orders_false_has_no_effect_when_flattening(tws_peer: TwsPeer, journal: Journal) -> None:
    session = open_book(tws_peer, journal)
    session.broker.disconnect()
    report = stop_at_gateway(tws_peer, flatten=True, cancel_orders=False)
    assert report["flat"] is True and "no effect" in str(report["message"])
    assert resting(tws_peer) == [] and tws_peer.positions() == {}


def test_cancel_orders_true_without_flatten_cancels_every_order_and_keeps_the_position(
    tws_peer: TwsPeer, journal: Journal
) -> None:
    session = open_book(tws_peer, journal)
    session.broker.disconnect()
    report = stop_at_gateway(tws_peer, flatten=False, cancel_orders=True)
    assert report["flat"] is True and report["kept_orders"] == []
    assert resting(tws_peer) == [] and tws_peer.positions() == {"ORCL": 100}
