"""The live stack against the TWS peer, through the REAL ib_insync client over TCP."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Callable

from kubetrader.live.broker import OrderRequest
from kubetrader.live.connection import RetryPolicy
from kubetrader.live.ib_broker import IBBroker
from kubetrader.live.journal import Journal
from kubetrader.live.runner import LiveRunner
from kubetrader.live.session import Session, SessionConfig
from kubetrader.live.testing.tws_peer import TwsPeer
from kubetrader.specs import RiskSpec
from tests.helpers import ROOT, wait_until


def make_session(peer: TwsPeer, journal: Journal, limits: RiskSpec | None = None, client_id: int = 1) -> Session:
    broker = IBBroker("127.0.0.1", peer.port, client_id, timeout=3.0)
    config = SessionConfig(
        deployment="test",
        symbols=["ORCL"],
        limits=limits or RiskSpec(),
        health_interval=0.5,
        retry=RetryPolicy(attempts=3, base_delay=0.1, max_delay=0.5),
    )
    session = Session(broker, journal, config)
    session.start()
    pump_until(session, lambda: "ORCL" in session.prices, "a first bar (risk needs a reference price)")
    return session


def state(journal: Journal, order_ref: str) -> str | None:
    intent = journal.intent(order_ref)
    return intent.state if intent is not None else None


def pump_until(session: Session, condition: Callable[[], object], what: str, timeout: float = 10.0) -> object:
    def step() -> object:
        session.pump(0.02)
        return condition()

    return wait_until(step, timeout=timeout, interval=0.0, what=what)


def test_market_order_fills_and_is_journaled_with_position(tws_peer: TwsPeer, journal: Journal) -> None:
    session = make_session(tws_peer, journal)
    try:
        assert session.submit(OrderRequest("kt-a1", "ORCL", "BUY", 100)) is None
        pump_until(session, lambda: state(journal, "kt-a1") == "filled", "fill journaled")
        assert tws_peer.positions() == {"ORCL": 100}
        assert journal.positions() == {"ORCL": 100}
        assert [f.order_ref for f in journal.fills()] == ["kt-a1"]
        assert session.broker.positions()[0].quantity == 100
    finally:
        session.broker.disconnect()


def test_risk_refusal_is_journaled_with_its_reason_and_never_sent(tws_peer: TwsPeer, journal: Journal) -> None:
    session = make_session(tws_peer, journal, RiskSpec(max_order_notional=1_000.0))
    try:
        pump_until(session, lambda: "ORCL" in session.prices, "a first bar")
        reason = session.submit(OrderRequest("kt-big", "ORCL", "BUY", 1_000))
        assert reason is not None and "notional" in reason
        intent = journal.intent("kt-big")
        assert intent is not None and intent.state == "refused" and "notional" in (intent.reason or "")
        assert [r for _, _, r in tws_peer.place_orders_received] == []
    finally:
        session.broker.disconnect()


def test_connection_cut_right_after_place_order_then_reconnect_leaves_exactly_one_order(
    tws_peer: TwsPeer, journal: Journal
) -> None:
    session = make_session(tws_peer, journal)
    try:
        tws_peer.fail_next_place("drop_before_ack")
        session.submit(OrderRequest("kt-cut", "ORCL", "BUY", 50))
        pump_until(session, lambda: not session.connected, "the cut to be noticed", timeout=5)
        pump_until(session, lambda: session.connected and state(journal, "kt-cut") == "filled", "reconcile")
        assert [r for _, _, r in tws_peer.place_orders_received].count("kt-cut") == 1
        assert tws_peer.positions() == {"ORCL": 50}
        assert journal.positions() == {"ORCL": 50}
    finally:
        session.broker.disconnect()


def test_send_that_never_reached_the_broker_is_sent_once_after_reconnect(tws_peer: TwsPeer, journal: Journal) -> None:
    session = make_session(tws_peer, journal)
    try:
        tws_peer.drop_connections()
        pump_until(session, lambda: not session.connected, "the drop to be noticed", timeout=5)
        journal.record_intent(OrderRequest("kt-late", "ORCL", "SELL", 10))  # journaled, send failed
        pump_until(session, lambda: session.connected and state(journal, "kt-late") == "filled", "resend")
        assert [r for _, _, r in tws_peer.place_orders_received].count("kt-late") == 1
        assert tws_peer.positions() == {"ORCL": -10}
    finally:
        session.broker.disconnect()


def test_runner_restart_reconciles_positions_and_adopts_an_order_it_never_heard_back_about(
    tws_peer: TwsPeer, journal: Journal
) -> None:
    first = make_session(tws_peer, journal)
    tws_peer.fail_next_place("drop_after_ack")
    first.submit(OrderRequest("kt-crash", "ORCL", "BUY", 70))
    first.broker.disconnect()  # the runner dies before hearing of the fill
    assert state(journal, "kt-crash") == "pending"

    second = make_session(tws_peer, journal)
    try:
        assert state(journal, "kt-crash") == "filled"
        assert second.positions["ORCL"].quantity == 70
        assert journal.positions() == {"ORCL": 70}
        assert [r for _, _, r in tws_peer.place_orders_received].count("kt-crash") == 1
    finally:
        second.broker.disconnect()


def test_paper_session_trades_sma_crossover_on_replayed_bars_then_stops_flat(
    tws_peer: TwsPeer, journal: Journal
) -> None:
    from strategies.sma_crossover import SMACrossover

    sessions: list[Session] = []

    def run() -> None:  # ib_insync's loop lives in the thread that trades
        sessions.append(make_session(tws_peer, journal))
        LiveRunner(sessions[0], SMACrossover, {"fast": 3, "slow": 8, "target": 0.01}).run()
        sessions[0].broker.disconnect()

    thread = threading.Thread(target=run)
    thread.start()
    try:
        wait_until(lambda: len(journal.fills()) >= 3, timeout=30, what="the strategy to trade")
        sessions[0].commands.put("stop")
        thread.join(30)
        assert not thread.is_alive()
        assert sessions[0].flat_confirmed_at is not None
        assert tws_peer.positions() == {}
        sides = [f.side for f in journal.fills()]
        assert sides[0] == "BUY" and "SELL" in sides
        assert tws_peer.pacing_violations == 0
    finally:
        if sessions:
            sessions[0].finished = True
        thread.join(10)


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kubetrader.cli.main", "live", *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={"PYTHONPATH": f"{ROOT / 'engine'}:{ROOT}", "PATH": "/usr/bin:/bin"},
    )


def test_emergency_stop_from_the_cli_cancels_everything_and_confirms_flat(tws_peer: TwsPeer, journal: Journal) -> None:
    session = make_session(tws_peer, journal, client_id=5)
    try:
        for i in range(3):
            session.submit(OrderRequest(f"kt-rest{i}", "ORCL", "BUY", 10, "LMT", 1.0))
        session.submit(OrderRequest("kt-long", "ORCL", "BUY", 40))
        pump_until(session, lambda: len(tws_peer.open_orders()) == 3 and tws_peer.positions(), "orders resting")
    finally:
        session.broker.disconnect()
    tws_peer.seed_position("NVDA", -25)

    result = run_cli("emergency-stop", "--port", str(tws_peer.port), "--timeout", "20")

    assert result.returncode == 0, result.stderr
    assert '"flat": true' in result.stdout
    assert tws_peer.open_orders() == []
    assert tws_peer.positions() == {}


def test_emergency_stop_with_the_gateway_down_fails_loudly(tws_peer: TwsPeer) -> None:
    tws_peer.set_down(True)
    result = run_cli("emergency-stop", "--port", str(tws_peer.port), "--connect-attempts", "1", "--timeout", "3")
    assert result.returncode != 0
    assert "EMERGENCY STOP FAILED" in result.stderr
    assert "flat" not in result.stdout
