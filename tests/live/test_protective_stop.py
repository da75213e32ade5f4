"""Broker-side protection (`spec.risk.protectiveStop`, issue #15 item 5) on the TWS peer, real ib_insync.

Every entry goes out as an IB bracket (a STP child, and an LMT take-profit in one OCA group with
it, attached by parentId and transmitted with the parent), so the stop lives at the broker: a
runner killed after its entry still has it, the emergency stop cancels it with everything else,
and the gate never counts it as exposure.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

from kubetrader.live.broker import OrderRequest
from kubetrader.live.connection import RetryPolicy
from kubetrader.live.ib_broker import IBBroker
from kubetrader.live.journal import Journal
from kubetrader.live.session import Session, SessionConfig
from kubetrader.live.stop import StopSettings, emergency_stop
from kubetrader.live.testing.messages import PeerOrder
from kubetrader.live.testing.tws_peer import TwsPeer
from kubetrader.risk import TradingState
from kubetrader.specs import RiskSpec
from kubetrader.specs.live import ProtectiveStopSpec
from tests.helpers import ROOT, wait_until
from tests.live.test_live_ib import pump_until, state

PROTECTION = ProtectiveStopSpec(stop_loss=0.05, take_profit=0.1)


def protected_session(peer: TwsPeer, journal: Journal, limits: RiskSpec | None = None, *, pin: bool = True) -> Session:
    """A session with `PROTECTION`, started, with a first bar; `pin`: the peer's price held at that bar's."""
    broker = IBBroker("127.0.0.1", peer.port, 1, timeout=3.0)
    config = SessionConfig(
        deployment="test", symbols=["ORCL"], limits=limits or RiskSpec(), health_interval=0.5,
        retry=RetryPolicy(attempts=3, base_delay=0.1, max_delay=0.5), protection=PROTECTION,
    )  # fmt: skip
    session = Session(broker, journal, config)
    session.start()
    pump_until(session, lambda: "ORCL" in session.prices, "a first bar")
    if pin:
        peer.set_price("ORCL", session.prices["ORCL"])  # the replay would walk through a 5 % stop in a second
    return session


def children(peer: TwsPeer, entry: str) -> dict[str, PeerOrder]:
    return {o.order_ref[len(entry) + 1 :]: o for o in peer.orders() if o.order_ref.startswith(entry + "-")}


def test_an_entry_carries_a_stop_and_a_take_profit_that_work_only_once_it_fills(
    tws_peer: TwsPeer, journal: Journal
) -> None:
    session = protected_session(tws_peer, journal)
    tws_peer.halt("ORCL")  # the entry rests: its children must not work before it fills
    try:
        price = session.prices["ORCL"]
        assert session.submit(OrderRequest("kt-e1", "ORCL", "BUY", 100)) is None
        wait_until(lambda: len(children(tws_peer, "kt-e1")) == 2, what="the bracket at the peer")
        parent = next(o for o in tws_peer.orders() if o.order_ref == "kt-e1")
        kids = children(tws_peer, "kt-e1")
        stop, take = kids["sl"], kids["tp"]
        assert (stop.order_type, stop.action, stop.quantity, stop.aux_price) == (
            "STP",
            "SELL",
            100,
            round(price * 0.95, 2),
        )
        assert (take.order_type, take.limit_price) == ("LMT", round(price * 1.1, 2))
        assert stop.parent_id == take.parent_id == parent.order_id
        assert stop.oca_group == take.oca_group != "" and stop.tif == "GTC"
        assert stop.status == "PreSubmitted" and stop.held

        tws_peer.set_price("ORCL", round(price * 0.9, 2))  # through the stop while the entry has not filled
        assert tws_peer.positions() == {} and len(tws_peer.open_orders()) == 3

        tws_peer.set_price("ORCL", price)
        tws_peer.halt("ORCL", False)
        pump_until(session, lambda: state(journal, "kt-e1") == "filled", "the entry's fill")
        wait_until(lambda: {o.status for o in children(tws_peer, "kt-e1").values()} == {"Submitted"},
                   what="the children working")  # fmt: skip
        tws_peer.set_price("ORCL", round(price * 0.94, 2))
        wait_until(lambda: tws_peer.positions() == {}, what="the stop to close the position at the broker")
        kids = children(tws_peer, "kt-e1")
        assert kids["sl"].status == "Filled" and kids["tp"].status == "Cancelled"
        pump_until(session, lambda: not session.positions.get("ORCL") or not session.positions["ORCL"].quantity,
                   "the stop's fill in the session")  # fmt: skip
        assert tws_peer.open_orders() == [] and journal.positions() == {}
    finally:
        session.broker.disconnect()


def test_the_gate_counts_protective_orders_as_exits_and_an_exit_cancels_them(
    tws_peer: TwsPeer, journal: Journal
) -> None:
    session = protected_session(tws_peer, journal, RiskSpec(max_position_size=100))
    try:
        assert session.submit(OrderRequest("kt-e2", "ORCL", "BUY", 100)) is None
        pump_until(session, lambda: state(journal, "kt-e2") == "filled", "the entry's fill")
        wait_until(lambda: len([o for o in tws_peer.open_orders() if o.order_ref.startswith("kt-e2-")]) == 2,
                   what="the children working")  # fmt: skip
        more = session.submit(OrderRequest("kt-more", "ORCL", "BUY", 10))
        assert more is not None and "position" in more  # the working stop frees no room
        session.risk.set_manual(TradingState.REDUCING, "test")
        assert session.submit(OrderRequest("kt-exit", "ORCL", "SELL", 100)) is None  # not seen as a flip
        pump_until(session, lambda: state(journal, "kt-exit") == "filled", "the exit's fill")
        wait_until(lambda: tws_peer.open_orders() == [], what="the protective orders cancelled after the exit")
        assert tws_peer.positions() == {}
        assert children(tws_peer, "kt-exit") == {}  # an exit gets no protection of its own
    finally:
        session.broker.disconnect()


def test_emergency_stop_with_protective_orders_working_ends_flat_with_no_orphan_order(
    tws_peer: TwsPeer, journal: Journal
) -> None:
    session = protected_session(tws_peer, journal)
    session.submit(OrderRequest("kt-e3", "ORCL", "BUY", 100))
    pump_until(session, lambda: state(journal, "kt-e3") == "filled", "the entry's fill")
    wait_until(lambda: len(tws_peer.open_orders()) == 2, what="the children working")
    session.broker.disconnect()  # the runner is gone; its protection stays at the broker
    broker = IBBroker("127.0.0.1", tws_peer.port, 9, timeout=3.0)
    broker.connect()
    try:
        report = emergency_stop(broker, settings=StopSettings(timeout=20.0))
    finally:
        broker.disconnect()
    assert report.flat, report.message
    assert tws_peer.positions() == {} and tws_peer.open_orders() == []
    assert {o.status for o in children(tws_peer, "kt-e3").values()} == {"Cancelled"}
    sold = sum(e.shares for e in tws_peer.executions() if e.order.action == "SELL")
    assert sold == 100  # closed once: the stop's children never counted as a position


def test_a_runner_killed_after_its_entry_is_still_stopped_out_at_the_broker(tws_peer: TwsPeer, tmp_path: Path) -> None:
    spec = {"strategy": {"path": "tests.live.probe_strategies.BuyOnce", "params": {"size": 100}},
            "symbols": ["ORCL"], "timeframe": "1m",
            "risk": {"protectiveStop": {"stopLoss": 0.05, "takeProfit": 0.2}}}  # fmt: skip
    tws_peer.set_price("ORCL", tws_peer.price("ORCL"))  # fills at a still price: the replay walks fast
    runner = subprocess.Popen(
        [sys.executable, "-m", "kubetrader.cli.main", "live", "run", "--spec-json", json.dumps(spec),
         "--port", str(tws_peer.port), "--client-id", "1", "--journal-url", f"sqlite:///{tmp_path / 'j.db'}",
         "--deployment", "killed"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
        env={"PYTHONPATH": f"{ROOT / 'engine'}:{ROOT}", "PATH": "/usr/bin:/bin",
             "KUBETRADER_STRATEGY_PREFIXES": "strategies.,tests.live.probe_strategies."},
    )  # fmt: skip
    try:
        stops = wait_until(
            lambda: runner.poll() is None and [o for o in tws_peer.open_orders() if o.order_type == "STP"], timeout=60,
            what="the entry filled and its stop working",
        )  # fmt: skip
        assert tws_peer.positions() == {"ORCL": 100}
        runner.send_signal(signal.SIGKILL)
        runner.wait(10)
    finally:
        runner.kill()
        runner.wait(10)
    tws_peer.set_price("ORCL", round(stops[0].aux_price - 0.5, 2))
    wait_until(lambda: tws_peer.positions() == {}, what="the broker's stop to close the dead runner's position")
    assert tws_peer.open_orders() == []  # the take-profit went with it (OCA)


def filled_entry(peer: TwsPeer, session: Session, journal: Journal, ref: str, quantity: float = 100) -> None:
    assert session.submit(OrderRequest(ref, "ORCL", "BUY", quantity)) is None
    pump_until(session, lambda: state(journal, ref) == "filled", "the entry's fill")
    wait_until(lambda: {o.status for o in children(peer, ref).values()} == {"Submitted"}, what="the children working")


def test_a_stop_that_triggers_while_the_exit_works_leaves_the_position_flat_never_flipped(
    tws_peer: TwsPeer, journal: Journal
) -> None:
    session = protected_session(tws_peer, journal)
    try:
        price = session.prices["ORCL"]
        filled_entry(tws_peer, session, journal, "kt-r1")
        # the strategy's exit rests (a limit above the market) while the price falls through the stop
        exit_price = round(price * 1.05, 2)
        assert session.submit(OrderRequest("kt-r1x", "ORCL", "SELL", 100, "LMT", exit_price)) is None
        exit_order = wait_until(lambda: next((o for o in tws_peer.open_orders() if o.order_ref == "kt-r1x"), None),
                                what="the exit working")  # fmt: skip
        tws_peer.set_price("ORCL", round(price * 0.94, 2))
        wait_until(lambda: tws_peer.positions() == {}, what="the stop's fill")
        assert exit_order.status == "Cancelled"  # reduced to nothing by the stop's fill, at the broker
        tws_peer.set_price("ORCL", round(exit_price + 1, 2))  # the market comes back through the exit's limit
        pump_until(session, lambda: state(journal, "kt-r1x") not in ("submitted", "pending"), "the exit's end")
        assert tws_peer.positions() == {} and tws_peer.open_orders() == []
        sold = sum(e.shares for e in tws_peer.executions() if e.order.action == "SELL")
        assert sold == 100  # closed once, by the stop
        assert exit_order.oca_group == children(tws_peer, "kt-r1")["sl"].oca_group  # one group: exit and stop
    finally:
        session.broker.disconnect()


def test_a_market_exit_held_when_the_stop_triggers_is_not_filled_too(tws_peer: TwsPeer, journal: Journal) -> None:
    session = protected_session(tws_peer, journal)
    try:
        price = session.prices["ORCL"]
        filled_entry(tws_peer, session, journal, "kt-r2")
        tws_peer.faults.presubmit_window = 1.0  # the exit is held before it works
        assert session.submit(OrderRequest("kt-r2x", "ORCL", "SELL", 100)) is None
        wait_until(lambda: any(o.order_ref == "kt-r2x" for o in tws_peer.orders()), what="the exit at the peer")
        tws_peer.set_price("ORCL", round(price * 0.94, 2))  # the stop triggers inside the window
        pump_until(session, lambda: state(journal, "kt-r2x") not in ("submitted", "pending"), "the exit's end")
        wait_until(lambda: tws_peer.open_orders() == [], what="nothing left working")
        assert tws_peer.positions() == {}
        assert sum(e.shares for e in tws_peer.executions() if e.order.action == "SELL") == 100
    finally:
        session.broker.disconnect()


def test_a_partial_exit_leaves_the_rest_under_a_broker_stop_of_its_size(tws_peer: TwsPeer, journal: Journal) -> None:
    session = protected_session(tws_peer, journal)
    try:
        price = session.prices["ORCL"]
        filled_entry(tws_peer, session, journal, "kt-p1")
        tws_peer.faults.fill_slices = 2  # the exit fills in two executions
        assert session.submit(OrderRequest("kt-p1x", "ORCL", "SELL", 40)) is None
        pump_until(session, lambda: state(journal, "kt-p1x") == "filled", "the partial exit's fill")
        kids = children(tws_peer, "kt-p1")
        assert tws_peer.positions() == {"ORCL": 60}
        assert (kids["sl"].status, kids["sl"].remaining) == ("Submitted", 60)
        assert (kids["tp"].status, kids["tp"].remaining) == ("Submitted", 60)
        pump_until(session, lambda: session.positions["ORCL"].quantity == 60, "the session's view")
        tws_peer.set_price("ORCL", round(price * 0.94, 2))
        wait_until(lambda: tws_peer.positions() == {}, what="the stop closing the rest")
        assert tws_peer.open_orders() == [] and kids["sl"].filled == 60
    finally:
        session.broker.disconnect()


def test_an_add_brings_a_bracket_for_the_whole_position_which_takes_the_group_over(
    tws_peer: TwsPeer, journal: Journal
) -> None:
    """A second entry adding to the position carries a bracket sized to all of it, in the position's
    OCA group; once the add has filled it is the group's, and the first bracket is cancelled (the
    moment-by-moment coverage: tests/live/test_protective_add.py)."""
    session = protected_session(tws_peer, journal)
    try:
        filled_entry(tws_peer, session, journal, "kt-g1")
        assert session.submit(OrderRequest("kt-g2", "ORCL", "BUY", 50)) is None
        pump_until(session, lambda: state(journal, "kt-g2") == "filled", "the second entry's fill")
        wait_until(lambda: children(tws_peer, "kt-g1")["sl"].status == "Cancelled", what="the first bracket gone")
        kids = children(tws_peer, "kt-g2")
        assert kids["sl"].remaining == kids["tp"].remaining == 150
        assert kids["sl"].oca_group == children(tws_peer, "kt-g1")["sl"].oca_group
        tws_peer.set_price("ORCL", round(kids["sl"].aux_price - 0.01, 2))
        wait_until(lambda: tws_peer.positions() == {}, what="the stop closing all of it")
        wait_until(lambda: tws_peer.open_orders() == [], what="nothing left working")
    finally:
        session.broker.disconnect()


def test_an_entry_after_its_positions_stop_was_cancelled_brings_a_stop_for_the_whole_position(
    tws_peer: TwsPeer, journal: Journal
) -> None:
    session = protected_session(tws_peer, journal)
    try:
        filled_entry(tws_peer, session, journal, "kt-c1")
        for suffix in ("-sl", "-tp"):  # the protection cancelled by hand (or by a stop keeping positions)
            session.cancel("kt-c1" + suffix)
        pump_until(session, lambda: "ORCL" not in session.guards, "the cancelled stop seen by the session")
        assert session.submit(OrderRequest("kt-c2", "ORCL", "BUY", 50)) is None
        pump_until(session, lambda: state(journal, "kt-c2") == "filled", "the new entry's fill")
        wait_until(lambda: children(tws_peer, "kt-c2").get("sl") and children(tws_peer, "kt-c2")["sl"].remaining == 150,
                   what="a stop for all 150 held")  # fmt: skip
        assert children(tws_peer, "kt-c2")["sl"].status == "Submitted"
    finally:
        session.broker.disconnect()
