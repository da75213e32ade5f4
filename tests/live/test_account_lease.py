"""One trader per account: two runners on one account through the TWS peer (real ib_insync).

The lease lives in the journal database the runners share (kubetrader.live.lease).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kubetrader.live.broker import OrderRequest
from kubetrader.live.connection import RetryPolicy
from kubetrader.live.ib_broker import IBBroker
from kubetrader.live.journal import Journal
from kubetrader.live.session import Session, SessionConfig
from kubetrader.live.testing.tws_peer import ACCOUNT, TwsPeer
from kubetrader.specs import RiskSpec
from tests.helpers import free_port, wait_until


@pytest.fixture
def peer() -> Iterator[TwsPeer]:
    """ORCL from 2012 at 20 bars a second: enough bars for the whole scenario."""
    peer = TwsPeer(port=free_port(), bar_interval=0.05, replay_start={"ORCL": 4300})
    peer.start()
    yield peer
    peer.stop()


def runner(peer: TwsPeer, url: str, deployment: str, client_id: int, term: float) -> Session:
    config = SessionConfig(
        deployment,
        ["ORCL"],
        RiskSpec(max_position_size=100),
        health_interval=0.5,
        retry=RetryPolicy(attempts=20, base_delay=0.1, max_delay=0.5),
        lease_account=ACCOUNT,
        lease_term=term,
    )
    return Session(IBBroker("127.0.0.1", peer.port, client_id, timeout=3.0), Journal(url, deployment), config)


def pump(session: Session, condition: object, what: str, timeout: float = 10.0) -> None:
    def step() -> object:
        session.pump(0.02)
        return condition()  # type: ignore[operator]

    wait_until(step, timeout=timeout, interval=0.0, what=what)


def entry(session: Session, tag: str) -> str | None:
    """The strategy's one intent: 100 shares (the position limit)."""
    return session.submit(OrderRequest(f"kt-entry-{tag}", "ORCL", "BUY", 100))


@pytest.mark.parametrize("second_client_id", [1, 2], ids=["same-client-id", "different-client-ids"])
def test_two_runners_on_one_account_through_a_network_blip_send_one_intents_worth(
    peer: TwsPeer, tmp_path: Path, second_client_id: int
) -> None:
    url = f"sqlite:///{tmp_path / 'journal.db'}"
    first = runner(peer, url, "alpha", 1, term=1.5)
    second = runner(peer, url, "beta", second_client_id, term=1.5)
    first.start()
    pump(first, lambda: "ORCL" in first.prices, "a first bar")
    assert entry(first, "alpha") is None

    started = threading.Event()
    thread = threading.Thread(target=lambda: (second.start(), started.set()), daemon=True)
    thread.start()
    waiting = wait_until(lambda: second.snapshot().get("lease_wait"), what="the second runner to say it waits")
    assert "held by alpha@" in waiting

    peer.drop_connections()  # a network blip: the first runner reconnects, the second keeps waiting
    pump(first, lambda: not first.connected, "the blip", timeout=5)
    pump(first, lambda: first.connected, "the reconnect", timeout=15)
    deadline = time.monotonic() + 3 * 1.5  # renewals across several terms
    while time.monotonic() < deadline:
        first.pump(0.05)
    assert not started.is_set() and second.lease_wait is not None
    assert entry(first, "alpha-again") is not None  # the same intent again is refused by the limit

    refs = [ref for _, _, ref in peer.place_orders_received]
    assert refs == ["kt-entry-alpha"]
    assert peer.positions() == {"ORCL": 100}

    first.broker.disconnect()
    first.release_lease()  # a clean shutdown hands over at once
    wait_until(started.is_set, timeout=15, what="the second runner to take over")
    thread.join(5)
    try:
        assert second.lease is not None and second.lease.token is not None  # it took the lease over
        # its start can outlast the test's 1.5 s term on a loaded machine: the loop's renewal keeps it
        pump(second, second.lease.valid, "the lease renewed by the second runner's loop")
        assert second.positions["ORCL"].quantity == 100  # it reconciled the account it inherits
        pump(second, lambda: "ORCL" in second.prices, "a first bar")
        refused = entry(second, "beta")
        assert refused is not None and "exceed the limit 100" in refused
        assert [ref for _, _, ref in peer.place_orders_received] == ["kt-entry-alpha"]
    finally:
        second.broker.disconnect()


def test_a_runner_that_stalled_past_its_lease_is_fenced_and_cannot_send(peer: TwsPeer, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'journal.db'}"
    first = runner(peer, url, "alpha", 1, term=1.0)
    first.start()
    pump(first, lambda: "ORCL" in first.prices, "a first bar")
    # A stall (GC pause, a frozen node) longer than the term: no pump, so no renewals, until the
    # stored lease has run out.
    wait_until(
        lambda: (held := first.lease.current()) is not None and held.expires_at <= time.time(),
        timeout=5,
        what="the stalled runner's lease to expire",
    )
    # The new holder's term is long: under load a 1 s term could run out before it pumps, and the
    # stalled runner would then rightly take the lease back.
    second = runner(peer, url, "beta", 2, term=30.0)
    second.start()  # the lease expired: the second runner takes it
    try:
        refused = entry(first, "stale")  # before the stalled runner's next renewal
        assert refused is not None and refused.startswith("no account lease for DU0000001: held by beta@")
        first.pump(0.05)  # its renewal finds the token moved on: still fenced
        assert entry(first, "stale-2") is not None
        pump(second, lambda: "ORCL" in second.prices, "a first bar")
        assert entry(second, "beta") is None
        pump(second, lambda: peer.positions() == {"ORCL": 100}, "the new holder's fill")
        assert [ref for _, _, ref in peer.place_orders_received] == ["kt-entry-beta"]
        assert any(e["kind"] == "lease_lost" for e in first.journal.events())
    finally:
        first.broker.disconnect()
        second.broker.disconnect()
