"""The stop's ledger and its decisions, pure: no broker, time passed in."""

from __future__ import annotations

import datetime as dt

from kubetrader.live.broker import ContractRef, Fill, Position
from kubetrader.live.stop import backoff
from kubetrader.live.stop_ledger import Ledger, Read

ORCL = ContractRef(271220, "ORCL")
KEY = ("DU1", 271220)
T0 = dt.datetime(2024, 1, 2, 15, 0, tzinfo=dt.UTC)


def fill(exec_id: str, side: str, quantity: float, ref: str = "close-1") -> Fill:
    return Fill(exec_id, ref, "ORCL", side, quantity, 30.0, 1.0, T0, 271220, "DU1")  # type: ignore[arg-type]


def ledger_long(quantity: float = 100) -> Ledger:
    ledger = Ledger()
    ledger.start([Position("ORCL", quantity, 30.0, ORCL, "DU1")], [], now=0.0, wall_now=T0.timestamp() + 3600)
    return ledger


def read(at: float, quantity: float, open_orders: int = 0, link: bool = True) -> Read:
    return Read(at, {KEY: quantity} if quantity else {}, open_orders, link)


def test_backoff_doubles_from_the_base_and_stops_at_the_cap() -> None:
    assert [backoff(n, 0.5, 4.0) for n in range(6)] == [0.0, 0.5, 1.0, 2.0, 4.0, 4.0]


def test_a_lagging_report_never_makes_it_flat_before_the_window_has_seen_zero() -> None:
    ledger = ledger_long()
    ledger.sent("close-1", KEY, -100, now=0.0)
    ledger.execution(fill("e1", "SELL", 100), now=0.1)
    assert ledger.expected(KEY) == 0 and not ledger.working()  # filled with no orderStatus at all
    for t in (0.2, 0.4, 0.6, 0.8):  # the report still says 100 (lag)
        ledger.record(read(t, 100))
    assert not ledger.settled_flat({KEY}, 0.8, window=1.0, reads=3)
    for t in (1.0, 1.5, 2.0, 2.2):
        ledger.record(read(t, 0))
    assert ledger.settled_flat({KEY}, 2.2, window=1.0, reads=3)


def test_flat_is_due_one_window_after_the_first_zero_read_and_the_last_execution_and_no_sooner() -> None:
    ledger = ledger_long()
    ledger.sent("close-1", KEY, -100, now=0.0)
    assert ledger.flat_due({KEY}, window=1.0) is None  # a close working: nothing is settling
    ledger.execution(fill("e1", "SELL", 100), now=0.1)
    ledger.record(read(0.2, 100))  # the report lags the fill
    assert ledger.flat_due({KEY}, window=1.0) is None
    ledger.record(read(0.6, 0))
    ledger.record(read(0.9, 0))
    due = ledger.flat_due({KEY}, window=1.0)
    assert due == 1.6
    ledger.record(read(1.59, 0))
    assert not ledger.settled_flat({KEY}, 1.59, window=1.0, reads=3)  # a read before it cannot end the stop
    ledger.record(read(due, 0))
    assert ledger.settled_flat({KEY}, due, window=1.0, reads=3)  # one at it can


def test_an_open_order_or_a_lost_link_inside_the_window_resets_the_streak() -> None:
    ledger = ledger_long(0)
    for t, opened, link in ((0.0, 0, True), (0.5, 1, True), (1.0, 0, True), (1.5, 0, False), (2.0, 0, True)):
        ledger.record(read(t, 0, opened, link))
    assert not ledger.settled_flat({KEY}, 2.0, window=1.0, reads=2)


def test_a_report_that_stays_put_and_disagrees_rebases_the_ledger() -> None:
    ledger = ledger_long(100)  # the start report missed a fill of +50 just before the stop
    for t in (0.0, 0.5, 1.0, 1.5):
        ledger.record(read(t, 150))
    assert ledger.rebase_if_settled({KEY}, 1.5, window=1.0) == [KEY]
    assert ledger.expected(KEY) == 150


def test_a_reject_is_final_only_when_no_fresh_read_lists_the_order() -> None:
    ledger = ledger_long()
    ledger.sent("close-1", KEY, -100, now=0.0)
    ledger.order_error("close-1", 201, "Order rejected", final=True)
    order = ledger.orders["close-1"]
    order.listed = True  # TWS still lists it (a 10349-style local cancel)
    assert not order.final
    order.listed = False
    assert order.final and ledger.rejects[KEY] == ["IB 201: Order rejected"]


def test_a_contract_that_traded_just_before_the_stop_is_not_quiet_yet() -> None:
    ledger = Ledger()
    ledger.start([], [fill("e0", "BUY", 50, "entry")], now=10.0, wall_now=T0.timestamp() + 0.2)
    assert not ledger.quiet(KEY, 10.0, window=1.5)
    assert ledger.quiet(KEY, 12.5, window=1.5)
    assert ledger.execution(fill("e0", "BUY", 50, "entry"), now=11.0) is False  # pre-stop: not counted
