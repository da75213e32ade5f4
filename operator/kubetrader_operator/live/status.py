"""Pure status logic: the runner's snapshot -> LiveDeployment status, the phase, the promotion gate.

Conditions are the truth (GatewayReady, Connected, Trading, Halted, Stopping, and
StopBlocked: the alert while an emergency stop cannot be confirmed); the phase is
derived from them, so the two cannot disagree.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from kubetrader.specs.live import LiveDeploymentSpec, PromotionSpec
from kubetrader_operator.conditions import Condition, is_true, set_condition

GATEWAY_READY = "GatewayReady"
CONNECTED = "Connected"
TRADING = "Trading"
HALTED = "Halted"
STOPPING = "Stopping"
STOP_BLOCKED = "StopBlocked"
PROMOTED = "Promoted"
SPEC_APPLIED = "SpecApplied"
FAILED = "Failed"


def derive_phase(conditions: list[Condition]) -> str:
    """Stopping beats Failed beats Halted beats Trading; a gateway alone is Running."""
    if is_true(conditions, STOPPING):
        return "Stopping"
    if is_true(conditions, FAILED):
        return "Failed"
    if is_true(conditions, HALTED):
        return "Halted"
    if is_true(conditions, TRADING):
        return "Trading"
    if is_true(conditions, GATEWAY_READY) or is_true(conditions, CONNECTED):
        return "Running"
    return "Pending"


def _iso(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return dt.datetime.fromtimestamp(epoch, dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def status_from_snapshot(
    snapshot: dict[str, Any], conditions: list[Condition], *, generation: int | None, now: str
) -> dict[str, Any]:
    """The status fields and conditions a runner's /status answer implies."""
    connected = bool(snapshot.get("connected"))
    halted = snapshot.get("halted")
    heartbeat = _iso(snapshot.get("last_heartbeat"))
    c = set_condition(
        conditions,
        CONNECTED,
        connected,
        "BrokerAnswers" if connected else "BrokerUnreachable",
        f"last heartbeat {heartbeat}" if heartbeat else "no heartbeat yet",
        generation=generation,
        now=now,
    )
    halt_reason = "KillSwitch" if halted else "NotHalted"
    c = set_condition(c, HALTED, bool(halted), halt_reason, halted or "", generation=generation, now=now)
    trading = connected and not halted and not snapshot.get("stopping") and not snapshot.get("finished")
    c = set_condition(c, TRADING, trading, "Trading" if trading else "NotTrading", "", generation=generation, now=now)
    open_orders = snapshot.get("open_orders") or []
    return {
        "conditions": c,
        "phase": derive_phase(c),
        "connected": connected,
        "pnl": snapshot.get("pnl"),
        "equity": snapshot.get("equity"),
        "realizedPnl": snapshot.get("realized_pnl"),
        "unrealizedPnl": snapshot.get("unrealized_pnl"),
        "positions": dict(snapshot.get("positions") or {}),
        "openOrders": len(open_orders),
        "openOrderList": [_open_order(o) for o in open_orders],
        "haltReason": halted,
        "lastHeartbeat": heartbeat,
        "flatConfirmedAt": _iso(snapshot.get("flat_confirmed_at")),
    }


def _open_order(order: dict[str, Any]) -> dict[str, Any]:
    """The runner's snake_case order as the CRD's camelCase `openOrderList` item (unknown keys would be pruned)."""
    camel = {"order_id": "orderId", "order_type": "orderType", "limit_price": "limitPrice"}
    keys = ("order_id", "symbol", "side", "size", "order_type", "limit_price", "status")
    item = {camel.get(k, k): order.get(k) for k in keys if order.get(k) is not None}
    if "orderId" in item:
        item["orderId"] = str(item["orderId"])
    return item


def runner_unreachable_status(
    conditions: list[Condition], reason: str, *, generation: int | None, now: str
) -> dict[str, Any]:
    """The runner did not answer: Connected and Trading become False; no numbers are invented."""
    c = set_condition(conditions, CONNECTED, False, "RunnerUnreachable", reason, generation=generation, now=now)
    c = set_condition(c, TRADING, False, "RunnerUnreachable", reason, generation=generation, now=now)
    return {"conditions": c, "phase": derive_phase(c), "connected": False}


