"""The broker interface the live runner trades through, and the values it speaks in.

Two implementations: `IBBroker` (Interactive Brokers over ib_insync) and
`SimulatedBroker` (fills against replayed bars, for paper runs with no gateway).
Everything above this line (journal, risk, runner, stops) sees only this module, so a
second broker, or ib_async in place of ib_insync, changes one file.

Query methods (`positions`, `open_orders`, ...) are FRESH round trips to the broker and
raise `BrokerUnavailableError` when the broker does not answer. They never fall back to a
cached or empty list: an empty position list after a socket error is not "flat".
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

from kubetrader.errors import InfrastructureError

Side = Literal["BUY", "SELL"]
OrderType = Literal["MKT", "LMT"]
# Order states as IB names them; `Inactive` and `ApiCancelled` count as done.
DONE_STATUSES = frozenset({"Filled", "Cancelled", "ApiCancelled", "Inactive"})


class BrokerUnavailableError(InfrastructureError):
    """The broker did not answer (socket down, gateway hung, request timed out)."""


class PacingViolationError(BrokerUnavailableError):
    """IB refused a historical data request for its pacing rules (error 162, "... pacing violation"):
    the same request may be made again once the pacing windows have moved on."""


class OrderRejectedError(Exception):
    """The broker refused an order (unknown contract, duplicate id, ...)."""


class ClientIdInUseError(BrokerUnavailableError):
    """The gateway refused the connection: another process is connected with this client id (IB error 326).

    For the stop this is an answer, not an outage: that process holds the account's
    flattener slot (see `kubetrader.live.lease`).
    """


@dataclass(frozen=True)
class ContractRef:
    """The broker's contract, enough to trade it again: IB's conId identifies it; the rest routes it.

    A symbol alone is ambiguous (ORCL the stock, an ORCL option, an ORCL future): a
    position is closed with an order on ITS contract, never on "the symbol".
    """

    con_id: int
    symbol: str
    sec_type: str = "STK"
    currency: str = "USD"
    local_symbol: str = ""
    multiplier: str = ""
    exchange: str = ""

    @property
    def label(self) -> str:
        """How reports name it: the symbol for a stock, the local symbol (e.g. an OCC option code) otherwise."""
        return self.symbol if self.sec_type == "STK" else f"{self.local_symbol or self.symbol} ({self.sec_type})"


# The order refs of an entry's broker-side protection (`Protection`): its stop and take-profit children.
STOP_SUFFIX = "-sl"
TAKE_PROFIT_SUFFIX = "-tp"


def protected_entry(order_ref: str) -> str | None:
    """The entry a protective child belongs to (`kt-...-sl` -> `kt-...`), or None for any other order."""
    for suffix in (STOP_SUFFIX, TAKE_PROFIT_SUFFIX):
        if order_ref.endswith(suffix):
            return order_ref[: -len(suffix)]
    return None


def oca_group_of(entry_ref: str) -> str:
    """The OCA group of an entry's protection, which the symbol's exits join (see `OrderRequest.oca_group`)."""
    return f"{entry_ref}-oca"


@dataclass(frozen=True)
class Protection:
    """Children attached at the broker to an entry (`spec.risk.protectiveStop`): a stop, and a
    take-profit in one OCA group with it. They only ever take the entry's exposure off."""

    stop_price: float
    take_profit_price: float | None = None
    quantity: float | None = None  # the exposure the entry adds (None: its whole quantity)
    # The children's OCA group; None: the entry's own (`oca_group_of(order_ref)`). An add to a
    # protected position puts children sized to the whole position into the position's group, so
    # they cover the add the moment it fills and never close more than is held (see `Session._protect`).
    oca_group: str | None = None


@dataclass(frozen=True)
class OrderRequest:
    """What the runner asks for. `order_ref` is the idempotency key, sent as IB's orderRef."""

    order_ref: str
    symbol: str
    side: Side
    quantity: float
    order_type: OrderType = "MKT"
    limit_price: float | None = None
    contract: ContractRef | None = None  # None: the stock `symbol`
    account: str = ""  # "" : the connection's account
    protection: Protection | None = None  # broker-side stop / take-profit children (entries only)
    # An exit of a protected position joins its protection's OCA group (`oca_group_of`): a fill of
    # either reduces the other at the broker, so an exit and the stop never both close the position.
    oca_group: str | None = None

    @property
    def signed_quantity(self) -> float:
        return self.quantity if self.side == "BUY" else -self.quantity


