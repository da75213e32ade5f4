"""Interactive Brokers through ib_insync (TWS or IB Gateway).

ib_insync is imported here and nowhere else; its maintained fork ib_async has the same
API, so switching is the one import in `_ib_module`.

Threading: ib_insync runs on an asyncio loop in the calling thread. Every method here
runs that loop until its request completes (or `timeout` passes), so the runner stays a
plain single-threaded program: Backtrader calls the feed, the feed calls `poll`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections import deque
from collections.abc import Awaitable
from types import ModuleType
from typing import Any, TypeVar, cast

from kubetrader.live.broker import (
    STOP_SUFFIX,
    TAKE_PROFIT_SUFFIX,
    Bar,
    BarUpdate,
    BrokerEvent,
    BrokerOrder,
    BrokerUnavailableError,
    ClientIdInUseError,
    ConnectionUpdate,
    ContractRef,
    Fill,
    FillUpdate,
    OrderError,
    OrderRejectedError,
    OrderRequest,
    OrderUpdate,
    PacingViolationError,
    Position,
    Side,
    oca_group_of,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

# IB's connection status codes (TWS API "message codes",
# https://interactivebrokers.github.io/tws-api/message_codes.html): 1100 TWS lost IB,
# 1101 restored with market data lost (resubscribe), 1102 restored with data kept.
# 2110 ("connectivity between TWS and server is broken") is the same loss, told as a warning.
LOST_CODES = {1100: "lost", 2110: "lost"}
RESTORED_CODES = {1101: "restored_data_lost", 1102: "restored"}
CLIENT_ID_IN_USE = 326
# After these, TWS has killed the order (201 "Order rejected"; 200 no security definition;
# 203 not allowed; 321 request validation). The warnings (399, 404, 2137, 10349, ...) leave it
# working at TWS, even where ib_insync marks it Cancelled locally (it does so for 10349:
# ib_async #191/#217). 202 is the acknowledgement of our own cancel.
FINAL_ORDER_ERRORS = frozenset({200, 201, 203, 321})
CANCEL_ACK = 202
# ocaType 2: the rest of the group is "proportionately reduced in size with block" on a fill
# (https://interactivebrokers.github.io/tws-api/oca.html): a position's stop, take-profit and exits.
OCA_REDUCE_WITH_BLOCK = 2
# Where a contract routes when only its conId is known (flattening a position by conId).
ROUTE = {"STK": "SMART", "OPT": "SMART", "CASH": "IDEALPRO"}
# ib_insync throttles to MaxRequests per second itself; IB disconnects above 50 msg/s.
MAX_REQUESTS_PER_SECOND = 45


def _ib_module() -> ModuleType:
    import ib_insync

    return ib_insync


def _ensure_event_loop() -> None:
    """ib_insync uses the current thread's loop; a runner started on a worker thread has none yet."""
    try:
        asyncio.get_event_loop_policy().get_event_loop()
    except RuntimeError:
        asyncio.set_event_loop(asyncio.new_event_loop())