def promotion_refusal(
    promotion: PromotionSpec,
    backtest: dict[str, Any] | None,
    live: LiveDeploymentSpec | None = None,
    *,
    now: dt.datetime | None = None,
    max_age_days: int | None = None,
) -> str | None:
    """Why the named Backtest does not allow a `live` deployment to trade, or None when it does.

    The Backtest must have Succeeded, tested what will trade (strategy path, params, symbols,
    timeframe, when `live` is given), have finished within `promotion.maxBacktestAgeDays` (else
    the operator's `max_age_days`), and meet the Sharpe and drawdown bounds and, when required, the
    minimum deflated Sharpe and walk-forward efficiency its status reports.
    """
    name = promotion.from_backtest
    if backtest is None:
        return f"Backtest {name} not found"
    status = backtest.get("status") or {}
    if status.get("phase") != "Succeeded":
        return f"Backtest {name} is {status.get('phase') or 'Pending'}, not Succeeded"
    if live is not None:
        mismatch = _backtest_mismatch(backtest.get("spec") or {}, live)
        if mismatch:
            return f"Backtest {name} did not test what would trade: {mismatch}"
    age_limit = promotion.max_backtest_age_days or max_age_days
    if age_limit is not None:
        finished = status.get("completionTime")
        if not finished:
            return f"Backtest {name} has no completionTime to check its age against {age_limit} days"
        when = dt.datetime.fromisoformat(str(finished).replace("Z", "+00:00"))
        age = ((now or dt.datetime.now(dt.UTC)) - when).total_seconds() / 86_400
        if age > age_limit:
            return f"Backtest {name} finished {age:.1f} days ago, older than {age_limit} days"
    metrics = status.get("metrics") or {}
    sharpe = metrics.get("sharpeRatio")
    drawdown = metrics.get("maxDrawdown")
    if promotion.min_sharpe is not None:
        if sharpe is None:
            return f"Backtest {name} has no Sharpe ratio"
        if sharpe < promotion.min_sharpe:
            return f"Backtest {name} Sharpe {sharpe:.2f} is below the minimum {promotion.min_sharpe:.2f}"
    if promotion.max_drawdown is not None:
        if drawdown is None:
            return f"Backtest {name} has no max drawdown"
        if abs(drawdown) > promotion.max_drawdown:
            return f"Backtest {name} max drawdown {abs(drawdown):.2%} exceeds {promotion.max_drawdown:.2%}"
    for minimum, key, label in (
        (promotion.min_deflated_sharpe, "deflatedSharpe", "deflated Sharpe"),
        (promotion.min_walk_forward_efficiency, "walkForwardEfficiency", "walk-forward efficiency"),
    ):
        if minimum is None:
            continue
        value = metrics.get(key)
        if value is None:
            return f"Backtest {name} reports no {label} (status.metrics.{key}), and the promotion requires {minimum:g}"
        if value < minimum:
            return f"Backtest {name} {label} {value:.3f} is below the minimum {minimum:g}"
    return None


def _backtest_mismatch(backtest_spec: dict[str, Any], live: LiveDeploymentSpec) -> str | None:
    """The first difference between what the Backtest ran and what the deployment would trade."""
    strategy = backtest_spec.get("strategy") or {}
    data = backtest_spec.get("data") or {}
    if strategy.get("path") != live.strategy.path:
        return f"strategy {strategy.get('path')} != {live.strategy.path}"
    if (strategy.get("params") or {}) != dict(live.strategy.params):
        return f"params {strategy.get('params') or {}} != {dict(live.strategy.params)}"
    if sorted(data.get("symbols") or []) != sorted(live.symbols):
        return f"symbols {data.get('symbols')} != {list(live.symbols)}"
    if (data.get("timeframe") or "1d") != live.timeframe:
        return f"timeframe {data.get('timeframe') or '1d'} != {live.timeframe}"
    return None