@dataclass(frozen=True)
class BrokerOrder:
    order_ref: str
    broker_id: str  # IB: permId when known, else clientId/orderId
    symbol: str
    side: Side
    quantity: float
    order_type: str
    limit_price: float | None
    status: str
    filled: float = 0.0
    avg_fill_price: float = 0.0
    con_id: int = 0
    account: str = ""

    @property
    def is_open(self) -> bool:
        return self.status not in DONE_STATUSES


@dataclass(frozen=True)
class Fill:
    exec_id: str
    order_ref: str
    symbol: str
    side: Side
    quantity: float
    price: float
    commission: float
    time: dt.datetime
    con_id: int = 0
    account: str = ""

    @property
    def signed_quantity(self) -> float:
        return self.quantity if self.side == "BUY" else -self.quantity


@dataclass(frozen=True)
class Position:
    symbol: str
    quantity: float
    avg_cost: float
    contract: ContractRef | None = None
    account: str = ""

    @property
    def con_id(self) -> int:
        return self.contract.con_id if self.contract else 0


@dataclass(frozen=True)
class Bar:
    symbol: str
    time: dt.datetime  # start of the bar, UTC
    open: float
    high: float
    low: float
    close: float
    volume: float


@dataclass(frozen=True)
class OrderUpdate:
    order: BrokerOrder


@dataclass(frozen=True)
class FillUpdate:
    fill: Fill


@dataclass(frozen=True)
class OrderError:
    """The broker's message about one of our orders (IB `error` with the order id): a reject or a warning.

    `final` says whether the order is dead at the broker (201) or still works (399, 404,
    2137, 10349: warnings after which TWS keeps the order).
    """

    order_ref: str
    code: int
    message: str
    final: bool


@dataclass(frozen=True)
class BarUpdate:
    bar: Bar


@dataclass(frozen=True)
class ConnectionUpdate:
    """`lost` (1100: TWS lost IB; the socket is up, nothing may be sent) / `restored` (1102, data kept) /
    `restored_data_lost` (1101, resubscribe) / `closed` (socket gone)."""

    state: Literal["lost", "restored", "restored_data_lost", "closed"]
    code: int
    message: str


@dataclass(frozen=True)
class EndOfBars:
    """The bar source of `symbol` has ended (a finished replay; a live feed never ends)."""

    symbol: str


BrokerEvent = OrderUpdate | FillUpdate | BarUpdate | ConnectionUpdate | EndOfBars | OrderError


@runtime_checkable
class Broker(Protocol):
    """What the live runner needs from a broker; see the module docstring for the contract."""

    def connect(self) -> None: ...

    def disconnect(self) -> None: ...

    def is_connected(self) -> bool: ...

    def link_up(self) -> bool:
        """False while the broker has lost its own upstream (IB 1100): connected, but nothing may be sent."""
        ...

    def ping(self) -> float:
        """A round trip that proves the API answers (IB: reqCurrentTime); returns seconds taken."""
        ...

    def account_values(self) -> dict[str, float]:
        """NetLiquidation, TotalCashValue, ... in the base currency."""
        ...

    def positions(self) -> list[Position]: ...

    def open_orders(self) -> list[BrokerOrder]:
        """Open orders of every client of the account, not just this one."""
        ...

    def completed_orders(self) -> list[BrokerOrder]: ...

    def executions(self) -> list[Fill]: ...

    def place_order(self, request: OrderRequest) -> BrokerOrder: ...

    def cancel_order(self, order_ref: str) -> None: ...

    def resize(self, order_ref: str, remaining: float) -> bool:
        """Make the open order `order_ref` work `remaining` more (its fills so far stay), in place
        (IB: placeOrder with its orderId); False when no such order of ours is open."""
        ...

    def global_cancel(self) -> None: ...

    def historical_bars(self, symbol: str, end: dt.date | None, duration: str, bar_size: str) -> list[Bar]: ...

    def subscribe_bars(self, symbol: str) -> None: ...

    def poll(self, timeout: float) -> list[BrokerEvent]:
        """Let the broker's I/O run for up to `timeout` s and return what happened, in order."""
        ...


def find_by_ref(orders: list[BrokerOrder], order_ref: str) -> BrokerOrder | None:
    """The order carrying `order_ref`, preferring one still open."""
    matches = [o for o in orders if o.order_ref == order_ref]
    open_matches = [o for o in matches if o.is_open]
    if open_matches:
        return open_matches[0]
    return matches[0] if matches else None
