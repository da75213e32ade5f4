"""A TWS API peer: a small asyncio TCP server that speaks enough of IB's socket protocol
for the real ib_insync client (handshake, account, positions, orders, executions,
historical and real-time bars), with a paper matching engine behind it.

Why a protocol-level peer rather than a mock of ib_insync: the dangerous failures of a
live runner happen on the wire (a socket cut right after `placeOrder`, a gateway that
accepts TCP but does not answer, a reconnect that must not re-send an order). Only a
peer on the other side of a real socket lets the real client hit them.

Server version 157 is the lowest ib_insync 0.9.86 accepts (`Client.MinClientVersion`);
it keeps the messages short: no `advancedOrderRejectJson` in errors (166+), the old
contract-details layout (< 164), no order fields added in 159+. Field orders mirror
`ib_insync/decoder.py` for that version; a unit test decodes every message this peer
writes with ib_insync's own Decoder.

Fills: a market order fills at once at the symbol's current price (the close of the
last replayed bar); a limit order fills when marketable, otherwise rests until a bar
crosses it. Bars are replayed from the bundled daily files in `examples/data/`.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import datetime as dt
import logging
import struct
import threading
import time
import zlib
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

log = logging.getLogger(__name__)

SERVER_VERSION = 157
ACCOUNT = "DU0000001"
MAX_MESSAGES_PER_SECOND = 50  # TWS's documented limit for incoming API messages
REALTIME_BAR_SECONDS = 5
DEFAULT_DATA_DIR = Path(__file__).resolve().parents[4] / "examples" / "data"
REPLAY_EPOCH = int(dt.datetime(2024, 1, 2, 14, 30, tzinfo=dt.UTC).timestamp())

PlaceFault = Literal["drop_before_ack", "drop_after_ack"]
OPEN_STATUSES = frozenset({"PendingSubmit", "PreSubmitted", "Submitted"})

Field = str | int | float | bool | None


def encode(fields: Iterable[Field]) -> bytes:
    """One TWS message: NUL-terminated fields behind a 4-byte big-endian length."""
    parts = []
    for value in fields:
        if value is None:
            parts.append("")
        elif isinstance(value, bool):
            parts.append("1" if value else "0")
        else:
            parts.append(str(value))
    payload = "".join(p + "\0" for p in parts).encode()
    return struct.pack(">I", len(payload)) + payload


def con_id(symbol: str) -> int:
    """A stable contract id per symbol, so restarts of the peer agree with journals."""
    return 100_000 + zlib.crc32(symbol.encode()) % 900_000


@dataclass(frozen=True)
class ReplayBar:
    date: dt.date
    open: float
    high: float
    low: float
    close: float
    volume: float


def load_daily_bars(symbol: str, data_dir: Path = DEFAULT_DATA_DIR) -> list[ReplayBar]:
    """Daily bars of `symbol` from the bundled Yahoo-format file `<symbol>-*.txt`."""
    matches = sorted(data_dir.glob(f"{symbol.lower()}-*.txt"))
    if not matches:
        return []
    bars = []
    with matches[0].open(newline="") as handle:
        for row in csv.DictReader(handle):
            bars.append(
                ReplayBar(
                    date=dt.date.fromisoformat(row["Date"]),
                    open=float(row["Open"]),
                    high=float(row["High"]),
                    low=float(row["Low"]),
                    close=float(row["Close"]),
                    volume=float(row["Volume"]),
                )
            )
    return bars


@dataclass
class PeerOrder:
    order_id: int
    client_id: int
    perm_id: int
    symbol: str
    action: str
    quantity: float
    order_type: str
    limit_price: float | None
    tif: str
    order_ref: str
    status: str = "Submitted"
    filled: float = 0.0
    avg_fill_price: float = 0.0
    completed_time: str = ""

    @property
    def remaining(self) -> float:
        return self.quantity - self.filled

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES


@dataclass
class PeerExecution:
    exec_id: str
    order_id: int
    client_id: int
    perm_id: int
    symbol: str
    side: str  # BOT / SLD
    shares: float
    price: float
    order_ref: str
    epoch: int
    commission: float
    realized_pnl: float


@dataclass
class PeerPosition:
    quantity: float = 0.0
    avg_cost: float = 0.0


@dataclass
class Connection:
    writer: asyncio.StreamWriter
    client_id: int = -1
    subscribed_positions: bool = False
    subscribed_account: bool = False
    account_multi_req: int | None = None
    realtime: dict[int, str] = field(default_factory=dict)  # reqId -> symbol
    recent: deque[float] = field(default_factory=deque)

    def send(self, *fields: Field) -> None:
        if not self.writer.is_closing():
            self.writer.write(encode(fields))


class TwsPeer:
    """The peer. `start()` runs it on its own thread and event loop; other methods are thread-safe.

    Fault injection: `fail_next_place(...)`, `set_down(True)` (refuse connections, drop
    the ones open), `unresponsive = True` (accept, then answer nothing), `broadcast_error(code)`.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        cash: float = 1_000_000.0,
        data_dir: Path = DEFAULT_DATA_DIR,
        bar_interval: float = 0.05,
        replay_start: dict[str, int] | None = None,
        historical_limit: tuple[int, float] = (60, 600.0),
    ) -> None:
        self.host = host
        self.port = port
        self.data_dir = data_dir
        self.bar_interval = bar_interval
        self.historical_limit = historical_limit
        self.unresponsive = False
        self._lock = threading.RLock()
        self._cash = cash
        self._realized = 0.0
        self._bars: dict[str, list[ReplayBar]] = {}
        self._cursor: dict[str, int] = dict(replay_start or {})
        self._orders: list[PeerOrder] = []
        self._executions: list[PeerExecution] = []
        self._positions: dict[str, PeerPosition] = {}
        self._connections: list[Connection] = []
        self._streams: dict[str, asyncio.Task[None]] = {}
        self._historical_times: deque[float] = deque()
        self._next_order_id = 1
        self._next_perm_id = 1_000_000
        self._next_exec = 1
        self._fault: PlaceFault | None = None
        self.place_orders_received: list[tuple[int, int, str]] = []  # (clientId, orderId, orderRef)
        self.pacing_violations = 0
        self.historical_requests = 0
        self.unknown_messages: list[str] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> TwsPeer:
        self._thread = threading.Thread(target=self._run, name="tws-peer", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("TWS peer did not start")
        return self

    def stop(self) -> None:
        if self._loop is None:
            return
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread:
            self._thread.join(10)
        self._loop = None

    def __enter__(self) -> TwsPeer:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        loop.run_until_complete(self._listen())
        self._ready.set()
        loop.run_forever()
        loop.close()

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _shutdown(self) -> None:
        for task in list(self._streams.values()):
            task.cancel()
        self._streams.clear()
        await self._close_listener()
        for conn in list(self._connections):
            conn.writer.close()
        self._connections.clear()

    async def _close_listener(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    def _call(self, coro_fn: object) -> None:
        assert self._loop is not None, "peer not started"
        asyncio.run_coroutine_threadsafe(coro_fn, self._loop).result(10)  # type: ignore[arg-type]

    # ---------------------------------------------------------------- fault injection

    def fail_next_place(self, fault: PlaceFault) -> None:
        """The next placeOrder is accepted by the 'broker', then the socket is cut:
        `drop_before_ack` sends the client nothing first, `drop_after_ack` sends Submitted."""
        with self._lock:
            self._fault = fault

    def set_down(self, down: bool) -> None:
        """Gateway down: close the listening socket (connections are refused) and drop clients."""

        async def apply() -> None:
            if down:
                await self._close_listener()
                for conn in list(self._connections):
                    conn.writer.close()
            elif self._server is None:
                self._server = await asyncio.start_server(self._serve, self.host, self.port)

        self._call(apply())

    def drop_connections(self) -> None:
        """Cut every client socket (a network blip); the listener stays up."""

        async def apply() -> None:
            for conn in list(self._connections):
                conn.writer.close()

        self._call(apply())

    def broadcast_error(self, code: int, message: str = "") -> None:
        """Send a connection-level status (1100 lost, 1101 restored-data-lost, 1102 restored)."""

        async def apply() -> None:
            for conn in self._connections:
                self._error(conn, -1, code, message or f"status {code}")
                await conn.writer.drain()

        self._call(apply())

    # ---------------------------------------------------------------- state for assertions

    def open_orders(self) -> list[PeerOrder]:
        with self._lock:
            return [o for o in self._orders if o.is_open]

    def orders(self) -> list[PeerOrder]:
        with self._lock:
            return list(self._orders)

    def positions(self) -> dict[str, float]:
        with self._lock:
            return {s: p.quantity for s, p in self._positions.items() if p.quantity}

    def client_ids(self) -> list[int]:
        with self._lock:
            return [c.client_id for c in self._connections if c.client_id >= 0]

    def price(self, symbol: str) -> float:
        with self._lock:
            bars = self._symbol_bars(symbol)
            return bars[min(self._cursor.get(symbol, 0), len(bars) - 1)].close

    def seed_position(self, symbol: str, quantity: float, avg_cost: float | None = None) -> None:
        """Start with a position, as if an earlier session had left one."""
        with self._lock:
            price = self.price(symbol) if avg_cost is None else avg_cost
            self._positions[symbol] = PeerPosition(quantity, price)
            self._cash -= quantity * price

    # ---------------------------------------------------------------- connection handling

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = Connection(writer)
        self._connections.append(conn)
        try:
            prefix = await reader.readexactly(4)
            if prefix != b"API\0":
                return
            (size,) = struct.unpack(">I", await reader.readexactly(4))
            await reader.readexactly(size)  # b"v157..176": we answer with our version
            now = dt.datetime.now(dt.UTC).strftime("%Y%m%d %H:%M:%S UTC")
            conn.send(SERVER_VERSION, now)
            while True:
                (size,) = struct.unpack(">I", await reader.readexactly(4))
                fields = (await reader.readexactly(size)).decode().split("\0")[:-1]
                self._count_message(conn)
                if self.unresponsive:
                    continue
                with self._lock:
                    keep_open = self._handle(conn, fields)
                await writer.drain()
                if not keep_open:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            with contextlib.suppress(ValueError):
                self._connections.remove(conn)
            writer.close()

    def _count_message(self, conn: Connection) -> None:
        now = time.monotonic()
        conn.recent.append(now)
        while conn.recent and now - conn.recent[0] > 1.0:
            conn.recent.popleft()
        if len(conn.recent) > MAX_MESSAGES_PER_SECOND:
            self.pacing_violations += 1

    def _error(self, conn: Connection, req_id: int, code: int, message: str) -> None:
        conn.send(4, 2, req_id, code, message)

    def _handle(self, conn: Connection, f: list[str]) -> bool:
        """Answer one client message; False closes the connection."""
        msg_id = int(f[0])
        if msg_id == 71:  # startApi: version, clientId, optionalCapabilities
            client_id = int(f[2])
            if client_id in self.client_ids():
                self._error(conn, -1, 326, f"Unable to connect as the client id {client_id} is already in use.")
                return False
            conn.client_id = client_id
            conn.send(15, 1, ACCOUNT)
            conn.send(9, 1, self._next_order_id)
        elif msg_id == 49:
            conn.send(49, 1, int(time.time()))
        elif msg_id == 8:
            conn.send(9, 1, self._next_order_id)
        elif msg_id == 61:
            conn.subscribed_positions = True
            for symbol, pos in self._positions.items():
                self._send_position(conn, symbol, pos)
            conn.send(62, 1)
        elif msg_id == 64:
            conn.subscribed_positions = False
        elif msg_id == 6:  # reqAccountUpdates: version, subscribe, account
            conn.subscribed_account = f[2] == "1"
            if conn.subscribed_account:
                self._send_account(conn)
                conn.send(54, 1, ACCOUNT)
        elif msg_id == 76:  # reqAccountUpdatesMulti: version, reqId, account, modelCode, ledgerAndNLV
            req_id = int(f[2])
            conn.account_multi_req = req_id
            for key, value in self._account_values().items():
                conn.send(73, 1, req_id, ACCOUNT, "", key, f"{value:.2f}", "USD")
            conn.send(74, 1, req_id)
        elif msg_id in (5, 16):  # reqOpenOrders (this client) / reqAllOpenOrders
            for order in self._orders:
                if order.is_open and (msg_id == 16 or order.client_id == conn.client_id):
                    self._send_open_order(conn, order)
            conn.send(53, 1)
        elif msg_id == 99:
            for order in self._orders:
                if not order.is_open:
                    self._send_completed_order(conn, order)
            conn.send(102)
        elif msg_id == 7:  # reqExecutions: version, reqId, clientId, acct, time, symbol, secType, exch, side
            req_id = int(f[2])
            symbol = f[6]
            for execution in self._executions:
                if not symbol or execution.symbol == symbol:
                    self._send_execution(conn, req_id, execution)
            conn.send(55, 1, req_id)
        elif msg_id == 9:  # reqContractDetails: version, reqId, contract...
            self._send_contract_details(conn, int(f[2]), symbol=f[4])
        elif msg_id == 3:
            return self._place_order(conn, f)
        elif msg_id == 4:  # cancelOrder: version, orderId
            self._cancel(conn, int(f[2]))
        elif msg_id == 58:
            for order in self._orders:
                if order.is_open:
                    self._set_cancelled(order)
        elif msg_id == 20:
            self._historical(conn, f)
        elif msg_id == 50:  # reqRealTimeBars: version, reqId, contract(12)...
            conn.realtime[int(f[2])] = f[4]
            self._ensure_stream(f[4])
        elif msg_id == 51:
            conn.realtime.pop(int(f[2]), None)
        elif msg_id in (15, 14, 59, 63, 25, 17):
            pass  # autoOpenOrders, log level, market data type, cancels: nothing to answer
        else:
            self.unknown_messages.append(",".join(f))
        return True

    # ---------------------------------------------------------------- orders

    def _place_order(self, conn: Connection, f: list[str]) -> bool:
        # placeOrder: 3, orderId, contract(12), secIdType, secId, action, qty, type, lmt, aux, tif,
        # ocaGroup, account, openClose, origin, orderRef, transmit, ...
        order_id = int(f[1])
        symbol = f[3]
        ref = f[26]
        self.place_orders_received.append((conn.client_id, order_id, ref))
        if any(o.order_id == order_id and o.client_id == conn.client_id for o in self._orders):
            self._error(conn, order_id, 103, "Duplicate order id")
            return True
        if not self._symbol_bars(symbol):
            self._error(conn, order_id, 200, "No security definition has been found for the request")
            return True
        order = PeerOrder(
            order_id=order_id,
            client_id=conn.client_id,
            perm_id=self._next_perm_id,
            symbol=symbol,
            action=f[16],
            quantity=float(f[17]),
            order_type=f[18],
            limit_price=float(f[19]) if f[19] else None,
            tif=f[21] or "DAY",
            order_ref=ref,
        )
        self._next_perm_id += 1
        self._next_order_id = max(self._next_order_id, order_id + 1)
        self._orders.append(order)
        fault, self._fault = self._fault, None
        if fault == "drop_before_ack":
            conn.writer.close()
            self._try_fill(order, self.price(symbol))
            return False
        self._notify_order(order)
        if fault == "drop_after_ack":
            conn.writer.close()
            self._try_fill(order, self.price(symbol))
            return False
        self._try_fill(order, self.price(symbol))
        return True

    def _owner(self, order: PeerOrder) -> Connection | None:
        for conn in self._connections:
            if conn.client_id == order.client_id and not conn.writer.is_closing():
                return conn
        return None

    def _notify_order(self, order: PeerOrder) -> None:
        owner = self._owner(order)
        if owner is None:
            return
        self._send_open_order(owner, order)
        self._send_status(owner, order)

    def _send_status(self, conn: Connection, order: PeerOrder) -> None:
        conn.send(
            3,
            order.order_id,
            order.status,
            order.filled,
            order.remaining,
            order.avg_fill_price,
            order.perm_id,
            0,
            order.avg_fill_price,
            order.client_id,
            "",
            0.0,
        )

    def _try_fill(self, order: PeerOrder, price: float) -> None:
        if not order.is_open:
            return
        if order.order_type == "LMT" and order.limit_price is not None:
            marketable = price <= order.limit_price if order.action == "BUY" else price >= order.limit_price
            if not marketable:
                return
        elif order.order_type != "MKT":
            return
        self._fill(order, price)

    def _fill(self, order: PeerOrder, price: float) -> None:
        shares = order.remaining
        signed = shares if order.action == "BUY" else -shares
        commission = round(min(max(1.0, 0.005 * shares), 0.01 * shares * price), 4)
        pos = self._positions.setdefault(order.symbol, PeerPosition())
        realized = 0.0
        if pos.quantity and (pos.quantity > 0) != (signed > 0):
            closed = min(abs(signed), abs(pos.quantity))
            direction = 1 if pos.quantity > 0 else -1
            realized = closed * (price - pos.avg_cost) * direction
        new_qty = pos.quantity + signed
        if new_qty == 0:
            pos.avg_cost = 0.0
        elif pos.quantity == 0 or (pos.quantity > 0) != (new_qty > 0):
            pos.avg_cost = price
        elif abs(new_qty) > abs(pos.quantity):
            pos.avg_cost = (pos.avg_cost * pos.quantity + price * signed) / new_qty
        pos.quantity = new_qty
        self._cash -= signed * price + commission
        self._realized += realized - commission
        order.filled += shares
        order.avg_fill_price = price
        order.status = "Filled"
        order.completed_time = dt.datetime.now(dt.UTC).strftime("%Y%m%d %H:%M:%S UTC")
        execution = PeerExecution(
            exec_id=f"0000e{self._next_exec:08d}.01",
            order_id=order.order_id,
            client_id=order.client_id,
            perm_id=order.perm_id,
            symbol=order.symbol,
            side="BOT" if order.action == "BUY" else "SLD",
            shares=shares,
            price=price,
            order_ref=order.order_ref,
            epoch=int(time.time()),
            commission=commission,
            realized_pnl=realized,
        )
        self._next_exec += 1
        self._executions.append(execution)
        owner = self._owner(order)
        if owner is not None:
            self._send_execution(owner, -1, execution)
            self._send_status(owner, order)
            self._send_open_order(owner, order)
        for conn in self._connections:
            if conn.subscribed_positions:
                self._send_position(conn, order.symbol, pos)
            if conn.subscribed_account or conn.account_multi_req is not None:
                self._send_account(conn)

    def _cancel(self, conn: Connection, order_id: int) -> None:
        for order in self._orders:
            if order.order_id == order_id and order.client_id == conn.client_id:
                if order.is_open:
                    self._set_cancelled(order)
                else:
                    self._error(
                        conn, order_id, 10148, f"OrderId {order_id} cannot be cancelled, state: {order.status}."
                    )
                return
        self._error(conn, order_id, 135, f"Can't find order with id = {order_id}")

    def _set_cancelled(self, order: PeerOrder) -> None:
        order.status = "Cancelled"
        order.completed_time = dt.datetime.now(dt.UTC).strftime("%Y%m%d %H:%M:%S UTC")
        owner = self._owner(order)
        if owner is not None:
            self._send_status(owner, order)
            self._error(owner, order.order_id, 202, "Order Canceled - reason:")

    # ---------------------------------------------------------------- market data

    def _symbol_bars(self, symbol: str) -> list[ReplayBar]:
        if symbol not in self._bars:
            self._bars[symbol] = load_daily_bars(symbol, self.data_dir) if symbol else []
        return self._bars[symbol]

    def _ensure_stream(self, symbol: str) -> None:
        if symbol not in self._streams and self._symbol_bars(symbol):
            assert self._loop is not None
            self._streams[symbol] = self._loop.create_task(self._stream(symbol))

    async def _stream(self, symbol: str) -> None:
        """Advance the replay of `symbol` one bar per `bar_interval` and publish it as a 5-second bar."""
        bars = self._symbol_bars(symbol)
        while True:
            await asyncio.sleep(self.bar_interval)
            with self._lock:
                index = self._cursor.get(symbol, 0) + 1
                if index >= len(bars):
                    return
                self._cursor[symbol] = index
                bar = bars[index]
                for order in self._orders:
                    if order.symbol == symbol and order.is_open:
                        self._try_fill(order, bar.open)
                epoch = REPLAY_EPOCH + REALTIME_BAR_SECONDS * index
                wap = (bar.high + bar.low + bar.close) / 3
                for conn in self._connections:
                    for req_id, sub_symbol in conn.realtime.items():
                        if sub_symbol == symbol:
                            conn.send(50, 3, req_id, epoch, bar.open, bar.high, bar.low, bar.close, bar.volume, wap, 1)

    def _historical(self, conn: Connection, f: list[str]) -> None:
        # reqHistoricalData: 20, reqId, contract(12), includeExpired, end, barSize, duration, useRTH, what, fmt, ...
        req_id, symbol, end_text, bar_size, duration = int(f[1]), f[3], f[15], f[16], f[17]
        now = time.monotonic()
        limit, window = self.historical_limit
        while self._historical_times and now - self._historical_times[0] > window:
            self._historical_times.popleft()
        if len(self._historical_times) >= limit:
            self._error(conn, req_id, 162, "Historical Market Data Service error message:pacing violation")
            return
        self._historical_times.append(now)
        self.historical_requests += 1
        bars = self._symbol_bars(symbol)
        if bar_size != "1 day" or not bars:
            self._error(conn, req_id, 162, "Historical Market Data Service error message:HMDS query returned no data")
            return
        end = dt.datetime.strptime(end_text[:8], "%Y%m%d").date() if end_text else bars[-1].date
        count, unit = duration.split()
        days = int(count) * {"D": 1, "W": 7, "M": 31, "Y": 366}[unit]
        start = end - dt.timedelta(days=days)
        chosen = [b for b in bars if start < b.date <= end]
        fields: list[Field] = [17, req_id, start.strftime("%Y%m%d"), end.strftime("%Y%m%d"), len(chosen)]
        for b in chosen:
            wap = (b.high + b.low + b.close) / 3
            fields += [b.date.strftime("%Y%m%d"), b.open, b.high, b.low, b.close, b.volume, wap, 1]
        conn.send(*fields)

    # ---------------------------------------------------------------- message builders

    def _account_values(self) -> dict[str, float]:
        market = 0.0
        unrealized = 0.0
        for symbol, pos in self._positions.items():
            if pos.quantity:
                price = self.price(symbol)
                market += pos.quantity * price
                unrealized += pos.quantity * (price - pos.avg_cost)
        return {
            "NetLiquidation": self._cash + market,
            "TotalCashValue": self._cash,
            "GrossPositionValue": abs(market),
            "UnrealizedPnL": unrealized,
            "RealizedPnL": self._realized,
            "BuyingPower": max(0.0, (self._cash + market) * 4),
        }

    def _send_account(self, conn: Connection) -> None:
        values = self._account_values()
        if conn.subscribed_account:
            for key, value in values.items():
                conn.send(6, 2, key, f"{value:.2f}", "USD", ACCOUNT)
            for symbol, pos in self._positions.items():
                price = self.price(symbol)
                conn.send(
                    7,
                    8,
                    *_contract11(symbol, with_primary=True),
                    pos.quantity,
                    price,
                    pos.quantity * price,
                    pos.avg_cost,
                    pos.quantity * (price - pos.avg_cost),
                    0.0,
                    ACCOUNT,
                )
            conn.send(8, 1, dt.datetime.now(dt.UTC).strftime("%H:%M"))
        if conn.account_multi_req is not None:
            for key, value in values.items():
                conn.send(73, 1, conn.account_multi_req, ACCOUNT, "", key, f"{value:.2f}", "USD")

    def _send_position(self, conn: Connection, symbol: str, pos: PeerPosition) -> None:
        conn.send(61, 3, ACCOUNT, *_contract11(symbol), pos.quantity, pos.avg_cost)

    def _send_execution(self, conn: Connection, req_id: int, e: PeerExecution) -> None:
        conn.send(
            11,
            req_id,
            e.order_id,
            *_contract11(e.symbol),
            e.exec_id,
            e.epoch,
            ACCOUNT,
            "SMART",
            e.side,
            e.shares,
            e.price,
            e.perm_id,
            e.client_id,
            0,
            e.shares,
            e.price,
            e.order_ref,
            "",
            "",
            "",
            0,
        )
        conn.send(59, 1, e.exec_id, e.commission, "USD", e.realized_pnl, "", "")

    def _send_contract_details(self, conn: Connection, req_id: int, symbol: str) -> None:
        if not self._symbol_bars(symbol):
            self._error(conn, req_id, 200, "No security definition has been found for the request")
            return
        conn.send(
            10, 8, req_id, symbol, "STK", "", 0.0, "", "SMART", "USD", symbol, "NMS", "NMS", con_id(symbol), 0.01,
            1, "", "LMT,MKT", "SMART,NYSE,NASDAQ", 1, 0, f"{symbol} INC", "NASDAQ", "", "", "", "",
            "US/Eastern", "", "", "", "", 0, 1, "", "", "26", "", "COMMON",
        )  # fmt: skip
        conn.send(52, 1, req_id)

    def _send_open_order(self, conn: Connection, o: PeerOrder) -> None:
        head: list[Field] = [5, o.order_id, *_contract11(o.symbol)]
        body: list[Field] = [
            o.action, o.quantity, o.order_type, o.limit_price, None, o.tif, "", ACCOUNT, "O", 0, o.order_ref,
            o.client_id, o.perm_id, 0, 0, 0, "", "",  # ... outsideRth, hidden, discretionaryAmt, goodAfterTime, _
            "", "", "", "", "", "", "", None, "",  # fa*, modelCode, goodTillDate, rule80A, percentOffset, firm
            0, "", -1, 0, None, None, None, None, None,  # shortSaleSlot .. stockRangeUpper
            0, 0, 0, 0, None, 0, 0, 0, None,  # displaySize .. nbboPriceCap
            0, 0, None, 0, "", None,  # parentId, triggerMethod, volatility(+type), deltaNeutral type/aux
        ]  # fmt: skip
        tail: list[Field] = [
            0, 0, None, None, None, None, "",  # continuousUpdate .. comboLegsDescrip
            0, 0, 0,  # combo legs, order combo legs, smart combo params
            None, None, "",  # scale
            "",  # hedgeType
            0, "", "", 0, 0,  # optOutSmartRouting, clearing, notHeld, dncPresent
            "",  # algoStrategy
            0, 0, o.status, "", "", "", "", "", "", "", "", "", None, None, None, "", "", 0, 0,
            0,  # conditions
            "", None, None, None, None, None, None, 0, "", "", "", None, 0, 0, None, 0,
        ]  # fmt: skip
        conn.send(*head, *body, *tail)

    def _send_completed_order(self, conn: Connection, o: PeerOrder) -> None:
        fields: list[Field] = [
            101, *_contract11(o.symbol),
            o.action, o.quantity, o.order_type, o.limit_price, None, o.tif, "", ACCOUNT, "O", 0, o.order_ref,
            o.perm_id, 0, 0, 0, "", "", "", "", "", "", "", "", "", "", "", 0, "", None, None, None, None, None,
            0, 0, 0, 0, 0, 0, None, 0, "", "",
            0, 0, None, None, "",  # continuousUpdate .. comboLegsDescrip
            0, 0, 0,  # legs
            None, None, "",  # scale
            "",  # hedgeType
            "", "", 0, 0,  # clearing, notHeld, dncPresent
            "",  # algoStrategy
            0, o.status, 0, 0,
            0,  # conditions
            None, None, None, 0, 0, "", o.filled, 0, 0, "", 0, 0, 0, o.completed_time, o.status,
        ]  # fmt: skip
        conn.send(*fields)


def _contract11(symbol: str, *, with_primary: bool = False) -> Sequence[Field]:
    """conId, symbol, secType, expiry, strike, right, multiplier, exchange|primaryExchange, currency,
    localSymbol, tradingClass: the contract block most messages share."""
    exchange = "NASDAQ" if with_primary else "SMART"
    return (con_id(symbol), symbol, "STK", "", 0.0, "", "", exchange, "USD", symbol, "NMS")
