"""The stop's own books: what it sent, what filled, what the broker says; and when that is "flat" (pure).

Why a ledger of its own: a broker's position report is not the truth at the moment it
is read. IB sends `position` updates asynchronously, after the executions that cause
them (ib_async #15: "Some people go around this by maintaining their own register of
fills ... and only do ib.positions() comparison to double check"). A stop that
re-flattens from each positions snapshot sends a second close while the first is
already filled but not yet reported; two such stops on one account run away.

So the ledger keeps, per contract (IB conId):

    expected = position at the stop's start + every execution since the stop began

and the stop only acts when `expected` and the broker's report AGREE; "flat" is
expected == 0 == reported, nothing working anywhere, for several consecutive reads
over a settling window. A disagreement that stays put (nothing working, no new
execution, the report unchanged for the whole window) means the start position was
itself a stale report (fills just before the stop) or an execution we did not see: the
report is then the truth, and the ledger is re-based on it.

The guarantee: with the settling window longer than the broker's reporting lag, a
"flat" ledger is flat at the broker. Everything here is pure (no I/O, time passed in).
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field

from kubetrader.live.broker import DONE_STATUSES, BrokerOrder, ContractRef, Fill, Position

EPSILON = 1e-9
Key = tuple[str, int]  # (account, conId): two accounts of one login can hold the same contract


def key_of(item: Position | Fill) -> Key:
    """A broker that names no conId (the replay broker) trades stocks by symbol: a stable negative id."""
    return (item.account, item.con_id or -zlib.crc32(item.symbol.encode()))


def contract_of(position: Position) -> ContractRef:
    return position.contract or ContractRef(key_of(position)[1], position.symbol)


@dataclass
class LedgerOrder:
    """A closing order the stop sent."""

    order_ref: str
    key: Key
    signed_quantity: float
    sent_at: float
    status: str = "PendingSubmit"
    filled: float = 0.0
    reject: str | None = None  # the broker's reason, when it killed the order
    listed: bool = False  # the broker's last fresh answer lists it as open
    unlisted_reads: int = 0  # consecutive fresh reads that did not list it

    @property
    def final(self) -> bool:
        """Done at the broker: filled in full (with or without an orderStatus saying so), or
        dead (rejected, cancelled) AND no longer listed as open by a fresh query."""
        if self.filled + EPSILON >= abs(self.signed_quantity):
            return True
        return (self.reject is not None or self.status in DONE_STATUSES) and not self.listed


@dataclass
class Read:
    """One fresh round of broker queries."""

    at: float
    positions: dict[Key, float]  # in scope -> reported quantity
    open_orders: int  # every client's, in the account
    link_up: bool


@dataclass
class Ledger:
    baseline: dict[Key, float] = field(default_factory=dict)
    contracts: dict[Key, ContractRef] = field(default_factory=dict)
    pre_stop_exec_ids: set[str] = field(default_factory=set)
    executions: dict[str, Fill] = field(default_factory=dict)  # since the stop began
    orders: dict[str, LedgerOrder] = field(default_factory=dict)
    rejects: dict[Key, list[str]] = field(default_factory=dict)  # the broker's reasons
    warnings: dict[Key, list[str]] = field(default_factory=dict)
    last_execution_at: float = -math.inf
    # when each contract last traded (pre-stop executions included): its report may not show it yet
    traded_at: dict[Key, float] = field(default_factory=dict)
    reads: list[Read] = field(default_factory=list)
    rebases: int = 0

    # ------------------------------------------------------------ folding in

    def start(self, positions: Iterable[Position], executions: Iterable[Fill], now: float, wall_now: float) -> None:
        """The start positions (as reported) and the executions before the stop (`now` monotonic,
        `wall_now` epoch seconds). A contract that traded just before is not trusted at once: its
        report may not show that trade yet (see `quiet`)."""
        for p in positions:
            self.baseline[key_of(p)] = self.baseline.get(key_of(p), 0.0) + p.quantity
            self.contracts[key_of(p)] = contract_of(p)
        for f in executions:
            self.pre_stop_exec_ids.add(f.exec_id)
            # execution times have one-second resolution (IB's "yyyymmdd hh:mm:ss"): assume the latest
            age = max(0.0, wall_now - f.time.timestamp() - 1.0)
            self.traded_at[key_of(f)] = max(self.traded_at.get(key_of(f), -math.inf), now - age)

    def execution(self, fill: Fill, now: float) -> bool:
        """Fold in an execution (from a live event or a fresh reqExecutions); True when new."""
        if fill.exec_id in self.pre_stop_exec_ids or fill.exec_id in self.executions:
            return False
        self.executions[fill.exec_id] = fill
        self.last_execution_at = now
        self.traded_at[key_of(fill)] = now
        order = self.orders.get(fill.order_ref)
        if order is not None:
            order.filled = sum(f.quantity for f in self.executions.values() if f.order_ref == fill.order_ref)
        return True

    def order_status(self, order_ref: str, status: str) -> None:
        order = self.orders.get(order_ref)
        if order is not None and not (order.status in DONE_STATUSES and status not in DONE_STATUSES):
            order.status = status

    def order_error(self, order_ref: str, code: int, message: str, final: bool) -> None:
        order = self.orders.get(order_ref)
        if order is None:
            return
        reason = f"IB {code}: {message}"
        if final:
            if order.reject is None:
                order.reject = reason
                self.rejects.setdefault(order.key, []).append(reason)
        else:
            self.warnings.setdefault(order.key, []).append(reason)

    def listed(self, open_orders: Iterable[BrokerOrder]) -> None:
        """A fresh reqAllOpenOrders: ours that it lists are working, whatever the events said."""
        refs = {o.order_ref for o in open_orders}
        for order in self.orders.values():
            order.listed = order.order_ref in refs
            order.unlisted_reads = 0 if order.listed else order.unlisted_reads + 1

    def expire_unlisted(self, now: float, min_age: float = 1.0, reads: int = 2) -> list[str]:
        """Orders no fresh read lists, with no final word about them (a cut around placeOrder, a
        missing orderStatus for a cancel): after `reads` reads and `min_age` s they are done; their
        executions, if any, are counted all the same."""
        expired = []
        for order in self.orders.values():
            unheard = not order.final and not order.listed and order.unlisted_reads >= reads
            if unheard and now - order.sent_at >= min_age:
                order.status = "Unlisted"
                order.reject = order.reject or "not listed by the broker, never filled"
                expired.append(order.order_ref)
        return expired

    def sent(self, order_ref: str, key: Key, signed_quantity: float, now: float) -> None:
        self.orders[order_ref] = LedgerOrder(order_ref, key, signed_quantity, now)

    def record(self, read: Read) -> None:
        self.reads.append(read)
        del self.reads[:-64]

    # ------------------------------------------------------------ views

    def expected(self, key: Key) -> float:
        moved = sum(f.signed_quantity for f in self.executions.values() if key_of(f) == key)
        return self.baseline.get(key, 0.0) + moved

    def known_contracts(self) -> set[Key]:
        """Every contract the ledger has a number for: held at the start, traded or ordered since."""
        traded = {key_of(f) for f in self.executions.values()}
        return set(self.baseline) | traded | {o.key for o in self.orders.values()}

    def quiet(self, key: Key, now: float, window: float) -> bool:
        """No trade on this contract for `window` s: its position report has caught up (stop_ledger's guarantee)."""
        return now - self.traded_at.get(key, -math.inf) >= window

    def working(self, key: Key | None = None) -> list[LedgerOrder]:
        return [o for o in self.orders.values() if not o.final and (key is None or o.key == key)]

    def sends(self, key: Key) -> int:
        return sum(1 for o in self.orders.values() if o.key == key)

    def disagreement(self, read: Read, contracts: set[Key]) -> dict[Key, tuple[float, float]]:
        """contract -> (expected, reported) where the two differ."""
        out = {}
        for cid in contracts:
            exp, rep = self.expected(cid), read.positions.get(cid, 0.0)
            if abs(exp - rep) > EPSILON:
                out[cid] = (exp, rep)
        return out

    def rebase_if_settled(self, contracts: set[Key], now: float, window: float) -> list[Key]:
        """Re-base contracts whose report has stood still, disagreeing, for `window` s with nothing
        working and no execution: the report is then the truth (see the module docstring)."""
        if not self.reads or self.working() or now - self.last_execution_at < window:
            return []
        recent = [r for r in self.reads if r.at >= now - window]
        if not recent or recent[0].at > now - window + 0.5 * window or not all(r.link_up for r in recent):
            return []  # not enough of the window observed yet
        latest = self.reads[-1]
        rebased = []
        for cid, (exp, rep) in self.disagreement(latest, contracts).items():
            if all(abs(r.positions.get(cid, 0.0) - rep) <= EPSILON and r.open_orders == 0 for r in recent):
                self.baseline[cid] = self.baseline.get(cid, 0.0) + (rep - exp)
                rebased.append(cid)
        self.rebases += len(rebased)
        return rebased

    def settled_flat(self, contracts: set[Key], now: float, window: float, reads: int) -> bool:
        """Flat: for the last `window` s (and at least `reads` reads, every read since then
        included), nothing of ours working, no open order at the broker, the link up, and
        expected == 0 == reported for every in-scope contract."""
        if self.working() or any(abs(self.expected(c)) > EPSILON for c in contracts):
            return False
        streak = self._zero_streak()
        if len(streak) < reads:
            return False
        return streak[0].at - streak[-1].at >= window and now - self.last_execution_at >= window

    def flat_due(self, contracts: set[Key], window: float) -> float | None:
        """The earliest time a read can complete `settled_flat`'s window, given the zero streak the
        latest reads began; None when nothing is settling (working, expected not zero, no streak).
        A read then, rather than at the next round, ends a stop up to one round sooner; the
        conditions themselves are `settled_flat`'s, unchanged."""
        if self.working() or any(abs(self.expected(c)) > EPSILON for c in contracts):
            return None
        streak = self._zero_streak()
        if not streak:
            return None
        return max(streak[-1].at, self.last_execution_at) + window

    def _zero_streak(self) -> list[Read]:
        """The latest reads, newest first, back to the last one that saw a position, an open order
        or the link down."""
        streak: list[Read] = []
        for read in reversed(self.reads):
            if not read.link_up or read.open_orders or any(abs(q) > EPSILON for q in read.positions.values()):
                break
            streak.append(read)
        return streak
