"""An add to a protected position is protected from the moment it fills (issue #15, protection of adds).

Before: an entry adding to a protected position carried no bracket; the group's stop was resized
once the session saw the add's fill, so the added shares had no stop at the broker for one round
trip (fill -> execDetails -> modify). Now the add carries a bracket sized to the whole position,
in the position's OCA group: IB activates it when the add fills, and ocaType 2 keeps the two
brackets from ever closing more than is held while both work.

The peer's watcher checks, after every step it takes (each message, timer and replayed bar),
that what its working stops can close covers what is held and never exceeds it.
"""

from __future__ import annotations

from collections import defaultdict

from kubetrader.live.broker import OrderRequest
from kubetrader.live.journal import Journal
from kubetrader.live.testing.tws_peer import TwsPeer
from tests.helpers import wait_until
from tests.live.test_live_ib import pump_until, state
from tests.live.test_protective_stop import children, filled_entry, protected_session


def closable(peer: TwsPeer, symbol: str) -> float:
    """What the working (activated) protective stops could close, the way IB's OCA works: within one
    ocaType 2/3 group a fill of one order shrinks the others by as much, so the group closes at most
    its largest remainder; separate groups (and stops in none) add up."""
    by_group: dict[str, float] = defaultdict(float)
    loose = 0.0
    for order in peer._orders:  # under the peer's lock: the watcher runs inside the peer's step
        if not (order.is_open and not order.held and order.order_type == "STP"):
            continue
        if order.instrument.symbol != symbol or order.action != "SELL":
            continue
        if order.oca_group and order.oca_type in (2, 3):
            by_group[order.oca_group] = max(by_group[order.oca_group], order.remaining)
        else:
            loose += order.remaining
    return loose + sum(by_group.values())


class CoverageWatch:
    """Records, at every step of the peer, the held quantity and what the stops could close."""

    def __init__(self, peer: TwsPeer, symbol: str) -> None:
        self.peer, self.symbol = peer, symbol
        self.samples: list[tuple[float, float]] = []
        peer.watchers.append(self)

    def __call__(self) -> None:
        held = sum(p.quantity for (_, cid), p in self.peer._positions.items()
                   if self.peer._instruments[cid].symbol == self.symbol)  # fmt: skip
        self.samples.append((held, closable(self.peer, self.symbol)))

    def uncovered(self) -> list[tuple[float, float]]:
        return [(held, covered) for held, covered in self.samples if held > covered]

    def over_protected(self) -> list[tuple[float, float]]:
        return [(held, covered) for held, covered in self.samples if covered > held]


def test_an_add_is_covered_by_a_broker_stop_the_moment_it_fills_and_never_twice(
    tws_peer: TwsPeer, journal: Journal
) -> None:
    session = protected_session(tws_peer, journal)
    watch = CoverageWatch(tws_peer, "ORCL")
    try:
        filled_entry(tws_peer, session, journal, "kt-a1")
        assert session.submit(OrderRequest("kt-a2", "ORCL", "BUY", 50)) is None
        pump_until(session, lambda: state(journal, "kt-a2") == "filled", "the add's fill")
        wait_until(lambda: {o.status for o in children(tws_peer, "kt-a1").values()} == {"Cancelled"},
                   what="the first bracket cancelled once the add's bracket took over")  # fmt: skip
        kids = children(tws_peer, "kt-a2")
        assert (kids["sl"].status, kids["sl"].remaining, kids["tp"].remaining) == ("Submitted", 150, 150)
        assert kids["sl"].oca_group == children(tws_peer, "kt-a1")["sl"].oca_group  # one group per position
        assert session.guards == {"ORCL": "kt-a2"} and session.successors == {}
        assert ("kt-a1-sl", 150) not in tws_peer.modifications  # covered by the add's bracket, not a resize
        held_samples = [h for h, _ in watch.samples]
        assert 150 in held_samples  # the watch saw the add filled
        assert watch.uncovered() == []  # at no step held beyond what the stops can close
        assert watch.over_protected() == []  # and never more than held (no double protection)

        tws_peer.set_price("ORCL", round(kids["sl"].aux_price - 0.01, 2))  # through the stop: 150 closed, once
        wait_until(lambda: tws_peer.positions() == {}, what="the stop closing the whole position")
        wait_until(lambda: tws_peer.open_orders() == [], what="nothing left working")
        assert sum(e.shares for e in tws_peer.executions() if e.order.action == "SELL") == 150
        assert watch.uncovered() == [] and watch.over_protected() == []
    finally:
        tws_peer.watchers.clear()
        session.broker.disconnect()


