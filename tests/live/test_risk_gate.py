"""The risk gate: one engine between every order and the broker, the same in a backtest and live.

Live runs go through the real ib_insync client to the TWS peer, with real LiveRunner/Backtrader.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable
from typing import Any, ClassVar

import pytest

from kubetrader.live.broker import OrderRequest
from kubetrader.live.connection import RetryPolicy
from kubetrader.live.ib_broker import IBBroker
from kubetrader.live.journal import Journal
from kubetrader.live.runner import LiveRunner
from kubetrader.live.session import Session, SessionConfig
from kubetrader.live.testing.tws_peer import TwsPeer, load_daily_bars
from kubetrader.risk import TradingState
from kubetrader.specs import BacktestSpec, RiskSpec
from strategies.base_strategy import BaseStrategy
from tests.engine.probe_strategies import ORDER_SCHEDULE, OrderSchedule
from tests.helpers import free_port, wait_until

REPLAY_START = 4300  # ORCL 2012-01-30, prices around 28
TABLE_LIMITS = RiskSpec(max_position_size=50, max_order_notional=1_000, max_price_deviation=0.25)


def run_live(
    peer: TwsPeer, journal: Journal, strategy: type[Any], limits: RiskSpec, *, done: Callable[[], bool], **params: Any
) -> Session:
    """LiveRunner on the peer until `done()` (checked from a watcher thread), then a shutdown."""
    broker = IBBroker("127.0.0.1", peer.port, 7, timeout=3.0)
    config = SessionConfig("gate", ["ORCL"], limits, health_interval=5.0, retry=RetryPolicy(attempts=3, base_delay=0.1))
    session = Session(broker, journal, config)

    def watch() -> None:
        wait_until(done, timeout=30, what="the strategy's schedule")
        session.commands.put("shutdown")

    watcher = threading.Thread(target=watch, daemon=True)
    session.start()
    watcher.start()
    try:
        LiveRunner(session, strategy, params).run()
    finally:
        watcher.join(35)
        broker.disconnect()
    return session


@pytest.fixture
def slow_peer() -> Any:
    """ORCL from 2012 at 20 bars a second: slow enough that a strategy keeps up bar by bar."""
    peer = TwsPeer(port=free_port(), bar_interval=0.05, replay_start={"ORCL": REPLAY_START})
    peer.start()
    yield peer
    peer.stop()


def reachable_brokers(root: object, depth: int = 6) -> list[str]:
    """Paths of public attributes from `root` that lead to a Session or an object that can place orders."""
    found: list[str] = []
    seen: set[int] = set()
    frontier: list[tuple[object, str]] = [(root, "strategy")]
    for _ in range(depth):
        nxt: list[tuple[object, str]] = []
        for obj, path in frontier:
            if id(obj) in seen or isinstance(obj, (str, int, float, bool, bytes, type(None), type)):
                continue
            seen.add(id(obj))
            if isinstance(obj, Session) or hasattr(type(obj), "place_order"):
                found.append(path)
                continue
            children: list[tuple[str, object]] = []
            if isinstance(obj, dict):
                children = [(f"[{k!r}]", v) for k, v in list(obj.items())[:50]]
            elif isinstance(obj, (list, tuple, set, frozenset)) or type(obj).__name__ == "deque":
                children = [(f"[{i}]", v) for i, v in enumerate(list(obj)[:50])]  # type: ignore[call-overload]
            else:
                if hasattr(obj, "_getkeys"):  # Backtrader's params objects
                    children += [(f".{k}", getattr(obj, k)) for k in obj._getkeys()]
                attrs = getattr(obj, "__dict__", None)
                if isinstance(attrs, dict):
                    children += [(f".{k}", v) for k, v in attrs.items() if not k.startswith("_")]
            nxt.extend((child, path + name) for name, child in children)
        frontier = nxt
    return found


class Bypass(BaseStrategy):
    """On its second bar, tries what the issue did: the raw broker behind the strategy's broker."""

    RESULT: ClassVar[dict[str, Any]] = {}

    def next(self) -> None:
        if len(self) != 2:
            return
        try:
            self.broker.session.broker.place_order(OrderRequest("kt-bypass", "ORCL", "BUY", 100_000))
            self.RESULT["error"] = None
        except AttributeError as exc:
            self.RESULT["error"] = repr(exc)
        self.RESULT["paths"] = reachable_brokers(self)
        self.RESULT["direct"] = self.broker.buy(self, self.data, 100_000)  # the broker's own buy: the gate