class IBBroker:
    """`Broker` over one API connection (host, port, clientId) to TWS or IB Gateway."""

    # reqRealTimeBars streams 5-second bars only; the session aggregates them to `spec.timeframe`
    realtime_bar_seconds = 5

    def __init__(
        self, host: str, port: int, client_id: int, *, timeout: float = 5.0, account: str = "", currency: str = "USD"
    ) -> None:
        self.host = host
        self.port = port
        self.client_id = client_id
        self.timeout = timeout
        self.account = account
        self.currency = currency
        self._ib: Any = None
        self._events: deque[BrokerEvent] = deque()
        self._contracts: dict[str, Any] = {}
        self._by_con_id: dict[int, Any] = {}
        self._bar_subscriptions: dict[str, Any] = {}
        self._listed_status: dict[tuple[int, int, int], str] = {}  # TWS's own status from openOrder
        self._link_lost = False
        self._refused: str | None = None  # the gateway's reason for refusing the connection

    # ------------------------------------------------------------ connection

    def connect(self) -> None:
        _ensure_event_loop()  # before the import too: eventkit looks up a loop at import time
        ib_insync = _ib_module()
        if self._ib is not None:
            self._ib.disconnect()
        ib = ib_insync.IB()
        ib.RaiseRequestErrors = True
        ib.client.MaxRequests = MAX_REQUESTS_PER_SECOND
        ib.client.RequestsInterval = 1
        ib.orderStatusEvent += self._on_order_status
        ib.execDetailsEvent += self._on_exec
        ib.commissionReportEvent += self._on_commission
        ib.errorEvent += self._on_error
        ib.disconnectedEvent += self._on_disconnected
        self._wrap_open_order(ib)
        self._refused = None
        self._link_lost = False
        try:
            ib.connect(self.host, self.port, clientId=self.client_id, timeout=self.timeout, account=self.account)
        except (OSError, TimeoutError, ConnectionError) as exc:
            ib.disconnect()
            self._raise_refused()
            raise BrokerUnavailableError(
                f"cannot reach the IB API at {self.host}:{self.port} (clientId {self.client_id}): {exc!r}"
            ) from exc
        if not ib.isConnected():
            self._raise_refused()
            raise BrokerUnavailableError(f"the IB API at {self.host}:{self.port} closed the connection during start-up")
        self._ib = ib
        self._contracts.clear()
        self._by_con_id.clear()
        subscribed = list(self._bar_subscriptions)
        self._bar_subscriptions.clear()
        for symbol in subscribed:
            self.subscribe_bars(symbol)

    def _raise_refused(self) -> None:
        if self._refused is not None:
            raise ClientIdInUseError(f"the IB API at {self.host}:{self.port} refused clientId {self.client_id}: "
                                     f"{self._refused}")  # fmt: skip

    def _wrap_open_order(self, ib: Any) -> None:
        """Remember the status TWS itself gives each listed order (its `orderState`).

        ib_insync keeps its own status for an order it knows and ignores the one in an
        `openOrder` answer (wrapper.openOrder only copies prices and quantities), and it
        marks an order Cancelled after any error code outside its warning list, such as
        10349, while TWS still works it. A stop deciding from that cache sees "0 open
        orders" with orders resting at the broker; the answer to reqAllOpenOrders is what
        TWS says, so `open_orders` reads it from here.
        """
        original = ib.wrapper.openOrder

        def open_order(order_id: int, contract: Any, order: Any, state: Any) -> None:
            self._listed_status[(order.clientId, order.orderId, order.permId)] = state.status
            original(order_id, contract, order, state)

        ib.wrapper.openOrder = open_order

    def link_up(self) -> bool:
        return self.is_connected() and not self._link_lost

    def disconnect(self) -> None:
        if self._ib is not None:
            self._ib.disconnectedEvent -= self._on_disconnected  # our own disconnect is not a loss
            self._ib.disconnect()
            self._ib = None

    def is_connected(self) -> bool:
        return self._ib is not None and bool(self._ib.isConnected())

    def _api(self) -> Any:
        """The connected IB object; a query on a dropped connection fails as unavailable, not AttributeError."""
        if self._ib is None or not self.is_connected():
            raise BrokerUnavailableError(f"not connected to the IB API at {self.host}:{self.port}")
        return self._ib

    def _run(self, awaitable: Awaitable[T], what: str) -> T:
        if not self.is_connected():
            raise BrokerUnavailableError(f"{what}: not connected to the IB API at {self.host}:{self.port}")
        try:
            return cast(T, self._ib.run(asyncio.wait_for(awaitable, self.timeout)))
        except TimeoutError as exc:
            raise BrokerUnavailableError(f"{what}: no answer from the IB API within {self.timeout} s") from exc
        except (ConnectionError, OSError) as exc:
            raise BrokerUnavailableError(f"{what}: connection failed: {exc!r}") from exc

    def ping(self) -> float:
        started = time.monotonic()
        self._run(self._api().reqCurrentTimeAsync(), "reqCurrentTime")
        return time.monotonic() - started

    # ------------------------------------------------------------ queries (fresh)

    def account_values(self) -> dict[str, float]:
        self.ping()  # the values stream in; the ping proves the stream is alive
        values: dict[str, float] = {}
        for item in self._ib.accountValues(self.account):
            if item.currency in (self.currency, "BASE"):
                try:
                    values[item.tag] = float(item.value)
                except ValueError:
                    continue
        return values

    def positions(self) -> list[Position]:
        """Every account's positions unless the broker was given one account (IB reports all of a login's)."""
        rows = self._run(self._api().reqPositionsAsync(), "reqPositions")
        return [
            Position(p.contract.symbol, float(p.position), float(p.avgCost), _contract_ref(p.contract), p.account)
            for p in rows
            if p.position and (not self.account or p.account == self.account)
        ]

    def open_orders(self) -> list[BrokerOrder]:
        """The orders TWS lists as open right now, with TWS's status for each (see `_wrap_open_order`)."""
        self._listed_status.clear()
        trades = self._run(self._api().reqAllOpenOrdersAsync(), "reqAllOpenOrders")
        listed = []
        for trade in trades:
            o = trade.order
            status = self._listed_status.get((o.clientId, o.orderId, o.permId)) or "Submitted"
            listed.append(self._to_order(trade, status=status))
        return [o for o in listed if o.is_open]

    def completed_orders(self) -> list[BrokerOrder]:
        trades = self._run(self._api().reqCompletedOrdersAsync(False), "reqCompletedOrders")
        return [self._to_order(t) for t in trades]

    def executions(self) -> list[Fill]:
        fills = self._run(self._api().reqExecutionsAsync(), "reqExecutions")
        return [self._to_fill(f) for f in fills]

    def historical_bars(self, symbol: str, end: dt.date | None, duration: str, bar_size: str) -> list[Bar]:
        """Bars of `bar_size` over `duration` back from `end`: a date (its end, TWS's time zone), an
        aware datetime (sent in IB's UTC form "yyyymmdd-hh:mm:ss"), or None (now)."""
        contract = self._contract(symbol)
        if isinstance(end, dt.datetime):
            end_text = end.astimezone(dt.UTC).strftime("%Y%m%d-%H:%M:%S")
        else:
            end_text = end.strftime("%Y%m%d 23:59:59") if end else ""
        try:
            rows = self._run(
                self._api().reqHistoricalDataAsync(contract, end_text, duration, bar_size, "TRADES", True, 1),
                f"reqHistoricalData {symbol}",
            )
        except _ib_module().RequestError as exc:
            if exc.code == 162 and "returned no data" in exc.message:
                return []  # a range with no trading (holidays, before the listing) is empty, not an error
            if exc.code == 162 and "pacing violation" in exc.message:
                raise PacingViolationError(f"reqHistoricalData {symbol}: IB error {exc.code}: {exc.message}") from exc
            # the rest: retryable, and never a silently partial download
            raise BrokerUnavailableError(f"reqHistoricalData {symbol}: IB error {exc.code}: {exc.message}") from exc
        bars = []
        for r in rows:
            when = r.date if isinstance(r.date, dt.datetime) else dt.datetime.combine(r.date, dt.time())
            when = when if when.tzinfo else when.replace(tzinfo=dt.UTC)
            bars.append(Bar(symbol, when.astimezone(dt.UTC), r.open, r.high, r.low, r.close, r.volume))
        return bars

    # ------------------------------------------------------------ orders

    def place_order(self, request: OrderRequest) -> BrokerOrder:
        ib_insync = _ib_module()
        if self._link_lost:
            # 1100: TWS has no connection to IB; an order now would be held and sent later, blind
            raise BrokerUnavailableError(f"placeOrder {request.order_ref}: TWS has lost its connection to IB (1100)")
        if request.contract is not None:
            contract = self._contract_by_id(request.contract)
        else:
            contract = self._contract(request.symbol)
        if request.order_type == "LMT":
            if request.limit_price is None:
                raise OrderRejectedError(f"{request.order_ref}: a limit order needs a limit price")
            order = ib_insync.LimitOrder(request.side, request.quantity, request.limit_price)
        else:
            order = ib_insync.MarketOrder(request.side, request.quantity)
        order.orderRef = request.order_ref
        order.tif = "DAY"
        if request.account or self.account:
            order.account = request.account or self.account
        if not self.is_connected():
            raise BrokerUnavailableError(f"placeOrder {request.order_ref}: not connected")
        if request.oca_group:
            # an exit in its position's protection group: ocaType 2, "proportionately reduced in
            # size with block" (https://interactivebrokers.github.io/tws-api/oca.html): its fills
            # shrink the stop and take-profit to what is still held, and theirs shrink it
            order.ocaGroup = request.oca_group
            order.ocaType = OCA_REDUCE_WITH_BLOCK
        children = self._protective_children(request, order) if request.protection is not None else []
        try:
            trade = self._ib.placeOrder(contract, order)
            for child in children:
                child.parentId = order.orderId
                self._ib.placeOrder(contract, child)
        except (ConnectionError, OSError) as exc:
            raise BrokerUnavailableError(f"placeOrder {request.order_ref}: {exc!r}") from exc
        return self._to_order(trade)

    def _protective_children(self, request: OrderRequest, parent: Any) -> list[Any]:
        """The bracket's children (IB "Bracket Orders", https://interactivebrokers.github.io/tws-api/bracket_order.html):
        the parent and every child but the last go with transmit=False, so TWS holds them; the
        last child's transmit=True sends the whole bracket at once, and no child can work (or
        fill) before its parent is at the exchange. The stop and take-profit share one OCA group
        with ocaType 1 (cancel the rest, with block: https://interactivebrokers.github.io/tws-api/oca.html),
        with ocaType 2 (reduce with block, https://interactivebrokers.github.io/tws-api/oca.html):
        a fill of one shrinks the other by its size, so a partial take-profit leaves the stop
        sized to what is still held, and a full fill leaves nothing of the other.
        GTC: the protection outlives the day and the runner."""
        ib_insync = _ib_module()
        protection = request.protection
        assert protection is not None
        exit_side = "SELL" if request.side == "BUY" else "BUY"
        quantity = protection.quantity or request.quantity
        stop = ib_insync.StopOrder(exit_side, quantity, protection.stop_price)
        stop.orderRef = request.order_ref + STOP_SUFFIX
        children = [stop]
        if protection.take_profit_price is not None:
            take = ib_insync.LimitOrder(exit_side, quantity, protection.take_profit_price)
            take.orderRef = request.order_ref + TAKE_PROFIT_SUFFIX
            children.insert(0, take)
        for child in children:
            child.tif = "GTC"
            child.account = parent.account
            child.transmit = False
            child.ocaGroup = protection.oca_group or oca_group_of(request.order_ref)  # the exits join it
            child.ocaType = OCA_REDUCE_WITH_BLOCK
        children[-1].transmit = True
        parent.transmit = False
        parent.orderId = self._ib.client.getReqId()  # known before the children name it as their parent
        return children

    def cancel_order(self, order_ref: str) -> None:
        if not self.is_connected():
            raise BrokerUnavailableError(f"cancelOrder {order_ref}: not connected")
        for trade in self._ib.openTrades():
            if trade.order.orderRef == order_ref:
                self._ib.cancelOrder(trade.order)

    def resize(self, order_ref: str, remaining: float) -> bool:
        """IB's modification: placeOrder again with the open order's orderId and its fields, only the
        size changed (https://interactivebrokers.github.io/tws-api/modifying_orders.html; only the
        client that placed it can). The size is the total, so it is what has filled plus
        `remaining`. `transmit` is set: a bracket child was held for its last sibling when it was
        placed; its modification must go out."""
        if not self.is_connected():
            raise BrokerUnavailableError(f"modify {order_ref}: not connected")
        for trade in self._ib.openTrades():
            if trade.order.orderRef != order_ref or trade.order.clientId != self._ib.client.clientId:
                continue
            total = trade.orderStatus.filled + remaining
            if trade.order.totalQuantity != total:
                trade.order.totalQuantity = total
                trade.order.transmit = True
                try:
                    self._ib.placeOrder(trade.contract, trade.order)
                except (ConnectionError, OSError) as exc:
                    raise BrokerUnavailableError(f"modify {order_ref}: {exc!r}") from exc
            return True
        return False

    def global_cancel(self) -> None:
        if not self.is_connected():
            raise BrokerUnavailableError("reqGlobalCancel: not connected")
        self._ib.reqGlobalCancel()

    # ------------------------------------------------------------ streaming

    def subscribe_bars(self, symbol: str) -> None:
        if symbol in self._bar_subscriptions:
            return
        if not self.is_connected():
            raise BrokerUnavailableError(f"reqRealTimeBars {symbol}: not connected")
        bars = self._ib.reqRealTimeBars(self._contract(symbol), 5, "TRADES", False)
        bars.updateEvent += lambda bars, has_new, symbol=symbol: self._on_bar(symbol, bars, has_new)
        self._bar_subscriptions[symbol] = bars

    def resubscribe(self) -> None:
        """After IB code 1101 (connectivity restored, data lost) every subscription must be made again."""
        symbols = list(self._bar_subscriptions)
        for symbol in symbols:
            self._ib.cancelRealTimeBars(self._bar_subscriptions.pop(symbol))
            self.subscribe_bars(symbol)

    def poll(self, timeout: float) -> list[BrokerEvent]:
        """Run ib_insync's loop; a dropped socket raises BrokerUnavailableError, never ConnectionError."""
        if self._ib is not None:
            try:
                self._ib.sleep(timeout)
            except (ConnectionError, OSError) as exc:
                self._events.append(ConnectionUpdate("closed", 0, f"socket error: {exc!r}"))
        elif timeout > 0:
            time.sleep(timeout)
        events = list(self._events)
        self._events.clear()
        return events

    # ------------------------------------------------------------ ib_insync callbacks

    def _on_bar(self, symbol: str, bars: Any, has_new: bool) -> None:
        if has_new and bars:
            b = bars[-1]
            self._events.append(BarUpdate(Bar(symbol, b.time, b.open_, b.high, b.low, b.close, b.volume)))

    def _on_order_status(self, trade: Any) -> None:
        self._events.append(OrderUpdate(self._to_order(trade)))

    def _on_exec(self, trade: Any, fill: Any) -> None:
        self._events.append(FillUpdate(self._to_fill(fill)))

    def _on_commission(self, trade: Any, fill: Any, report: Any) -> None:
        self._events.append(FillUpdate(self._to_fill(fill)))

    def _on_error(self, req_id: int, code: int, message: str, contract: Any) -> None:
        if code == CLIENT_ID_IN_USE:
            self._refused = f"IB error {code}: {message}"
        if code in LOST_CODES:
            self._link_lost = True
            self._events.append(ConnectionUpdate("lost", code, message))
        elif code in RESTORED_CODES:
            self._link_lost = False
            state = RESTORED_CODES[code]
            self._events.append(ConnectionUpdate(state, code, message))  # type: ignore[arg-type]
        elif req_id > 0 and code != CANCEL_ACK:
            ref = self._order_ref_of(req_id)
            if ref is not None:
                self._events.append(OrderError(ref, code, message, code in FINAL_ORDER_ERRORS))
            log.warning("IB error %s for request/order %s: %s", code, req_id, message)

    def _order_ref_of(self, order_id: int) -> str | None:
        if self._ib is None:
            return None
        for trade in self._ib.trades():
            if trade.order.orderId == order_id and trade.order.clientId == self.client_id:
                return str(trade.order.orderRef)
        return None

    def _on_disconnected(self) -> None:
        self._events.append(ConnectionUpdate("closed", 0, "socket closed"))

    # ------------------------------------------------------------ contract details (kubetrader symbols resolve)

    def contract_details(
        self, symbol: str, *, sec_type: str = "STK", exchange: str = "SMART", currency: str = ""
    ) -> list[Any]:
        """Every contract IB knows for the description (one reqContractDetails): ib_insync ContractDetails.

        An empty list when IB has no security definition (error 200). Blank fields
        (`currency=""`) match anything, so a loose description can give several.
        """
        ib_insync = _ib_module()
        contract = ib_insync.Contract(symbol=symbol, secType=sec_type, exchange=exchange, currency=currency)
        try:
            return list(self._run(self._api().reqContractDetailsAsync(contract), f"reqContractDetails {symbol}"))
        except ib_insync.RequestError as exc:  # RaiseRequestErrors: "No security definition" arrives as one
            if exc.code == 200:
                return []
            raise

    # ------------------------------------------------------------ conversions

    def _contract(self, symbol: str) -> Any:
        contract = self._contracts.get(symbol)
        if contract is None:
            ib_insync = _ib_module()
            contract = ib_insync.Stock(symbol, "SMART", self.currency)
            qualified = self._run(self._api().qualifyContractsAsync(contract), f"reqContractDetails {symbol}")
            if not qualified:
                raise OrderRejectedError(f"unknown contract {symbol} (no security definition at IB)")
            self._contracts[symbol] = contract
        return contract

    def _contract_by_id(self, ref: ContractRef) -> Any:
        """The full contract of a conId (one reqContractDetails, cached): the exchange it routes to."""
        contract = self._by_con_id.get(ref.con_id)
        if contract is None:
            ib_insync = _ib_module()
            contract = ib_insync.Contract(conId=ref.con_id, exchange=ref.exchange or ROUTE.get(ref.sec_type, ""))
            qualified = self._run(self._api().qualifyContractsAsync(contract), f"reqContractDetails conId {ref.con_id}")
            if not qualified:
                raise OrderRejectedError(f"unknown contract conId {ref.con_id} ({ref.label})")
            self._by_con_id[ref.con_id] = contract
        return contract

    @staticmethod
    def _to_order(trade: Any, status: str | None = None) -> BrokerOrder:
        o, s = trade.order, trade.orderStatus
        limit = o.lmtPrice if o.orderType == "LMT" and o.lmtPrice < 1e300 else None
        if o.orderType == "STP" and o.auxPrice < 1e300:
            limit = o.auxPrice  # a stop's trigger price
        broker_id = str(o.permId) if o.permId else f"{o.clientId}/{o.orderId}"
        return BrokerOrder(
            order_ref=o.orderRef,
            broker_id=broker_id,
            symbol=trade.contract.symbol,
            side=cast(Side, o.action),
            quantity=float(o.totalQuantity),
            order_type=o.orderType,
            limit_price=limit,
            status=status or s.status,
            filled=float(s.filled or 0.0),
            avg_fill_price=float(s.avgFillPrice or 0.0),
            con_id=int(trade.contract.conId or 0),
            account=o.account,
        )

    @staticmethod
    def _to_fill(fill: Any) -> Fill:
        e = fill.execution
        return Fill(
            exec_id=e.execId,
            order_ref=e.orderRef,
            symbol=fill.contract.symbol,
            side="BUY" if e.side == "BOT" else "SELL",
            quantity=float(e.shares),
            price=float(e.price),
            commission=float(fill.commissionReport.commission or 0.0),
            time=e.time,
            con_id=int(fill.contract.conId or 0),
            account=e.acctNumber,
        )


def _contract_ref(contract: Any) -> ContractRef:
    return ContractRef(
        con_id=int(contract.conId),
        symbol=contract.symbol,
        sec_type=contract.secType or "STK",
        currency=contract.currency or "USD",
        local_symbol=contract.localSymbol,
        multiplier=str(contract.multiplier or ""),
        exchange=contract.exchange if contract.secType == "FUT" else "",
    )
