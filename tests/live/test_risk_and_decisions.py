"""The pure parts of the live stack: pre-trade risk, reconcile decisions, backoff, health checks."""

from __future__ import annotations

import datetime as dt

import pytest

from kubetrader.live.broker import BrokerOrder, BrokerUnavailableError
from kubetrader.live.connection import HealthCheck, RetryPolicy, backoff_delays, connect_with_retry
from kubetrader.live.journal import Intent, reconcile_decision
from kubetrader.live.simulated import SimulatedBroker
from kubetrader.live.testing.limits import every_limit
from kubetrader.risk import RiskEngine, TradingState, reduces_exposure
from kubetrader.specs import RiskSpec


def check(limits: RiskSpec, signed: float, *, position: float = 0.0, price: float = 30.0, equity: float = 100_000.0,
          now: float = 0.0, engine: RiskEngine | None = None, **kw: object) -> str | None:  # fmt: skip
    engine = engine or RiskEngine(limits)
    return engine.check("ORCL", signed, position=position, price=price, equity=equity, now=now, **kw)  # type: ignore[arg-type]


def test_order_within_every_limit_passes() -> None:
    assert check(every_limit(), 10, now=1000.0) is None


def test_non_positive_quantity_and_missing_price_are_refused() -> None:
    assert "quantity must be positive" in (check(RiskSpec(), 0) or "")
    assert "no valid reference price" in (check(RiskSpec(), 1, price=0.0) or "")


def test_max_order_notional_refuses_the_order_above_it_only() -> None:
    limits = RiskSpec(max_order_notional=3_000)
    assert check(limits, 100) is None
    reason = check(limits, 101)
    assert reason is not None and "notional 3,030.00 exceeds the limit 3,000.00" in reason


def test_max_position_size_counts_the_position_with_working_orders() -> None:
    limits = RiskSpec(max_position_size=100)
    assert check(limits, 5, position=95) is None
    reason = check(limits, 6, position=95)
    assert reason is not None and "position 101 ORCL (with working orders) would exceed the limit 100" in reason
    short = check(limits, -101)
    assert short is not None and "-101" in short


def test_max_concentration_uses_equity_and_refuses_without_positive_equity() -> None:
    limits = RiskSpec(max_concentration=0.1)
    assert check(limits, 333) is None  # 9,990 of 100,000
    reason = check(limits, 334)
    assert reason is not None and "of equity (with working orders), limit 10.00%" in reason
    assert check(limits, 1, equity=0.0) == "equity is not positive; no new exposure"


def test_max_daily_loss_reduces_only_and_refuses_a_flip() -> None:
    engine = RiskEngine(RiskSpec(max_daily_loss=0.05))
    engine.observe(100_000.0, "d1")
    assert [t.rule for t in engine.observe(94_000.0, "d1")] == ["max_daily_loss"]
    assert engine.state is TradingState.REDUCING
    reason = check(engine.limits, 1, position=50, engine=engine)
    assert reason is not None and reason.startswith("REDUCING: daily loss")
    assert check(engine.limits, -50, position=50, engine=engine) is None
    assert check(engine.limits, -51, position=50, engine=engine) is not None  # flipping is new exposure
    engine.observe(94_000.0, "d2")
    assert engine.state is TradingState.ACTIVE  # a new day, a new budget


def test_max_drawdown_halts_from_the_peak_for_good() -> None:
    engine = RiskEngine(RiskSpec(max_drawdown=0.1))
    for equity in (100_000.0, 121_000.0, 108_000.0):
        engine.observe(equity, "d1")
    assert engine.halted_for_good is not None and "below its peak 121000.00" in engine.halted_for_good
    engine.observe(125_000.0, "d2")
    assert engine.state is TradingState.REDUCING  # a recovery does not lift it


def test_order_rate_counts_only_the_last_minute_and_binds_even_for_reducing_orders() -> None:
    engine = RiskEngine(RiskSpec(max_orders_per_minute=3))
    for t in (0.0, 50.0, 55.0):
        engine.sent(t)
    reason = check(engine.limits, -5, position=10, now=59.0, engine=engine)
    assert reason == "order rate: 3 orders in the last minute, limit 3"
    assert check(engine.limits, 5, position=10, now=60.5, engine=engine) is None  # t=0 left the window


def test_price_band_refuses_a_limit_price_far_from_the_last_trade() -> None:
    limits = RiskSpec(max_price_deviation=0.05)
    assert check(limits, 10, limit_price=31.4) is None
    reason = check(limits, -10, position=10, limit_price=20.0)
    assert reason is not None and "33.33% from the last trade 30" in reason


