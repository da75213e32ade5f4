"""Pre-trade risk checks, outside the strategy: pure functions of (order, state, limits).

The strategy's own risk controls are a first line; these are the last one, applied by
the runner to every order before it reaches the broker, whatever the strategy does.
A refusal is a reason string (journaled with the order); `None` means "send it".

Two limits halt trading rather than refuse one order: the daily loss (until the next
day) and the drawdown (for good). Halted means no order that increases exposure goes
out; orders that only reduce a position still pass, so a halted runner can still
flatten, and cancels are never checked at all.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from kubetrader.live.broker import OrderRequest
from kubetrader.specs import RiskSpec

WINDOW_SECONDS = 60.0


@dataclass(frozen=True)
class RiskState:
    equity: float
    day_start_equity: float
    peak_equity: float
    positions: dict[str, float] = field(default_factory=dict)
    recent_orders: tuple[float, ...] = ()  # monotonic send times
    halted: str | None = None  # the kill switch: a reason, or None


def roll_trading_day(
    day_start_equity: float, trading_day: dt.date | None, today: dt.date, equity: float
) -> tuple[float, dt.date]:
    """The day's opening equity and its date: kept within a trading day, reset to the current
    equity on the first look of a new day. Without this, a runner that stays up would measure
    every later day's loss from the first morning's equity (and a daily-loss halt would never
    lift, or a loss would be counted against yesterday's gains)."""
    if trading_day is None or today > trading_day:
        return equity, today
    return day_start_equity, trading_day


def halt_reason(state: RiskState, limits: RiskSpec) -> str | None:
    """Why trading is halted now (kill switch, daily loss, drawdown), or None."""
    if state.halted:
        return f"halted: {state.halted}"
    if limits.max_daily_loss is not None and state.day_start_equity > 0:
        loss = (state.day_start_equity - state.equity) / state.day_start_equity
        if loss >= limits.max_daily_loss:
            return f"daily loss {loss:.2%} reached the limit {limits.max_daily_loss:.2%}"
    if limits.max_drawdown is not None and state.peak_equity > 0:
        drawdown = (state.peak_equity - state.equity) / state.peak_equity
        if drawdown >= limits.max_drawdown:
            return f"drawdown {drawdown:.2%} reached the limit {limits.max_drawdown:.2%}"
    return None


def reduces_exposure(position: float, signed_quantity: float) -> bool:
    """True when the order only shrinks the position toward zero (never flips it)."""
    after = position + signed_quantity
    return position != 0 and abs(after) < abs(position) and (after == 0 or (after > 0) == (position > 0))


def check_order(request: OrderRequest, price: float, state: RiskState, limits: RiskSpec, now: float) -> str | None:
    """The reason to refuse `request` at reference `price`, or None to let it through."""
    if request.quantity <= 0:
        return f"quantity must be positive, got {request.quantity}"
    if price <= 0:
        return f"no valid reference price for {request.symbol} ({price})"
    position = state.positions.get(request.symbol, 0.0)
    reducing = reduces_exposure(position, request.signed_quantity)

    recent = [t for t in state.recent_orders if now - t < WINDOW_SECONDS]
    if limits.max_orders_per_minute is not None and len(recent) >= limits.max_orders_per_minute:
        return f"order rate: {len(recent)} orders in the last minute, limit {limits.max_orders_per_minute}"
    if reducing:
        return None

    halted = halt_reason(state, limits)
    if halted:
        return halted
    notional = request.quantity * price
    if limits.max_order_notional is not None and notional > limits.max_order_notional:
        return f"order notional {notional:,.2f} exceeds the limit {limits.max_order_notional:,.2f}"
    after = position + request.signed_quantity
    if limits.max_position_size is not None and abs(after) > limits.max_position_size:
        return f"position {after:g} {request.symbol} would exceed the limit {limits.max_position_size:g}"
    if limits.max_concentration is not None:
        if state.equity <= 0:
            return "equity is not positive; no new exposure"
        share = abs(after) * price / state.equity
        if share > limits.max_concentration:
            return f"{request.symbol} would be {share:.2%} of equity, limit {limits.max_concentration:.2%}"
    return None
