"""Emergency stop: cancel every order, flatten every position, then PROVE it at the broker.

"Flat" is claimed only after a fresh, successful round of queries shows no open order
and no position. Any query that fails (socket error, timeout, gateway down) makes the
stop a failure, reported as such: an empty list from a dead connection is not flat.

It talks to the broker directly (its own client id), so it works when the runner is
dead, hung or trading: `reqGlobalCancel` cancels the orders of every client.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from kubetrader.live.broker import Broker, BrokerUnavailableError, OrderRequest, Position


@dataclass
class StopReport:
    flat: bool
    message: str
    seconds: float
    flatten_orders: list[str] = field(default_factory=list)
    open_orders: int | None = None
    positions: dict[str, float] | None = None

    def as_dict(self) -> dict[str, object]:
        return {
            "flat": self.flat,
            "message": self.message,
            "seconds": round(self.seconds, 3),
            "flatten_orders": self.flatten_orders,
            "open_orders": self.open_orders,
            "positions": self.positions,
        }


def closing_orders(positions: list[Position], stamp: str) -> list[OrderRequest]:
    """One market order per non-zero position, in the direction that closes it (pure)."""
    return [
        OrderRequest(f"kt-estop-{p.symbol}-{stamp}", p.symbol, "SELL" if p.quantity > 0 else "BUY", abs(p.quantity))
        for p in sorted(positions, key=lambda p: p.symbol)
        if p.quantity
    ]


def emergency_stop(
    broker: Broker, *, timeout: float = 30.0, poll_interval: float = 0.1, flatten: bool = True
) -> StopReport:
    """Cancel all, flatten, confirm. The broker must be connected; never raises for broker errors."""
    started = time.monotonic()
    deadline = started + timeout
    sent: list[str] = []
    try:
        broker.global_cancel()
        while True:
            broker.poll(poll_interval)
            open_orders = broker.open_orders()
            # flatten orders still working are waited for, never doubled
            working_symbols = {o.symbol for o in open_orders if o.order_ref in sent}
            foreign = [o for o in open_orders if o.order_ref not in sent]
            if foreign and not working_symbols:
                broker.global_cancel()
            positions = broker.positions() if flatten else []
            if not open_orders and not positions:
                break
            if flatten and not foreign:
                todo = [p for p in positions if p.symbol not in working_symbols]
                for request in closing_orders(todo, str(int(time.time() * 1000))):
                    broker.place_order(request)
                    sent.append(request.order_ref)
            if time.monotonic() > deadline:
                return StopReport(
                    False,
                    f"not flat after {timeout:.0f} s: {len(open_orders)} open orders, positions "
                    f"{ {p.symbol: p.quantity for p in positions} }",
                    time.monotonic() - started,
                    sent,
                    len(open_orders),
                    {p.symbol: p.quantity for p in positions},
                )
        # the confirmation: a fresh round of queries, after the loop's own, must agree
        confirm_orders = broker.open_orders()
        confirm_positions = broker.positions()
    except BrokerUnavailableError as exc:
        return StopReport(
            False, f"emergency stop NOT confirmed: broker unavailable: {exc}", time.monotonic() - started, sent
        )
    flat = not confirm_orders and (not flatten or not confirm_positions)
    message = (
        "flat: 0 open orders and no positions, confirmed at the broker"
        if flat
        else "NOT flat at confirmation: orders or positions reappeared"
    )
    return StopReport(
        flat,
        message,
        time.monotonic() - started,
        sent,
        len(confirm_orders),
        {p.symbol: p.quantity for p in confirm_positions},
    )
