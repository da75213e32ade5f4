"""The pure parts of the live stack: pre-trade risk, reconcile decisions, backoff, health checks."""

from __future__ import annotations

import datetime as dt

import pytest

from kubetrader.live.broker import BrokerOrder, BrokerUnavailableError, OrderRequest
from kubetrader.live.connection import HealthCheck, RetryPolicy, backoff_delays, connect_with_retry
from kubetrader.live.journal import Intent, reconcile_decision
from kubetrader.live.risk import RiskState, check_order, halt_reason, reduces_exposure
from kubetrader.live.simulated import SimulatedBroker
from kubetrader.specs import RiskSpec

STATE = RiskState(equity=100_000.0, day_start_equity=100_000.0, peak_equity=100_000.0)


def buy(qty: float = 10, symbol: str = "ORCL") -> OrderRequest:
    return OrderRequest("kt-1", symbol, "BUY", qty)


def sell(qty: float = 10, symbol: str = "ORCL") -> OrderRequest:
    return OrderRequest("kt-1", symbol, "SELL", qty)


def test_order_within_every_limit_passes() -> None:
    limits = RiskSpec(
        max_position_size=100,
        max_concentration=0.5,
        max_daily_loss=0.05,
        max_drawdown=0.2,
        max_order_notional=5_000,
        max_orders_per_minute=10,
    )
    assert check_order(buy(10), 30.0, STATE, limits, now=1000.0) is None


def test_non_positive_quantity_and_missing_price_are_refused() -> None:
    assert "quantity must be positive" in (check_order(buy(0), 30.0, STATE, RiskSpec(), 0.0) or "")
    assert "no valid reference price" in (check_order(buy(1), 0.0, STATE, RiskSpec(), 0.0) or "")


def test_max_order_notional_refuses_the_order_above_it_only() -> None:
    limits = RiskSpec(max_order_notional=3_000)
    assert check_order(buy(100), 30.0, STATE, limits, 0.0) is None
    reason = check_order(buy(101), 30.0, STATE, limits, 0.0)
    assert reason is not None and "notional 3,030.00 exceeds the limit 3,000.00" in reason


def test_max_position_size_counts_the_existing_position() -> None:
    limits = RiskSpec(max_position_size=100)
    state = RiskState(100_000.0, 100_000.0, 100_000.0, positions={"ORCL": 95})
    assert check_order(buy(5), 30.0, state, limits, 0.0) is None
    reason = check_order(buy(6), 30.0, state, limits, 0.0)
    assert reason is not None and "position 101 ORCL would exceed the limit 100" in reason
    short = check_order(sell(101), 30.0, RiskState(100_000.0, 100_000.0, 100_000.0), limits, 0.0)
    assert short is not None and "-101" in short


def test_max_concentration_uses_equity_and_refuses_without_positive_equity() -> None:
    limits = RiskSpec(max_concentration=0.1)
    assert check_order(buy(333), 30.0, STATE, limits, 0.0) is None  # 9,990 of 100,000
    reason = check_order(buy(334), 30.0, STATE, limits, 0.0)
    assert reason is not None and "of equity, limit 10.00%" in reason
    broke = RiskState(0.0, 100_000.0, 100_000.0)
    assert check_order(buy(1), 30.0, broke, limits, 0.0) == "equity is not positive; no new exposure"


def test_max_daily_loss_halts_new_exposure_but_lets_a_position_be_reduced() -> None:
    limits = RiskSpec(max_daily_loss=0.05)
    down = RiskState(94_000.0, 100_000.0, 100_000.0, positions={"ORCL": 50})
    assert halt_reason(down, limits) == "daily loss 6.00% reached the limit 5.00%"
    assert check_order(buy(1), 30.0, down, limits, 0.0) == "daily loss 6.00% reached the limit 5.00%"
    assert check_order(sell(50), 30.0, down, limits, 0.0) is None
    assert check_order(sell(51), 30.0, down, limits, 0.0) is not None  # flipping is new exposure


def test_max_drawdown_halts_from_the_peak_not_from_the_day_start() -> None:
    limits = RiskSpec(max_drawdown=0.1)
    state = RiskState(equity=108_000.0, day_start_equity=105_000.0, peak_equity=121_000.0)
    reason = check_order(buy(1), 30.0, state, limits, 0.0)
    assert reason is not None and reason.startswith("drawdown 10.74%")


def test_order_rate_counts_only_the_last_minute_and_binds_even_for_reducing_orders() -> None:
    limits = RiskSpec(max_orders_per_minute=3)
    state = RiskState(100_000.0, 100_000.0, 100_000.0, positions={"ORCL": 10}, recent_orders=(0.0, 50.0, 55.0))
    reason = check_order(sell(5), 30.0, state, limits, now=59.0)
    assert reason == "order rate: 3 orders in the last minute, limit 3"
    assert check_order(buy(5), 30.0, state, limits, now=60.5) is None  # the order at t=0 left the window


def test_kill_switch_refuses_new_exposure_and_allows_closing() -> None:
    state = RiskState(100_000.0, 100_000.0, 100_000.0, positions={"ORCL": -20}, halted="kill switch")
    assert check_order(sell(1), 30.0, state, RiskSpec(), 0.0) == "halted: kill switch"
    assert check_order(buy(20), 30.0, state, RiskSpec(), 0.0) is None


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
