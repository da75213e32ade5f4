"""Emergency stop: cancel every order, flatten every position, and claim "flat" only when it is.

One implementation for the three callers: the runner (`Session`, on /flatten or /stop),
`kubetrader live emergency-stop`, and the operator's fallback when the runner does not
answer (`kubetrader_operator.live.stopping`). `Flattener` is a step function the runner
calls from its event loop; `emergency_stop` drives it to the end for the other two.

How it decides (the ledger and its guarantee: `kubetrader.live.stop_ledger`):

1. Read the broker (positions, executions), then `reqGlobalCancel`: every client's
   orders go first, exits included, so a stop-loss cannot fill against the close.
2. Every round (`query_interval`): fresh reqAllOpenOrders, reqPositions, reqExecutions;
   the events in between (execDetails, orderStatus, errors) fold in as they come. A round
   comes early (`early_read_gap`) when the last close is done, and at the moment the
   settling window will be spanned: a stop ends up to a round sooner, on the same test.
3. Per contract (IB conId, per account): when nothing of ours works on it, no order is
   open at the broker, and the ledger's expected position agrees with the report, send
   ONE market order that closes it, on that contract. A disagreement waits (the report
   lags) until it settles, then the report wins (the ledger is re-based).
4. Flat: every order we sent is final, the broker lists no open order, expected == 0 ==
   reported for every contract in scope, over `settle_reads` reads spanning
   `settle_window` s with the link up. A disagreement resets the count.

Rejects: the broker's reason is kept per contract; the next close on that contract
waits `backoff_base * 2**(n-1)` s (capped at `backoff_cap`); after `max_rejects` rejects,
or `max_orders` closes, the contract is blocked and the stop ends NOT flat with the
reason (`StopReport.blocked`), which the operator shows as a `StopBlocked` condition.

Nothing is sent while the broker is disconnected or has lost its upstream (IB 1100):
the stop waits for the link, and a query that fails is never an empty answer.

Scope (`spec.stopPolicy.scope`): `account` closes every position of the account;
`strategy` only the stocks the deployment trades (`owned`); the rest is reported as
`left`. Orders are cancelled account-wide either way: IB lets a client cancel another
client's orders only with reqGlobalCancel.

Order type by security type: every type closes with a market order on its own contract
(stocks and options route SMART, futures their exchange, FX IDEALPRO; `IBBroker`): an
emergency stop prefers a certain exit to a price. A halted symbol's close rests until
the halt lifts; the stop reports it as still working, never as flat.

`spec.stopPolicy` (`flatten`, `cancelOrders`): with `flatten: false` the stop cancels
and confirms no open order (positions kept); `flatten: false, cancelOrders: false`
cancels only the orders that would INCREASE exposure and keeps the exits
(`_cancel_entries_only`); `cancelOrders: false` has no effect when flattening: a stopped
book is flat, and on a flat book every resting exit would open a position nobody manages.

IB lets a client cancel one order only if it placed it, so entries are cancelled one by
one by their owner (the runner, through `POST /halt?cancel=entries`, or a stop running
under the runner's client id). When they are still working after `entry_cancel_grace`
seconds (the runner is dead), the stop falls back to `reqGlobalCancel`: an unmanaged
entry is worse than a lost exit. The report says so (`exits_cancelled`).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from kubetrader.live.broker import (
    Broker,
    BrokerEvent,
    BrokerOrder,
    BrokerUnavailableError,
    ConnectionUpdate,
    ContractRef,
    FillUpdate,
    OrderError,
    OrderRejectedError,
    OrderRequest,
    OrderUpdate,
    Position,
    Side,
)
from kubetrader.live.stop_ledger import EPSILON, Key, Ledger, Read, contract_of, key_of
from kubetrader.risk import reduces_exposure

log = logging.getLogger(__name__)

FALLBACK_NOTE = "cancelOrders=false not honoured: entries of another client still worked, so reqGlobalCancel ran"
Scope = Literal["strategy", "account"]
Sender = Callable[[OrderRequest], None]


@dataclass(frozen=True)
class StopSettings:
    timeout: float = 30.0  # math.inf for the runner: it keeps going until flat or blocked
    poll_interval: float = 0.05
    query_interval: float = 0.25  # three requests a round: well inside IB's 50 messages a second
    # An extra round no sooner than this after the last: when our closes are all done, or when the
    # settling window is spanned between two rounds (`_schedule_read`). Three requests a round: at
    # most 30 a second, under TWS's 50 (error 100 past it: tws-api/message_codes.html) and under
    # the throttle IBBroker sets on ib_insync (MAX_REQUESTS_PER_SECOND). It moves no condition of
    # "flat": the window is still judged by `Ledger.settled_flat` on the reads' own times.
    early_read_gap: float = 0.1
    settle_window: float = 1.5  # must exceed the broker's position-report lag (stop_ledger's guarantee)
    settle_reads: int = 3
    max_rejects: int = 4  # per contract, then blocked
    max_orders: int = 12  # closes per contract per stop, whatever happens: no order storm
    backoff_base: float = 0.5
    backoff_cap: float = 8.0
    global_cancel_interval: float = 1.0  # re-issued while foreign orders stay open (PendingCancel windows)
    scope: Scope = "account"
    owned: frozenset[str] = frozenset()  # strategy scope: the stock symbols the deployment trades
    flatten: bool = True
    cancel_orders: bool = True
    ref_prefix: str = "kt-estop"
    read_only: bool = False  # only confirm: no cancel, no order (a second process checking the flattener's work)


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
    blocked: dict[str, str] = field(default_factory=dict)  # contract -> the broker's reason
    left: dict[str, float] = field(default_factory=dict)  # out of scope, kept (scope: strategy)
    rejects: dict[str, list[str]] = field(default_factory=dict)

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
            "blocked": self.blocked,
            "left": self.left,
            "rejects": self.rejects,
        }


def backoff(rejects: int, base: float, cap: float) -> float:
    """Seconds before the next close after `rejects` rejects on a contract (0 before the first)."""
    return 0.0 if rejects <= 0 else min(cap, base * 2 ** (rejects - 1))


def in_scope(position: Position | ContractRef, settings: StopSettings) -> bool:
    """Is this contract the stop's to close? `strategy`: only the stocks the deployment trades."""
    contract = contract_of(position) if isinstance(position, Position) else position
    if settings.scope == "account":
        return True
    return contract.sec_type == "STK" and contract.symbol in settings.owned