def test_a_strategy_cannot_reach_the_raw_broker_and_its_direct_orders_meet_the_gate(
    slow_peer: TwsPeer, journal: Journal
) -> None:
    Bypass.RESULT.clear()
    limits = RiskSpec(max_order_notional=1_000, max_position_size=10)
    run_live(slow_peer, journal, Bypass, limits, done=lambda: "direct" in Bypass.RESULT)
    assert Bypass.RESULT["error"] is not None and "session" in Bypass.RESULT["error"]
    assert Bypass.RESULT["paths"] == []
    assert Bypass.RESULT["direct"].status == Bypass.RESULT["direct"].Rejected
    assert slow_peer.place_orders_received == []  # nothing of 100,000 shares reached the peer
    refused = journal.intents(("refused",))
    assert len(refused) == 1 and "exceed the limit 10" in (refused[0].reason or "")


def test_working_orders_count_live_as_in_a_backtest_two_entries_cannot_each_use_the_limit(
    tws_peer: TwsPeer, journal: Journal
) -> None:
    broker = IBBroker("127.0.0.1", tws_peer.port, 3, timeout=3.0)
    session = Session(broker, journal, SessionConfig("work", ["ORCL"], RiskSpec(max_position_size=10)))
    session.start()
    try:
        wait_until(lambda: session.pump(0.02) or "ORCL" in session.prices, what="a first bar")
        price = session.prices["ORCL"]
        results = [
            session.submit(OrderRequest(f"kt-w{i}", "ORCL", "BUY", 10, "LMT", round(price * 0.5, 2))) for i in range(5)
        ]
        assert results[0] is None
        assert all(r is not None and "position 20 ORCL (with working orders)" in r for r in results[1:])
        assert [ref for _, _, ref in tws_peer.place_orders_received] == ["kt-w0"]
    finally:
        broker.disconnect()


def test_reducing_refuses_the_order_that_would_flip_a_position(tws_peer: TwsPeer, journal: Journal) -> None:
    tws_peer.seed_position("ORCL", 100)
    broker = IBBroker("127.0.0.1", tws_peer.port, 4, timeout=3.0)
    session = Session(broker, journal, SessionConfig("flip", ["ORCL"], RiskSpec()))
    session.start()
    try:
        wait_until(lambda: session.pump(0.02) or "ORCL" in session.prices, what="a first bar")
        session.commands.put("halt")
        session.pump(0.0)
        assert session.risk.state is TradingState.REDUCING
        assert session.submit(OrderRequest("kt-s1", "ORCL", "SELL", 100)) is None
        second = session.submit(OrderRequest("kt-s2", "ORCL", "SELL", 100))
        assert second is not None and second.startswith("REDUCING: kill switch")
        wait_until(lambda: session.pump(0.02) or tws_peer.positions() == {}, what="the first sale to fill")
        assert [ref for _, _, ref in tws_peer.place_orders_received] == ["kt-s1"]
    finally:
        broker.disconnect()


def test_the_same_orders_are_accepted_and_refused_in_a_backtest_and_a_live_session(
    slow_peer: TwsPeer, journal: Journal, bundled_store: Any, probe_strategies: str
) -> None:
    from kubetrader.runner import BacktestRunner

    bars = load_daily_bars("ORCL")
    first = bars[REPLAY_START + 1].date  # the first bar the peer streams
    spec = BacktestSpec.model_validate(
        {
            "strategy": {"path": f"{probe_strategies}OrderSchedule", "params": {"tag": "backtest"}},
            "data": {
                "symbols": ["ORCL"],
                "start": first.isoformat(),
                "end": (first + dt.timedelta(days=40)).isoformat(),
                "adjust": False,  # the peer replays the file's raw prices
            },
            "broker": {"cash": 1_000_000, "commission": {"model": "none"}, "slippage": {"marketBps": 0}},
            "risk": TABLE_LIMITS.to_wire(),
        }
    )
    OrderSchedule.TABLES.clear()
    BacktestRunner(spec, store=bundled_store).run()
    rows = len(ORDER_SCHEDULE)
    run_live(
        slow_peer,
        journal,
        OrderSchedule,
        spec.risk,
        done=lambda: len(OrderSchedule.TABLES.get("live", [])) >= rows,
        tag="live",
    )
    backtest, live = OrderSchedule.TABLES["backtest"], OrderSchedule.TABLES["live"]
    header = ("bar", "how", "side", "size", "sent", "outcome", "sizing rule", "gate reason")
    print("\n" + "\n".join(" | ".join(str(c) for c in row) for row in [header, *backtest]))
    print("\n".join(" | ".join(str(c) for c in row) for row in live))
    assert live == backtest
    outcomes = {row[5] for row in backtest}
    assert outcomes == {"accepted", "refused"}
    assert sum(1 for row in backtest if row[7]) >= 4  # the gate itself refused raw orders
    # the live refusals are journaled with the gate's reason, and never reached the peer
    refused = {i.order_ref for i in journal.intents(("refused",))}
    assert not refused & {ref for _, _, ref in slow_peer.place_orders_received}
