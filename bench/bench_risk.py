"""Risk-gate overhead per order: the engine's check alone, and the live session's gate.

The session's gate is `RiskEngine.check` plus the position-with-working-orders lookup in
the journal (SQLite here, one query over 20 working orders). Goal < 1 ms an order. The
journal's own writes (intent before send, or the refusal) are printed apart: they are the
cost of a durable journal (a commit each), not of the risk checks.

Run: .venv/bin/python bench/bench_risk.py [orders]. Prints a table.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from kubetrader.live.broker import Bar, OrderRequest
from kubetrader.live.journal import Journal
from kubetrader.live.session import Session, SessionConfig
from kubetrader.live.simulated import SimulatedBroker
from kubetrader.live.testing.limits import every_limit
from kubetrader.risk import RiskEngine

# the tests' book of every limit, with room for the bench's many orders
LIMITS = every_limit(
    max_position_size=1_000, max_order_notional=50_000, max_orders_per_minute=1_000_000, max_price_deviation=0.1
)


def engine_check(n: int) -> float:
    engine = RiskEngine(LIMITS)
    engine.observe(100_000.0, "d")
    started = time.perf_counter()
    for i in range(n):
        engine.check("ORCL", 10 if i % 2 else -10, position=100.0, price=30.0, equity=100_000.0, now=float(i),
                     limit_price=30.5)  # fmt: skip
    return (time.perf_counter() - started) / n


def session_gate(n: int, work: Path) -> tuple[float, float, int]:
    """The gate's verdict on orders it refuses (concentration), then the full submit with the refusal's record."""
    import datetime as dt

    start = dt.datetime(2024, 1, 2, 15, tzinfo=dt.UTC)
    bars = [Bar("ABC", start + dt.timedelta(minutes=i), 100, 100, 100, 100, 1000) for i in range(5)]
    journal = Journal(f"sqlite:///{work / 'journal.db'}", deployment="bench")
    session = Session(
        SimulatedBroker({"ABC": bars}, bar_interval=0.0), journal, SessionConfig("bench", ["ABC"], LIMITS)
    )
    session.start()
    while "ABC" not in session.prices:
        session.pump(0.0)
    for i in range(20):  # some working orders for the lookup to add up
        session.submit(OrderRequest(f"kt-rest-{i}", "ABC", "BUY", 10, "LMT", 95.0))
    started = time.perf_counter()
    refused = 0
    for i in range(n):
        refused += session._refusal(OrderRequest(f"kt-big-{i}", "ABC", "BUY", 5_000), "strategy") is not None
    gate = (time.perf_counter() - started) / n
    m = max(1, n // 20)
    started = time.perf_counter()
    for i in range(m):
        session.submit(OrderRequest(f"kt-big-{i}", "ABC", "BUY", 5_000))
    submit = (time.perf_counter() - started) / m
    journal.close()
    return gate, submit, refused


def main(argv: list[str]) -> int:
    import logging

    logging.getLogger("kubetrader.live.session").setLevel(logging.ERROR)  # one warning per refusal otherwise
    n = int(argv[0]) if argv else 2_000
    per_check = engine_check(n * 10)
    with tempfile.TemporaryDirectory() as work:
        per_gate, per_submit, refused = session_gate(n, Path(work))
    print(f"{'path':<52} {'per order':>12} {'goal':>8}")
    print(f"{'RiskEngine.check (7 limits)':<52} {per_check * 1e6:>9.1f} us {'< 1 ms':>8}")
    print(f"{'session gate: position + working orders, check':<52} {per_gate * 1e6:>9.1f} us {'< 1 ms':>8}")
    print(f"{'submit incl. the refusal journaled (SQLite commits)':<52} {per_submit * 1e6:>9.1f} us {'':>8}")
    print(f"({refused} of {n} refused, as they should be)")
    return 0 if refused == n else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
