"""A risk book with every pre-trade limit set, for the tests and `bench/bench_risk.py` alike."""

from __future__ import annotations

from typing import Any

from kubetrader.specs import RiskSpec

EVERY_LIMIT: dict[str, Any] = {
    "max_position_size": 100,
    "max_concentration": 0.5,
    "max_daily_loss": 0.05,
    "max_drawdown": 0.2,
    "max_order_notional": 5_000,
    "max_orders_per_minute": 10,
    "max_price_deviation": 0.05,
}


def every_limit(**overrides: Any) -> RiskSpec:
    """A RiskSpec with all seven limits set (so every check of the engine runs), `overrides` applied."""
    return RiskSpec(**{**EVERY_LIMIT, **overrides})
