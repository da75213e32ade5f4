"""The daily-loss limit is per trading day: a runner that stays up gets a new budget each day."""

from __future__ import annotations

import datetime as dt

from kubetrader.live.broker import Bar, OrderRequest
from kubetrader.live.journal import Journal
from kubetrader.live.session import Session, SessionConfig
from kubetrader.live.simulated import SimulatedBroker
from kubetrader.risk import RiskEngine
from kubetrader.specs import RiskSpec

NY = dt.timezone(dt.timedelta(hours=-5))  # New York in winter, for reading the test's instants


def test_the_engine_keeps_the_opening_equity_within_a_day_and_resets_it_on_a_new_one() -> None:
    day = dt.date(2024, 1, 2)
    engine = RiskEngine(RiskSpec(max_daily_loss=0.02))
    engine.observe(100_000.0, day)
    assert (engine.day_open_equity, engine.day) == (100_000.0, day)
    assert [t.action for t in engine.observe(97_000.0, day)] == ["halted_day"]
    assert engine.day_open_equity == 100_000.0 and engine.halted_day
    engine.observe(97_000.0, day + dt.timedelta(days=1))
    assert (engine.day_open_equity, engine.day) == (97_000.0, day + dt.timedelta(days=1))
    assert engine.halted_day is None


def test_a_daily_loss_halt_lifts_at_new_york_midnight_and_the_new_day_gets_its_own_budget(journal: Journal) -> None:
    start = dt.datetime(2024, 1, 2, 15, tzinfo=dt.UTC)
    bars = [Bar("ABC", start + dt.timedelta(minutes=i), 100, 100, 100, 100, 1000) for i in range(50)]
    broker = SimulatedBroker({"ABC": bars}, cash=100_000.0, bar_interval=0.0)
    session = Session(broker, journal, SessionConfig("roll", ["ABC"], RiskSpec(max_daily_loss=0.02)))
    now = [dt.datetime(2024, 1, 2, 20, tzinfo=NY)]  # 8 pm in New York
    session.clock = lambda: now[0]
    session.start()
    while "ABC" not in session.prices:
        session.pump(0.0)

    session.cash -= 3_000.0  # a 3 % loss today (fees, a bad fill: how it happened does not matter here)
    refused = session.submit(OrderRequest("kt-day1", "ABC", "BUY", 10))
    assert refused is not None and "daily loss" in refused

    now[0] = dt.datetime(2024, 1, 2, 23, 59, tzinfo=NY)  # still the same New York day: still halted
    assert "daily loss" in (session.submit(OrderRequest("kt-day1b", "ABC", "BUY", 10)) or "")

    now[0] = dt.datetime(2024, 1, 3, 0, 1, tzinfo=NY)  # a new trading day: a new budget from today's equity
    assert session.submit(OrderRequest("kt-day2", "ABC", "BUY", 10)) is None
    assert abs(session.day_start_equity - 97_000.0) < 1e-6  # the new day opens at today's equity
    assert session.snapshot()["pnl"] == session.equity - session.day_start_equity

    session.cash -= 1_000.0  # about 1 % today: within the new day's 2 % budget
    assert session.submit(OrderRequest("kt-day2b", "ABC", "BUY", 10)) is None