def closing_request(ref: str, contract: ContractRef, quantity: float, account: str) -> OrderRequest:
    """The market order that closes `quantity` (signed, the position) of `contract` (pure)."""
    side: Side = "SELL" if quantity > 0 else "BUY"
    by_id = contract if contract.con_id > 0 else None  # no conId (replay broker): the stock by symbol
    return OrderRequest(ref, contract.symbol, side, abs(quantity), "MKT", None, by_id, account)


def exposure_increasing(orders: list[BrokerOrder], positions: list[Position]) -> list[BrokerOrder]:
    """The open orders that would increase exposure if filled in full (pure; see the module docstring)."""
    held = {p.symbol: p.quantity for p in positions}
    return [
        o
        for o in orders
        if o.is_open and not reduces_exposure(held.get(o.symbol, 0.0), o.quantity if o.side == "BUY" else -o.quantity)
    ]


class Flattener:
    """One stop, stepped: `observe` every broker event, call `step` often; it returns the report once.

    `send` places a close (the runner journals it first); it raises like `Broker.place_order`.
    """

    def __init__(
        self,
        broker: Broker,
        settings: StopSettings,
        *,
        send: Sender | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.broker = broker
        self.settings = settings
        self.send: Sender = send or self._place
        self.clock = clock
        self.ledger = Ledger()
        self.started_at = clock()
        self.deadline = self.started_at + settings.timeout
        self._started = False
        self._next_read = 0.0
        self._last_read = -math.inf
        self._next_global_cancel = 0.0
        self._next_send: dict[Key, float] = {}
        self._blocked: dict[Key, str] = {}
        self._counted_dead: set[str] = set()
        self._seq = 0
        self._stamp = str(int(time.time() * 1000))
        self._last_error: str | None = None
        self._left: dict[Key, tuple[ContractRef, float]] = {}
        self._last_open = 0
        self._foreign_open = 0
        self.report: StopReport | None = None

    def _place(self, request: OrderRequest) -> None:
        self.broker.place_order(request)

    # ------------------------------------------------------------ events

    def observe(self, event: BrokerEvent) -> None:
        now = self.clock()
        working = bool(self.ledger.working())
        if isinstance(event, FillUpdate):
            self.ledger.execution(event.fill, now)
        elif isinstance(event, OrderUpdate):
            self.ledger.order_status(event.order.order_ref, event.order.status)
        elif isinstance(event, OrderError):
            self.ledger.order_error(event.order_ref, event.code, event.message, event.final)
        elif isinstance(event, ConnectionUpdate) and event.state in ("lost", "closed"):
            self.ledger.reads.clear()  # what was read before a loss proves nothing after it
        if working and not self.ledger.working():
            # the last close is done: a fresh round now starts the settling window that much sooner
            self._next_read = min(self._next_read, self._last_read + self.settings.early_read_gap)

    # ------------------------------------------------------------ the step

    def step(self) -> StopReport | None:
        if self.report is not None:
            return self.report
        now = self.clock()
        try:
            if not self._started:
                self._start()
            if now >= self._next_read:
                self._next_read = now + self.settings.query_interval
                self._last_read = now
                read = self._read(now)
                self.report = self._decide(read, now)
                self._schedule_read(read, now)
        except BrokerUnavailableError as exc:
            self._last_error = str(exc)
            self.ledger.reads.clear()
        if self.report is None and now > self.deadline:
            self.report = self._finish(False, self._timeout_message())
        return self.report

    def _schedule_read(self, read: Read, now: float) -> None:
        """Read again when the settling window will be spanned, if that comes before the next round:
        the streak is judged by `settled_flat` as always, it just does not wait out a round."""
        s = self.settings
        if self.report is not None or not s.flatten:
            return
        due = self.ledger.flat_due(self._contracts(read), s.settle_window)
        if due is not None:
            self._next_read = min(self._next_read, max(due, now + s.early_read_gap))

    def _start(self) -> None:
        positions = self.broker.positions()
        executions = self.broker.executions()
        self.ledger.start([p for p in positions if in_scope(p, self.settings)], executions, self.clock(), time.time())
        self._started = True
        if self.settings.read_only:
            return
        self.broker.global_cancel()
        self._next_global_cancel = self.clock() + self.settings.global_cancel_interval
        self._started = True

    def _read(self, now: float) -> Read:
        open_orders = self.broker.open_orders()
        positions = self.broker.positions()
        for fill in self.broker.executions():
            self.ledger.execution(fill, now)
        link = self.broker.link_up()
        self.ledger.listed(open_orders)
        ours = {o.order_ref: o for o in open_orders if o.order_ref in self.ledger.orders}
        for ref, order in ours.items():
            self.ledger.order_status(ref, order.status)
        scoped: dict[Key, float] = {}
        self._left = {}
        for p in positions:
            if in_scope(p, self.settings):
                scoped[key_of(p)] = scoped.get(key_of(p), 0.0) + p.quantity
                self.ledger.contracts.setdefault(key_of(p), contract_of(p))
            else:
                self._left[key_of(p)] = (contract_of(p), p.quantity)
        self.ledger.expire_unlisted(now)
        self._last_open = len(open_orders)
        read = Read(now, scoped, len(open_orders), link)
        self.ledger.record(read)
        self._foreign_open = len(open_orders) - len(ours)
        return read

    def _decide(self, read: Read, now: float) -> StopReport | None:
        s = self.settings
        contracts = self._contracts(read)
        self._count_dead_orders(now)
        if not s.flatten:
            if read.link_up and not read.open_orders and not self.ledger.working():
                return self._finish(True, "stopped: 0 open orders, positions kept (flatten: false)")
        elif self.ledger.settled_flat(contracts, now, s.settle_window, s.settle_reads):
            return self._finish(True, self._flat_message())
        if not read.link_up or s.read_only:
            return None  # 1100: connected to TWS, TWS not to IB; nothing is sent
        if read.open_orders:
            if self._foreign_open and not self.ledger.working() and now >= self._next_global_cancel:
                self.broker.global_cancel()
                self._next_global_cancel = now + s.global_cancel_interval
            return None  # closing while exits still work risks filling both
        self.ledger.rebase_if_settled(contracts, now, s.settle_window)
        for key in sorted(contracts):
            self._maybe_close(key, read, now)
        if self._blocked and not self.ledger.working():
            remaining = [k for k in contracts if abs(self.ledger.expected(k)) > EPSILON or read.positions.get(k)]
            if remaining and all(k in self._blocked for k in remaining):
                return self._finish(False, "NOT flat: blocked: " + "; ".join(
                    f"{self._label(k)}: {r}" for k, r in sorted(self._blocked.items())))  # fmt: skip
        return None

    def _contracts(self, read: Read) -> set[Key]:
        """What the stop must see flat: every contract the ledger knows, and every one the broker reports."""
        return (self.ledger.known_contracts() | set(read.positions)) if self.settings.flatten else set()

    def _maybe_close(self, key: Key, read: Read, now: float) -> None:
        s = self.settings
        if key in self._blocked or self.ledger.working(key):
            return
        expected, reported = self.ledger.expected(key), read.positions.get(key, 0.0)
        if abs(expected) <= EPSILON or abs(expected - reported) > EPSILON:
            return  # flat here, or the report still trails the executions: wait (or re-base later)
        if not self.ledger.quiet(key, now, s.settle_window):
            return  # it traded just now (maybe just before the stop): its report may not show it yet
        if now < self._next_send.get(key, 0.0):
            return
        rejects = self.ledger.rejects.get(key, [])
        if len(rejects) >= s.max_rejects:
            self._blocked[key] = f"{len(rejects)} rejects, last: {rejects[-1]}"
            return
        if self.ledger.sends(key) >= s.max_orders:
            self._blocked[key] = f"{s.max_orders} closing orders sent and still not flat"
            return
        contract = self.ledger.contracts.get(key)
        if contract is None:
            self._blocked[key] = "no contract details for a position the broker reports"
            return
        self._seq += 1
        ref = f"{s.ref_prefix}-{abs(contract.con_id)}-{self._stamp}-{self._seq}"
        request = closing_request(ref, contract, expected, key[0])
        assert reduces_exposure(expected, request.signed_quantity), request
        self.ledger.sent(ref, key, request.signed_quantity, now)
        try:
            self.send(request)
        except OrderRejectedError as exc:
            self.ledger.order_error(ref, 0, str(exc), True)
        except BrokerUnavailableError:
            # it may or may not have reached the broker: keep it working until a fresh read says
            self.ledger.orders[ref].status = "PendingSubmit"
            raise

    def _count_dead_orders(self, now: float) -> None:
        """A close that ended without filling in full is a reject (whatever the broker called it): back off."""
        for order in self.ledger.orders.values():
            if order.final and order.order_ref not in self._counted_dead:
                self._counted_dead.add(order.order_ref)
                if order.filled + EPSILON < abs(order.signed_quantity):
                    if order.reject is None:
                        reason = f"order ended {order.status} unfilled"
                        self.ledger.rejects.setdefault(order.key, []).append(reason)
                    n = len(self.ledger.rejects.get(order.key, []))
                    delay = backoff(n, self.settings.backoff_base, self.settings.backoff_cap)
                    self._next_send[order.key] = now + delay
                    log.warning("close %s not filled (%s); next try in %.1f s", order.order_ref, order.reject, delay)

    # ------------------------------------------------------------ reports

    def _label(self, key: Key) -> str:
        contract = self.ledger.contracts.get(key) or (self._left[key][0] if key in self._left else None)
        name = contract.label if contract else f"conId {key[1]}"
        return f"{key[0]}:{name}" if key[0] else name

    def _flat_message(self) -> str:
        s = self.settings
        message = f"flat: 0 open orders and no positions, confirmed at the broker over {s.settle_window:g} s"
        if not s.cancel_orders:
            message += " (cancelOrders=false has no effect when flattening: exits were cancelled before the close)"
        if self._left:
            message += f"; out of scope and kept: {sorted(self._label(k) for k in self._left)}"
        return message

    def _timeout_message(self) -> str:
        reads = self.ledger.reads
        positions = {self._label(k): q for k, q in reads[-1].positions.items() if q} if reads else None
        why = f"broker unavailable: {self._last_error}" if self._last_error and not reads else ""
        working = [o.order_ref for o in self.ledger.working()]
        return (
            f"NOT flat after {self.settings.timeout:g} s: {why or 'not confirmed'}; positions {positions}, "
            f"{self._last_open} open orders, working closes {working}"
        )

    def _finish(self, flat: bool, message: str) -> StopReport:
        reads = self.ledger.reads
        positions = {self._label(k): q for k, q in reads[-1].positions.items() if q} if reads else None
        return StopReport(
            flat=flat,
            message=message,
            seconds=self.clock() - self.started_at,
            flatten_orders=list(self.ledger.orders),
            open_orders=reads[-1].open_orders if reads else None,
            positions=positions,
            blocked={self._label(k): r for k, r in self._blocked.items()},
            left={self._label(k): q for k, (_, q) in self._left.items()},
            rejects={self._label(k): v for k, v in self.ledger.rejects.items()},
        )


def emergency_stop(
    broker: Broker,
    *,
    timeout: float = 30.0,
    poll_interval: float = 0.05,
    flatten: bool = True,
    cancel_orders: bool = True,
    entry_cancel_grace: float = 2.0,
    settings: StopSettings | None = None,
) -> StopReport:
    """Cancel, flatten, confirm, as `flatten` / `cancel_orders` say (module docstring).

    The broker must be connected; never raises for broker errors. A connection lost on
    the way is retried until `timeout` (nothing is sent while it is down).
    """
    s = settings or StopSettings(timeout=timeout, poll_interval=poll_interval)
    s = StopSettings(**{**s.__dict__, "flatten": flatten, "cancel_orders": cancel_orders})
    if not cancel_orders and not flatten:
        return _cancel_entries_only(broker, timeout=s.timeout, poll_interval=s.poll_interval, grace=entry_cancel_grace)
    flattener = Flattener(broker, s)
    reconnect_at, attempt = 0.0, 0
    while True:
        report = flattener.step()
        if report is not None:
            return report
        if not broker.is_connected():
            if time.monotonic() >= reconnect_at:
                attempt = 0 if _reconnect(broker) else attempt + 1
                reconnect_at = time.monotonic() + backoff(attempt, 0.2, 2.0)
            time.sleep(s.poll_interval)
            continue
        try:
            events = broker.poll(s.poll_interval)
        except BrokerUnavailableError:
            broker.disconnect()
            continue
        for event in events:
            flattener.observe(event)
            if isinstance(event, ConnectionUpdate) and event.state == "closed":
                broker.disconnect()


def _reconnect(broker: Broker) -> bool:
    """One reconnect attempt (the caller backs off between failures); the ledger carries over."""
    try:
        broker.connect()
        broker.ping()
        return True
    except BrokerUnavailableError as exc:
        log.warning("stop: reconnect failed: %s", exc)
        broker.disconnect()
        return False


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
