"""Emergency stop: cancel every order, flatten every position, then PROVE it at the broker.

"Flat" is claimed only after a fresh, successful round of queries shows no open order
and no position. Any query that fails (socket error, timeout, gateway down) makes the
stop a failure, reported as such: an empty list from a dead connection is not flat.

It talks to the broker directly (its own client id), so it works when the runner is
dead, hung or trading: `reqGlobalCancel` cancels the orders of every client.

`spec.stopPolicy` (`flatten`, `cancelOrders`) decides what "stopped" means:

- flatten true, cancelOrders true: cancel every order, close every position;
  confirmed when fresh queries show no order and no position.
- flatten true, cancelOrders false: exactly the same (`cancelOrders: false` has no effect).
- flatten false, cancelOrders true: cancel every order, keep the positions; confirmed
  when no order is open.
- flatten false, cancelOrders false: cancel only the orders that would INCREASE exposure;
  keep the positions and the orders that only reduce them (stop-loss, take-profit);
  confirmed when no exposure-increasing order is open.

Why `cancelOrders: false` does nothing when flattening: a stopped book is flat, and on a
flat book every resting order would open a position nobody manages; and closing at
market while the exits still work risks filling both (an over-close into the opposite
side). So the exits are cancelled before the close, as with `cancelOrders: true`.

Why entries are cancelled even with `cancelOrders: false`: the deployment is going
away, and an entry filling after its runner is gone opens risk that no strategy and no
risk check watches. An order "increases exposure" unless, filled in full against the
symbol's current position, it only shrinks that position toward zero (never flips it);
each order is judged on its own (a stop-loss and a take-profit for the same shares are
both exits: IB's OCA group keeps them from both filling). Any order on a symbol with no
position is an entry.

IB lets a client cancel one order only if it placed it, so the entries are cancelled
one by one by their owner (the runner, through `POST /halt?cancel=entries`, or a stop
running under the runner's client id). When they are still working after
`entry_cancel_grace` seconds (the runner is dead), the stop falls back to
`reqGlobalCancel`: an unmanaged entry is worse than a lost exit. The report says so
(`exits_cancelled`), so the operator can record that the policy could not be honoured.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from kubetrader.live.broker import Broker, BrokerOrder, BrokerUnavailableError, OrderRequest, Position
from kubetrader.risk import reduces_exposure

FALLBACK_NOTE = "cancelOrders=false not honoured: entries of another client still worked, so reqGlobalCancel ran"


@dataclass
class StopReport:
    flat: bool
    message: str
    seconds: float
    flatten_orders: list[str] = field(default_factory=list)
    open_orders: int | None = None
    positions: dict[str, float] | None = None
    kept_orders: list[str] = field(default_factory=list)  # exits left working (cancelOrders: false)
    exits_cancelled: bool = False  # the global-cancel fallback took the exits too

    def as_dict(self) -> dict[str, object]:
        return {
            "flat": self.flat,
            "message": self.message,
            "seconds": round(self.seconds, 3),
            "flatten_orders": self.flatten_orders,
            "open_orders": self.open_orders,
            "positions": self.positions,
            "kept_orders": self.kept_orders,
            "exits_cancelled": self.exits_cancelled,
        }


def exposure_increasing(orders: list[BrokerOrder], positions: list[Position]) -> list[BrokerOrder]:
    """The open orders that would increase exposure if filled in full (pure; see the module docstring)."""
    held = {p.symbol: p.quantity for p in positions}
    return [
        o
        for o in orders
        if o.is_open and not reduces_exposure(held.get(o.symbol, 0.0), o.quantity if o.side == "BUY" else -o.quantity)
    ]


def closing_orders(positions: list[Position], stamp: str) -> list[OrderRequest]:
    """One market order per non-zero position, in the direction that closes it (pure)."""
    return [
        OrderRequest(f"kt-estop-{p.symbol}-{stamp}", p.symbol, "SELL" if p.quantity > 0 else "BUY", abs(p.quantity))
        for p in sorted(positions, key=lambda p: p.symbol)
        if p.quantity
    ]


def emergency_stop(
    broker: Broker,
    *,
    timeout: float = 30.0,
    poll_interval: float = 0.1,
    flatten: bool = True,
    cancel_orders: bool = True,
    entry_cancel_grace: float = 2.0,
) -> StopReport:
    """Cancel, flatten, confirm, as `flatten` / `cancel_orders` say (module docstring).

    The broker must be connected; never raises for broker errors.
    """
    if not cancel_orders and not flatten:
        return _cancel_entries_only(broker, timeout=timeout, poll_interval=poll_interval, grace=entry_cancel_grace)
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
    if flatten and not cancel_orders:
        message += " (cancelOrders=false has no effect when flattening: exits were cancelled before the close)"
    return StopReport(
        flat,
        message,
        time.monotonic() - started,
        sent,
        len(confirm_orders),
        {p.symbol: p.quantity for p in confirm_positions},
    )


def _cancel_entries_only(broker: Broker, *, timeout: float, poll_interval: float, grace: float) -> StopReport:
    """`flatten: false, cancelOrders: false`: positions and their exits stay; entries go."""
    started = time.monotonic()
    deadline = started + timeout
    fallback = False
    try:
        entries = exposure_increasing(broker.open_orders(), broker.positions())
        for order in entries:
            broker.cancel_order(order.order_ref)  # only works for our own orders: IB's rule
        while entries:
            broker.poll(poll_interval)
            entries = exposure_increasing(broker.open_orders(), broker.positions())
            if entries and not fallback and time.monotonic() > started + grace:
                broker.global_cancel()
                fallback = True
            if entries and time.monotonic() > deadline:
                return StopReport(
                    False,
                    f"NOT stopped after {timeout:.0f} s: {len(entries)} exposure-increasing orders still work",
                    time.monotonic() - started,
                    open_orders=len(entries),
                    exits_cancelled=fallback,
                )
        # the confirmation: a fresh round of queries must agree
        confirm_orders = broker.open_orders()
        confirm_positions = broker.positions()
    except BrokerUnavailableError as exc:
        return StopReport(
            False,
            f"stop NOT confirmed: broker unavailable: {exc}",
            time.monotonic() - started,
            exits_cancelled=fallback,
        )
    left = exposure_increasing(confirm_orders, confirm_positions)
    kept = [o.order_ref for o in confirm_orders if o.is_open and o not in left]
    held = {p.symbol: p.quantity for p in confirm_positions}
    if left:
        message = "NOT stopped at confirmation: exposure-increasing orders reappeared"
    else:
        message = f"stopped: no exposure-increasing order; positions {held} kept with {len(kept)} exit orders"
        if fallback:
            message += f" ({FALLBACK_NOTE})"
    return StopReport(
        not left,
        message,
        time.monotonic() - started,
        open_orders=len(confirm_orders),
        positions=held,
        kept_orders=kept,
        exits_cancelled=fallback,
    )
