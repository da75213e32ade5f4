"""A randomized fault campaign for the emergency stop: seeded books x composed faults -> invariants.

`scenario(seed)` draws (pure, from the seed alone) a book of positions (stocks, an
option, a second account) and resting orders, and faults at random sizes: position
lag, partial fills, PreSubmitted / PendingCancel windows, skipped and duplicated
orderStatus, rejects (a few, or every one), a halt, and events at random times during
the stop: a socket cut, an 1100 outage, a second flattener under the same client id.
`run(peer, scenario)` stops the book through the real ib_insync client and returns
what happened; `violations(outcome)` lists the broken invariants:

- never "flat" while the peer's account holds a position or lists an open order;
- closing orders per contract bounded (`StopSettings.max_orders`);
- one flattener at a time: the second one, under the same client id, is refused by the
  gateway while the first is connected, and sends nothing then.

The tests run a few dozen seeds (tests/live/test_stop_campaign.py); `make bench` runs
1,000 (bench/bench_live_campaign.py) and reports false flats, blocked stops with their
reasons, and the stop-latency distribution.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

from kubetrader.live.broker import BrokerUnavailableError, ClientIdInUseError
from kubetrader.live.ib_broker import IBBroker
from kubetrader.live.stop import StopReport, StopSettings, emergency_stop
from kubetrader.live.testing.faults import PeerFaults, RejectRule
from kubetrader.live.testing.instruments import option
from kubetrader.live.testing.tws_peer import ACCOUNTS, TwsPeer

STOCKS = ("ORCL", "NVDA", "YHOO")
STOP_CLIENT_ID = 9


@dataclass(frozen=True)
class Scenario:
    seed: int
    positions: tuple[tuple[str, str, float], ...]  # (account, what: a stock or "OPT", quantity)
    resting: tuple[tuple[str, str, float], ...]  # (stock, action, quantity), far from the market
    faults: PeerFaults
    halt: str | None
    unhalt_after: float | None  # None: the halt never lifts (the stop cannot finish)
    events: tuple[tuple[float, str], ...]  # (seconds into the stop, "cut" | "outage" | "second")
    permanent_reject: bool
    settings: StopSettings

    @property
    def can_finish(self) -> bool:
        return not self.permanent_reject and (self.halt is None or self.unhalt_after is not None)


def scenario(seed: int) -> Scenario:
    """Everything random about one run, drawn from `seed` (pure)."""
    rng = random.Random(seed)
    positions = []
    for _ in range(rng.randint(1, 5)):
        what = rng.choice((*STOCKS, "OPT"))
        quantity = float(rng.choice((-1, 1)) * (rng.randint(1, 5) if what == "OPT" else rng.randint(1, 400)))
        positions.append((rng.choice(ACCOUNTS) if rng.random() < 0.2 else ACCOUNTS[0], what, quantity))
    resting = tuple(
        (rng.choice(STOCKS), rng.choice(("BUY", "SELL")), float(rng.randint(1, 100))) for _ in range(rng.randint(0, 4))
    )
    lag = rng.choice((0.0, 0.0, 0.1, 0.2, 0.3))
    faults = PeerFaults(
        position_lag=lag,
        fill_slices=rng.choice((1, 1, 2, 3)),
        fill_interval=rng.choice((0.02, 0.05, 0.1)),
        presubmit_window=rng.choice((0.0, 0.0, 0.1)),
        cancel_window=rng.choice((0.0, 0.0, 0.2)),
        skip_fill_status=rng.random() < 0.3,
        duplicate_status=rng.choice((0, 0, 0, 2)),
    )
    permanent = rng.random() < 0.08
    if permanent:
        faults.rejects.append(RejectRule(201, symbol=rng.choice(STOCKS)))
    elif rng.random() < 0.3:
        faults.rejects.append(RejectRule(201, symbol=rng.choice(STOCKS), remaining=rng.randint(1, 2)))
    if rng.random() < 0.15:
        faults.rejects.append(RejectRule(rng.choice((399, 2137, 10349)), remaining=rng.randint(1, 3)))
    halt = rng.choice(STOCKS) if rng.random() < 0.15 else None
    unhalt_after = None if halt and rng.random() < 0.3 else rng.uniform(0.2, 1.5)
    events = []
    for kind, p in (("cut", 0.25), ("outage", 0.15), ("second", 0.15)):
        if rng.random() < p:
            events.append((rng.uniform(0.05, 1.5), kind))
    settings = StopSettings(
        timeout=8.0 if (permanent or (halt and unhalt_after is None)) else 20.0,
        query_interval=0.1,
        settle_window=max(0.4, lag + 0.3),
        backoff_base=0.1,
        backoff_cap=0.4,
    )
    return Scenario(
        seed, tuple(positions), resting, faults, halt, unhalt_after if halt else None, tuple(sorted(events)),
        permanent, settings,
    )  # fmt: skip


@dataclass
class Outcome:
    scenario: Scenario
    report: StopReport
    seconds: float
    holdings: dict[tuple[str, int], float]
    open_orders: int
    closes_per_contract: Counter[int]
    second_fenced: bool | None = None  # None: no second flattener in this run
    second_sent: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def false_flat(self) -> bool:
        return self.report.flat and (bool(self.holdings) or self.open_orders > 0)


def violations(outcome: Outcome) -> list[str]:
    problems = []
    if outcome.false_flat:
        problems.append(f"FALSE FLAT: peer holds {outcome.holdings}, {outcome.open_orders} open orders")
    cap = outcome.scenario.settings.max_orders
    if any(n > cap for n in outcome.closes_per_contract.values()):
        problems.append(f"more than {cap} closes on a contract: {dict(outcome.closes_per_contract)}")
    if outcome.second_fenced is False and outcome.second_sent and not outcome.report.flat:
        problems.append("a second flattener acted while the first was connected")
    if outcome.scenario.can_finish and not outcome.report.flat:
        problems.append(f"should have ended flat: {outcome.report.message}")
    if outcome.scenario.permanent_reject and outcome.report.flat and outcome.closes_per_contract:
        # flat despite every close on one symbol rejected: only right if that symbol held nothing
        pass
    return problems


def _second_flattener(peer: TwsPeer, outcome: Outcome) -> None:
    broker = IBBroker("127.0.0.1", peer.port, STOP_CLIENT_ID, timeout=2.0)
    try:
        broker.connect()
    except ClientIdInUseError:
        outcome.second_fenced = True
        return
    except BrokerUnavailableError as exc:
        outcome.notes.append(f"second flattener could not connect: {exc}")
        outcome.second_fenced = True
        return
    outcome.second_fenced = False  # the first was between connections: this one holds the slot now
    try:
        report = emergency_stop(broker, settings=StopSettings(timeout=5.0, query_interval=0.1, ref_prefix="kt-2nd"))
        outcome.second_sent = len(report.flatten_orders)
    finally:
        broker.disconnect()


def _events(peer: TwsPeer, s: Scenario, outcome: Outcome, started: float) -> None:
    timeline = list(s.events)
    if s.halt and s.unhalt_after is not None:
        timeline.append((s.unhalt_after, "unhalt"))
    for at, kind in sorted(timeline):
        time.sleep(max(0.0, started + at - time.monotonic()))
        if kind == "cut":
            peer.drop_connections()
        elif kind == "outage":
            peer.connectivity_lost()
            time.sleep(0.3)
            peer.connectivity_restored(data_lost=s.seed % 2 == 0)
        elif kind == "second":
            _second_flattener(peer, outcome)
        elif kind == "unhalt" and s.halt:
            peer.halt(s.halt, False)


def run(peer: TwsPeer, s: Scenario) -> Outcome:
    """Set the book and faults on a (reset) peer, stop it, and collect the outcome."""
    peer.reset(s.faults)
    call = option("ORCL", "20250117", 30.0, "C")
    for account, what, quantity in s.positions:
        peer.seed_position(call if what == "OPT" else what, quantity, account=account)
    for symbol, action, quantity in s.resting:
        price = peer.price(symbol)
        peer.seed_order(symbol, action, quantity, round(price * (0.3 if action == "BUY" else 3.0), 2))
    if s.halt:
        peer.halt(s.halt)
    broker = IBBroker("127.0.0.1", peer.port, STOP_CLIENT_ID, timeout=2.0)
    broker.connect()
    outcome = Outcome(s, StopReport(False, "", 0.0), 0.0, {}, 0, Counter())
    started = time.monotonic()
    thread = threading.Thread(target=_events, args=(peer, s, outcome, started), daemon=True)
    thread.start()
    try:
        report = emergency_stop(broker, settings=s.settings)
    finally:
        broker.disconnect()
    outcome.seconds = time.monotonic() - started
    thread.join(10)
    outcome.report = report
    if s.halt:
        peer.halt(s.halt, False)
    outcome.holdings = peer.holdings()
    outcome.open_orders = len(peer.open_orders())
    outcome.closes_per_contract = Counter(
        o.con_id for o in peer.orders() if o.order_ref.startswith(s.settings.ref_prefix)
    )
    return outcome