def test_the_old_stop_triggering_before_the_add_fills_leaves_the_add_covered_and_no_flip(
    tws_peer: TwsPeer, journal: Journal
) -> None:
    """The add rests (a halted symbol) while the price falls through the first stop: the stop's fill
    shrinks the add's bracket by as much at the broker (one OCA group), so when the add fills its
    stop covers exactly the add."""
    session = protected_session(tws_peer, journal)
    watch = CoverageWatch(tws_peer, "ORCL")
    try:
        price = session.prices["ORCL"]
        filled_entry(tws_peer, session, journal, "kt-b1")
        assert session.submit(OrderRequest("kt-b2", "ORCL", "BUY", 30, "LMT", round(price * 0.9, 2))) is None
        wait_until(lambda: len(children(tws_peer, "kt-b2")) == 2, what="the add's bracket at the peer")
        first_stop = children(tws_peer, "kt-b1")["sl"].aux_price
        tws_peer.set_price("ORCL", round(first_stop - 0.01, 2))  # the first stop fills; the add's limit is below
        wait_until(lambda: tws_peer.positions() == {}, what="the first stop's fill")
        assert children(tws_peer, "kt-b2")["sl"].remaining == 30  # 130 less the 100 the stop closed
        pump_until(session, lambda: session.guards.get("ORCL") == "kt-b2", "the add's bracket now the group's")
        tws_peer.set_price("ORCL", round(price * 0.89, 2))  # the add fills: its stop covers exactly the add
        pump_until(session, lambda: state(journal, "kt-b2") == "filled", "the add's fill")
        assert tws_peer.positions() == {"ORCL": 30}
        assert (children(tws_peer, "kt-b2")["sl"].status, children(tws_peer, "kt-b2")["sl"].remaining) == (
            "Submitted", 30)  # fmt: skip
        tws_peer.set_price("ORCL", round(children(tws_peer, "kt-b2")["sl"].aux_price - 0.01, 2))  # its stop
        wait_until(lambda: tws_peer.positions() == {}, what="the add's stop closing the 30")
        assert sum(e.shares for e in tws_peer.executions() if e.order.action == "SELL") == 130
        assert watch.uncovered() == [] and watch.over_protected() == []
        wait_until(lambda: tws_peer.open_orders() == [], what="nothing left working")
    finally:
        tws_peer.watchers.clear()
        session.broker.disconnect()


def test_a_partly_filled_add_is_uncovered_only_by_its_filled_part_until_the_resize(
    tws_peer: TwsPeer, journal: Journal
) -> None:
    """What IB's semantics force: children work only once their parent has filled, so while the add
    is partly filled its filled part waits for the old stop's resize (one round trip); never more,
    and nothing is uncovered once the add has filled."""
    session = protected_session(tws_peer, journal)
    watch = CoverageWatch(tws_peer, "ORCL")
    try:
        filled_entry(tws_peer, session, journal, "kt-c1")
        tws_peer.faults.fill_slices, tws_peer.faults.fill_interval = 2, 0.5
        assert session.submit(OrderRequest("kt-c2", "ORCL", "BUY", 50)) is None
        pump_until(session, lambda: state(journal, "kt-c2") == "filled", "the add's fill")
        wait_until(lambda: children(tws_peer, "kt-c2")["sl"].status == "Submitted", what="the add's stop working")
        gaps = watch.uncovered()
        assert gaps, "the first slice of the add is uncovered until the resize (the test must see it)"
        assert all(held - covered <= 25 and held < 150 for held, covered in gaps)
        assert ("kt-c1-sl", 125) in tws_peer.modifications  # the partial fill was followed by a resize
        assert watch.samples[-1] == (150, 150) and watch.over_protected() == []
    finally:
        tws_peer.watchers.clear()
        session.broker.disconnect()


def test_a_restarted_runner_finds_the_waiting_add_bracket_and_hands_over_when_the_add_fills(
    tws_peer: TwsPeer, journal: Journal
) -> None:
    """The runner dies with an add working: the next one (same journal and client id) rebuilds the
    group from the broker, the filled entry's bracket guarding and the add's waiting, and hands over
    when the add fills."""
    first = protected_session(tws_peer, journal)
    watch = CoverageWatch(tws_peer, "ORCL")
    try:
        price = first.prices["ORCL"]
        filled_entry(tws_peer, first, journal, "kt-d1")
        assert first.submit(OrderRequest("kt-d2", "ORCL", "BUY", 20, "LMT", round(price * 0.97, 2))) is None
        wait_until(lambda: len(children(tws_peer, "kt-d2")) == 2, what="the add's bracket at the peer")
    finally:
        first.broker.disconnect()
    second = protected_session(tws_peer, journal, pin=False)  # the price stays where the first runner left it
    try:
        assert second.guards == {"ORCL": "kt-d1"} and second.successors == {"ORCL": "kt-d2"}
        tws_peer.set_price("ORCL", round(price * 0.965, 2))  # the add's limit: it fills; the first stop does not
        pump_until(second, lambda: second.guards.get("ORCL") == "kt-d2", "the hand-over to the add's bracket")
        wait_until(lambda: {o.status for o in children(tws_peer, "kt-d1").values()} == {"Cancelled"},
                   what="the first bracket cancelled")  # fmt: skip
        assert children(tws_peer, "kt-d2")["sl"].remaining == 120
        assert watch.uncovered() == [] and watch.over_protected() == []
    finally:
        tws_peer.watchers.clear()
        second.broker.disconnect()