def test_kill_switch_reduces_only_and_halted_refuses_everything_but_an_operator_flatten() -> None:
    engine = RiskEngine(RiskSpec())
    engine.set_manual(TradingState.REDUCING, "kill switch")
    assert check(engine.limits, -1, position=-20, engine=engine) == (
        "REDUCING: kill switch; only orders that reduce a position without flipping it pass"
    )
    assert check(engine.limits, 20, position=-20, engine=engine) is None
    engine.set_manual(TradingState.HALTED, "cash differs from the broker")
    assert check(engine.limits, 20, position=-20, engine=engine) == "HALTED: cash differs from the broker; no orders"
    assert check(engine.limits, 20, position=-20, engine=engine, origin="operator") is None
    assert check(engine.limits, 21, position=-20, engine=engine, origin="operator") is not None
    engine.set_manual(TradingState.REDUCING, "kill switch")
    assert engine.state is TradingState.HALTED  # never weakened by a lesser state


def test_a_sized_order_always_passes_the_gate() -> None:
    limits = RiskSpec(max_position_size=50, max_concentration=0.3, max_order_notional=1_000)
    engine = RiskEngine(limits)
    for position in (-60, -50, -10, 0, 10, 49, 50, 60):
        for signed in (-200, -35, -1, 1, 35, 200):
            verdict = engine.size(signed, position=position, price=30.0, equity=100_000.0)
            if verdict.allowed:
                sized = verdict.allowed if signed > 0 else -verdict.allowed
                assert check(limits, sized, position=position, engine=engine) is None, (position, signed)


@pytest.mark.parametrize(
    ("position", "signed", "expected"),
    [(10, -10, True), (10, -4, True), (10, -11, False), (-5, 5, True), (-5, 1, True), (0, -1, False), (10, 1, False)],
)
def test_reduces_exposure_only_toward_zero_never_through_it(position: float, signed: float, expected: bool) -> None:
    assert reduces_exposure(position, signed) is expected


def _intent() -> Intent:
    now = dt.datetime.now(dt.UTC)
    return Intent("kt-x", "d", "ORCL", "BUY", 10, "MKT", None, "pending", None, None, 0.0, 0.0, now, now)


def _order(status: str) -> BrokerOrder:
    return BrokerOrder("kt-x", "1", "ORCL", "BUY", 10, "MKT", None, status)


def test_reconcile_adopts_whatever_the_broker_knows_and_never_sends_it_again() -> None:
    for status in ("Submitted", "Filled", "Cancelled"):
        assert reconcile_decision(_intent(), _order(status), 0.0, age=1e6, max_resend_age=60) == "adopt"
    assert reconcile_decision(_intent(), None, 10.0, age=1e6, max_resend_age=60) == "adopt"


def test_reconcile_sends_a_young_unknown_intent_and_expires_an_old_one() -> None:
    assert reconcile_decision(_intent(), None, 0.0, age=59.0, max_resend_age=60) == "send"
    assert reconcile_decision(_intent(), None, 0.0, age=60.0, max_resend_age=60) == "send"
    assert reconcile_decision(_intent(), None, 0.0, age=60.1, max_resend_age=60) == "expire"


def test_backoff_doubles_from_the_base_and_is_capped() -> None:
    assert backoff_delays(RetryPolicy(attempts=7, base_delay=0.5, max_delay=5.0)) == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]
    assert backoff_delays(RetryPolicy(attempts=1)) == []


class FlakyBroker(SimulatedBroker):
    """Refuses the first `failures` connects, as a gateway still logging in does."""

    def __init__(self, failures: int) -> None:
        super().__init__({})
        self.failures = failures
        self.connects = 0

    def connect(self) -> None:
        self.connects += 1
        if self.connects <= self.failures:
            raise BrokerUnavailableError("connection refused")
        super().connect()


def test_connect_with_retry_sleeps_the_backoff_between_attempts_then_succeeds() -> None:
    slept: list[float] = []
    broker = FlakyBroker(failures=3)
    attempts = connect_with_retry(broker, RetryPolicy(attempts=5, base_delay=1.0, max_delay=3.0), sleep=slept.append)
    assert attempts == 4
    assert slept == [1.0, 2.0, 3.0]
    assert broker.is_connected()


def test_connect_with_retry_raises_the_last_error_when_attempts_run_out() -> None:
    slept: list[float] = []
    with pytest.raises(BrokerUnavailableError, match="refused"):
        connect_with_retry(FlakyBroker(failures=9), RetryPolicy(attempts=3, base_delay=1.0), sleep=slept.append)
    assert slept == [1.0, 2.0]


def test_health_check_is_due_by_its_interval_and_records_the_failure() -> None:
    clock = [100.0]
    health = HealthCheck(interval=30.0, clock=lambda: clock[0])
    broker = SimulatedBroker({})
    broker.connect()
    assert health.due() and health.run(broker) and health.last_ok == 100.0
    clock[0] = 129.0
    assert not health.due()
    clock[0] = 130.0
    broker.disconnect()
    assert health.due() and not health.run(broker)
    assert health.last_ok == 100.0 and "disconnected" in (health.last_error or "")
