"""A TWS API peer: a small asyncio TCP server that speaks enough of IB's socket protocol
for the real ib_insync client (handshake, accounts, positions, orders, executions,
historical and real-time bars), with a paper matching engine behind it, and the faults
of a real gateway (`faults.py`; what it emulates and what differs: README.md here).

Why a protocol-level peer rather than a mock of ib_insync: the dangerous failures of a
live runner happen on the wire (a socket cut right after `placeOrder`, position reports
trailing fills, a reject storm, 1100 while orders are queued). Only a peer on the other
side of a real socket lets the real client hit them.

Fills: a market order fills at the instrument's current price (the close of the last
replayed bar of it or its underlying), in `faults.fill_slices` executions; a limit order
fills when marketable, otherwise rests until a bar crosses it. Bars are replayed from
the bundled daily files in `examples/data/`.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import csv
import datetime as dt
import logging
import struct
import threading
import time
from collections import deque
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from kubetrader.live.testing import history as hmds
from kubetrader.live.testing import messages as msg
from kubetrader.live.testing.faults import FINAL_REJECT_CODES, REJECT_MESSAGES, PeerFaults
from kubetrader.live.testing.instruments import Field, Instrument, con_id, stock
from kubetrader.live.testing.messages import SERVER_VERSION, PeerExecution, PeerOrder

log = logging.getLogger(__name__)

__all__ = ["ACCOUNT", "ACCOUNTS", "SERVER_VERSION", "TwsPeer", "con_id"]

ACCOUNT = "DU0000001"
ACCOUNTS = (ACCOUNT, "DU0000002")  # a second account under the same login (an advisor or linked account)
MAX_MESSAGES_PER_SECOND = 50  # TWS's documented limit for incoming API messages
REALTIME_BAR_SECONDS = 5
DEFAULT_DATA_DIR = Path(__file__).resolve().parents[4] / "examples" / "data"
REPLAY_EPOCH = int(dt.datetime(2024, 1, 2, 14, 30, tzinfo=dt.UTC).timestamp())
# What TWS says right after the API starts: farm status notices (reqId -1), warnings, not errors
# (https://interactivebrokers.github.io/tws-api/message_codes.html, codes 2104/2106/2158).
FARM_NOTICES = (
    (2104, "Market data farm connection is OK:usfarm"),
    (2106, "HMDS data farm connection is OK:ushmds"),
    (2158, "Sec-def data farm connection is OK:secdefnj"),
)
CONNECTIVITY = {
    1100: "Connectivity between IB and Trader Workstation has been lost.",
    1101: "Connectivity between IB and Trader Workstation has been restored - data lost.",
    1102: "Connectivity between IB and Trader Workstation has been restored - data maintained.",
}

PlaceFault = Literal["drop_before_ack", "drop_after_ack"]
BookKey = tuple[str, int]  # (account, conId)


def replay_epoch(index: int) -> int:
    """The start (epoch s) of the `index`-th replayed 5-second bar: consecutive 5-second slots of
    the NYSE's sessions from REPLAY_EPOCH (2024-01-02 09:30 New York) on, so a runner that
    aggregates them on the exchange calendar (kubetrader.live.bars) sees session hours, as live."""
    slots = _session_slots()
    opening, first = slots[max(0, bisect.bisect_right(slots, (index, 1 << 62), key=lambda s: (s[1], 0)) - 1)]
    return opening + REALTIME_BAR_SECONDS * (index - first)


_SLOTS: list[tuple[int, int]] = []


def _session_slots() -> list[tuple[int, int]]:
    """(open epoch, index of its first slot) of every NYSE session of 2024 (early closes included): over
    a million slots, more than the longest bundled file has bars."""
    if not _SLOTS:
        import exchange_calendars

        cal = exchange_calendars.get_calendar("XNYS", start="2024-01-02", end="2024-12-31")
        first = 0
        for opening, closing in zip(cal.opens, cal.closes, strict=True):
            _SLOTS.append((int(opening.timestamp()), first))
            first += int((closing - opening).total_seconds()) // REALTIME_BAR_SECONDS
    return _SLOTS


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


def _interval_prints(bar: hmds.IntradayBar) -> list[tuple[int, float, float, float, float, float]]:
    """One intraday bar as four 5-second bars inside its own interval (as `_session_bars` does for a
    day): aggregated to the bar's size on its grid (kubetrader.live.bars) they are the bar again."""
    start = int(bar.start.timestamp())
    third = bar.seconds // 3 // REALTIME_BAR_SECONDS * REALTIME_BAR_SECONDS
    quarter = float(int(bar.volume // 4))
    o, h, low, c = bar.open, bar.high, bar.low, bar.close
    return [
        (start, o, o, o, o, bar.volume - 3 * quarter),
        (start + third, h, h, h, h, quarter),
        (start + 2 * third, low, low, low, low, quarter),
        (start + bar.seconds - REALTIME_BAR_SECONDS, c, c, c, c, quarter),
    ]


def _session_bars(bar: ReplayBar) -> list[tuple[int, float, float, float, float, float]]:
    """One daily bar as four 5-second bars inside its own NYSE session (epoch, o, h, l, c, v): the
    open at the open, the high and the low in the morning, the close in the last 5 seconds before
    the close, the volume split in whole shares; aggregated to 1d (kubetrader.live.bars) they are
    the daily bar again. Real TWS sends one every 5 seconds; an aggregator does not need them all."""
    from kubetrader.live.bars import REALTIME_SECONDS, calendar

    session = calendar().session_on(bar.date)
    if session is None:
        return []  # the file has a bar on a day the exchange calendar says it was closed: no print
    opening, closing = int(session.open.timestamp()), int(session.close.timestamp())
    quarter = float(int(bar.volume // 4))
    o, h, low, c = bar.open, bar.high, bar.low, bar.close
    return [
        (opening, o, o, o, o, bar.volume - 3 * quarter),
        (opening + 1800, h, h, h, h, quarter),
        (opening + 3600, low, low, low, low, quarter),
        (closing - REALTIME_SECONDS, c, c, c, c, quarter),
    ]


@dataclass
class PeerPosition:
    quantity: float = 0.0
    avg_cost: float = 0.0


@dataclass
class Connection:
    writer: asyncio.StreamWriter
    client_id: int = -1
    subscribed_positions: bool = False
    subscribed_account: str | None = None
    account_multi: dict[int, str] = field(default_factory=dict)  # reqId -> account
    realtime: dict[int, str] = field(default_factory=dict)  # reqId -> symbol
    recent: deque[float] = field(default_factory=deque)

    def send(self, *fields: Field) -> None:
        if not self.writer.is_closing():
            self.writer.write(msg.encode(fields))


class TwsPeer:
    """The peer. `start()` runs it on its own thread and event loop; other methods are thread-safe.

    Fault injection: `faults` (position lag, partial fills, PreSubmitted/PendingCancel
    windows, skipped/duplicated orderStatus, rejects, halts), `fail_next_place(...)`,
    `set_down(True)` (refuse connections, drop the ones open), `drop_connections()`,
    `unresponsive = True` (accept, then answer nothing), `connectivity_lost()` /
    `connectivity_restored()` (1100, then 1101/1102), `broadcast_error(code)`.
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
        faults: PeerFaults | None = None,
        dated_sessions: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.host = host
        self.port = port
        self.data_dir = data_dir
        self.bar_interval = bar_interval
        self.historical_limit = historical_limit
        # Replay each daily bar on its own date, as 5-second bars inside that day's NYSE session
        # (`_session_bars`), and answer reqHistoricalData only up to the replay's "now": a runner
        # that aggregates to 1d gets the file's daily bars back, on their dates, after the history.
        self.dated_sessions = dated_sessions
        # The clock of the pacing rules (a test may share a fake one with the client's Pacer). An
        # intraday symbol (history.INTRADAY) is always replayed on its own dated bars.
        self.clock = clock
        self._historical_recent: dict[tuple[str, ...], float] = {}  # identical requests (pacing)
        self._historical_by_contract: dict[str, deque[float]] = {}
        self.faults = faults or PeerFaults()
        self.unresponsive = False
        self.lost = False  # 1100: TWS has no connection to IB; orders are held, not transmitted
        self._generation = 0  # bumped by reset(): timers of an earlier book never touch the new one
        self._lock = threading.RLock()
        self._cash = cash
        self._realized = 0.0
        self._bars: dict[str, list[ReplayBar] | list[hmds.IntradayBar]] = {}
        self._cursor: dict[str, int] = dict(replay_start or {})
        self._price_override: dict[str, float] = {}  # set_price: a print that moves the market
        self._instruments: dict[int, Instrument] = {}
        self._orders: list[PeerOrder] = []
        self._executions: list[PeerExecution] = []
        self._positions: dict[BookKey, PeerPosition] = {}
        self._reported: dict[BookKey, PeerPosition] = {}  # what position reports say (lags the truth)
        self._connections: list[Connection] = []
        self._streams: dict[str, asyncio.Task[None]] = {}
        self._historical_times: deque[float] = deque()
        self._next_order_id = 1
        self._next_perm_id = 1_000_000
        self._next_exec = 1
        self._fault: PlaceFault | None = None
        self.place_orders_received: list[tuple[int, int, str]] = []  # (clientId, orderId, orderRef)
        self.modifications: list[tuple[str, float]] = []  # (orderRef, new size) of accepted modifications
        self.pacing_violations = 0
        self.historical_requests = 0
        self.historical_log: list[tuple[str, str, str, str]] = []  # (symbol, end, duration, bar size) answered
        self.refused_historical: list[tuple[str, str, int]] = []  # (bar size, duration, error code)
        self.unknown_messages: list[str] = []
        # Called under the lock after every step that may change the books (a message handled, a
        # timer, a replayed bar): a test's invariant checked at every moment the peer can be seen in.
        self.watchers: list[Callable[[], None]] = []
        # The first bar streamed for a symbol misses its first `mid_bar_join` 5-second prints, as a
        # subscription made in the middle of a bar does (reqRealTimeBars starts with the next 5 s).
        self.mid_bar_join = 0
        self._stepping = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> TwsPeer:
        _session_slots()  # here, not on the peer's loop: the calendar takes a moment to build
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

    def _call(self, coro: Coroutine[Any, Any, None]) -> None:
        assert self._loop is not None, "peer not started"
        asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)

    def _later(self, delay: float, action: Callable[[], None]) -> None:
        """Run `action` under the lock on the peer's loop after `delay` s (the peer's timers)."""
        assert self._loop is not None
        generation = self._generation

        def run() -> None:
            with self._lock:
                if generation != self._generation:
                    return  # scheduled before a reset(): it belongs to another day's books
                with self._step():
                    action()
            for conn in list(self._connections):
                if not conn.writer.is_closing():
                    with contextlib.suppress(RuntimeError):  # the loop closed under a stopping peer
                        self._loop.create_task(conn.writer.drain())  # type: ignore[union-attr]

        if delay <= 0 and threading.current_thread() is self._thread:
            run()
        else:
            self._loop.call_soon_threadsafe(lambda: self._loop.call_later(max(0.0, delay), run))  # type: ignore[union-attr]

    # ---------------------------------------------------------------- instruments

    def add_instrument(self, instrument: Instrument) -> Instrument:
        with self._lock:
            self._instruments[instrument.con_id] = instrument
            return instrument

    def _find_instrument(self, block: list[str]) -> Instrument | None:
        """The instrument a client's 12-field contract block names (conId first), or None."""
        for instrument in self._instruments.values():
            if instrument.matches(block):
                return instrument
        symbol, sec_type = block[1], block[2] or "STK"
        by_symbol = not block[0] or block[0] == "0" or int(block[0]) == con_id(symbol)
        if sec_type == "STK" and by_symbol and self._symbol_bars(symbol):
            return self.add_instrument(stock(symbol))
        return None

    def _stock(self, symbol: str) -> Instrument:
        return self._instruments.get(con_id(symbol)) or self.add_instrument(stock(symbol))

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
                conn.send(*msg.error(-1, code, message or CONNECTIVITY.get(code, f"status {code}")))
                await conn.writer.drain()

        self._call(apply())

    def connectivity_lost(self) -> None:
        """1100: TWS lost IB. Orders placed now are accepted by TWS and held, not transmitted;
        existing orders do not fill; bars stop (the IB docs: "the ability to log in or manage
        orders may be disrupted")."""
        with self._lock:
            self.lost = True
        self.broadcast_error(1100)

    def connectivity_restored(self, *, data_lost: bool = False) -> None:
        """1102 (data maintained) or 1101 (data lost: subscriptions must be made again); held orders go out."""
        with self._lock:
            self.lost = False
        self.broadcast_error(1101 if data_lost else 1102)

        def release() -> None:
            for order in self._orders:
                if order.is_open and order.held and not order.cancel_pending:
                    self._work(order)
                elif order.is_open and not order.held:
                    self._try_fill(order)  # a fill the outage interrupted resumes

        self._later(0, release)

    def halt(self, symbol: str, halted: bool = True) -> None:
        """A trading halt on `symbol`: no bars, orders rest. Lifting it lets resting orders fill."""
        with self._lock:
            if halted:
                self.faults.halted.add(symbol)
                return
            self.faults.halted.discard(symbol)

        def resume() -> None:
            for order in self._orders:
                if order.is_open and order.instrument.bar_symbol == symbol and not order.held:
                    self._try_fill(order)

        self._later(0, resume)

    # ---------------------------------------------------------------- state for assertions

    def open_orders(self) -> list[PeerOrder]:
        with self._lock:
            return [o for o in self._orders if o.is_open]

    def orders(self) -> list[PeerOrder]:
        with self._lock:
            return list(self._orders)

    def executions(self) -> list[PeerExecution]:
        with self._lock:
            return list(self._executions)

    def positions(self, account: str = ACCOUNT) -> dict[str, float]:
        """The TRUE positions of `account` (not the lagged reports), by symbol (local symbol for derivatives)."""
        with self._lock:
            out: dict[str, float] = {}
            for (acct, cid), pos in self._positions.items():
                if acct == account and pos.quantity:
                    instrument = self._instruments[cid]
                    out[instrument.symbol if instrument.sec_type == "STK" else instrument.local] = pos.quantity
            return out

    def holdings(self) -> dict[BookKey, float]:
        """Every non-zero true position of every account, by (account, conId)."""
        with self._lock:
            return {k: p.quantity for k, p in self._positions.items() if p.quantity}

    def client_ids(self) -> list[int]:
        with self._lock:
            return [c.client_id for c in self._connections if c.client_id >= 0]

    def set_price(self, symbol: str, price: float | None) -> None:
        """Trade `symbol` at `price` from now on (None: back to the replay), and let resting orders
        (limits, stops) react to it at once, as they would to a print at the exchange."""
        with self._lock:
            if price is None:
                self._price_override.pop(symbol, None)
            else:
                self._price_override[symbol] = price

        def trade() -> None:
            for order in self._orders:
                if order.is_open and order.instrument.bar_symbol == symbol:
                    self._try_fill(order)

        self._later(0, trade)

    def price(self, symbol: str) -> float:
        with self._lock:
            if symbol in self._price_override:
                return self._price_override[symbol]
            bars = self._symbol_bars(symbol)
            return bars[min(self._cursor.get(symbol, 0), len(bars) - 1)].close

    def instrument_price(self, instrument: Instrument) -> float:
        if instrument.fixed_price is not None:
            return instrument.fixed_price
        return round(max(0.01, self.price(instrument.bar_symbol) * instrument.price_scale), 2)

    def seed_position(
        self, symbol: str | Instrument, quantity: float, avg_cost: float | None = None, *, account: str = ACCOUNT
    ) -> Instrument:
        """Start with a position, as if an earlier session had left one (reported at once)."""
        with self._lock:
            instrument = self.add_instrument(symbol) if isinstance(symbol, Instrument) else self._stock(symbol)
            price = self.instrument_price(instrument) if avg_cost is None else avg_cost
            key = (account, instrument.con_id)
            self._positions[key] = PeerPosition(quantity, price * instrument.contract_multiplier)
            self._reported[key] = PeerPosition(quantity, price * instrument.contract_multiplier)
            self._cash -= quantity * price * instrument.contract_multiplier
            return instrument

    def seed_order(
        self,
        symbol: str | Instrument,
        action: str,
        quantity: float,
        limit: float,
        *,
        client_id: int = 5,
        order_ref: str = "",
        account: str = ACCOUNT,
    ) -> PeerOrder:
        """A resting limit order of another client (its owner is gone), as an earlier session left it."""
        with self._lock:
            instrument = self.add_instrument(symbol) if isinstance(symbol, Instrument) else self._stock(symbol)
            order = PeerOrder(
                self._next_order_id, client_id, self._next_perm_id, instrument, action, quantity, "LMT", limit,
                "DAY", order_ref or f"seed-{self._next_order_id}", account,
            )  # fmt: skip
            self._next_order_id += 1
            self._next_perm_id += 1
            self._orders.append(order)
            return order

    def reset(self, faults: PeerFaults | None = None) -> None:
        """Forget every order, execution and position (a new day in a new account); drop clients."""
        self.drop_connections()
        with self._lock:
            self._generation += 1
            self._orders.clear()
            self._executions.clear()
            self._positions.clear()
            self._reported.clear()
            self.place_orders_received.clear()
            self.modifications.clear()
            self.faults = faults or PeerFaults()
            self.lost = False
            self.unresponsive = False

    # ---------------------------------------------------------------- connection handling

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = Connection(writer)
        self._connections.append(conn)
        try:
            prefix = await reader.readexactly(4)
            if prefix != b"API\0":
                return
            (size,) = struct.unpack(">I", await reader.readexactly(4))
            offered = (await reader.readexactly(size)).decode()  # "v157..176"
            low, _, high = offered.lstrip("v").partition("..")
            if not (int(low) <= SERVER_VERSION <= int(high or low)):
                return  # TWS closes the socket on a version it cannot speak
            now = dt.datetime.now(dt.UTC).strftime("%Y%m%d %H:%M:%S UTC")
            conn.send(SERVER_VERSION, now)
            while True:
                (size,) = struct.unpack(">I", await reader.readexactly(4))
                fields = (await reader.readexactly(size)).decode().split("\0")[:-1]
                if self.unresponsive:
                    continue
                if self._over_pace(conn):
                    # TWS refuses messages past 50 a second with error 100 (and may disconnect):
                    # https://interactivebrokers.github.io/tws-api/message_codes.html (100:
                    # "Max rate of messages per second has been exceeded.")
                    conn.send(*msg.error(-1, 100, "Max rate of messages per second has been exceeded."))
                    await writer.drain()
                    continue
                with self._lock, self._step():
                    keep_open = self._handle(conn, fields)
                await writer.drain()
                if not keep_open:
                    break
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            pass
        finally:
            with contextlib.suppress(ValueError):
                self._connections.remove(conn)
            writer.close()

    def _over_pace(self, conn: Connection) -> bool:
        now = time.monotonic()
        conn.recent.append(now)
        while conn.recent and now - conn.recent[0] > 1.0:
            conn.recent.popleft()
        if len(conn.recent) > MAX_MESSAGES_PER_SECOND:
            self.pacing_violations += 1
            conn.recent.pop()  # a refused message does not count
            return True
        return False

    @contextlib.contextmanager
    def _step(self) -> Iterator[None]:
        """One step of the peer (a message, a timer, a bar), the watchers called once at its end: a
        timer run at once inside another step (`_later(0, ...)`) is part of that step."""
        if self._stepping:
            yield
            return
        self._stepping = True
        try:
            yield
        finally:
            self._stepping = False
        for watcher in self.watchers:
            watcher()

    def _error(self, conn: Connection, req_id: int, code: int, message: str) -> None:
        conn.send(*msg.error(req_id, code, message))

    def _handle(self, conn: Connection, f: list[str]) -> bool:
        """Answer one client message; False closes the connection."""
        msg_id = int(f[0])
        if msg_id == 71:  # startApi: version, clientId, optionalCapabilities
            client_id = int(f[2])
            if client_id in self.client_ids():
                self._error(conn, -1, 326, f"Unable to connect as the client id {client_id} is already in use.")
                return False
            conn.client_id = client_id
            conn.send(15, 1, ",".join(ACCOUNTS))
            conn.send(9, 1, self._next_order_id)
            for code, text in FARM_NOTICES:
                self._error(conn, -1, code, text)
            if self.lost:
                self._error(conn, -1, 1100, CONNECTIVITY[1100])
        elif msg_id == 49:
            conn.send(49, 1, int(time.time()))
        elif msg_id == 8:
            conn.send(9, 1, self._next_order_id)
        elif msg_id == 61:  # reqPositions: answered from the (lagging) reports, every account
            conn.subscribed_positions = True
            for (account, cid), pos in self._reported.items():
                conn.send(*msg.position(account, self._instruments[cid], pos.quantity, pos.avg_cost))
            conn.send(62, 1)
        elif msg_id == 64:
            conn.subscribed_positions = False
        elif msg_id == 6:  # reqAccountUpdates: version, subscribe, account
            conn.subscribed_account = (f[3] or ACCOUNT) if f[2] == "1" else None
            if conn.subscribed_account:
                self._send_account(conn)
                conn.send(54, 1, conn.subscribed_account)
        elif msg_id == 76:  # reqAccountUpdatesMulti: version, reqId, account, modelCode, ledgerAndNLV
            req_id = int(f[2])
            conn.account_multi[req_id] = f[3] or ACCOUNT
            for key, value in self._account_values().items():
                conn.send(73, 1, req_id, conn.account_multi[req_id], "", key, f"{value:.2f}", "USD")
            conn.send(74, 1, req_id)
        elif msg_id in (5, 16):  # reqOpenOrders (this client) / reqAllOpenOrders
            for order in self._orders:
                if order.is_open and (msg_id == 16 or order.client_id == conn.client_id):
                    conn.send(*msg.open_order(order))
            conn.send(53, 1)
        elif msg_id == 99:
            for order in self._orders:
                if not order.is_open:
                    conn.send(*msg.completed_order(order))
            conn.send(102)
        elif msg_id == 7:  # reqExecutions: version, reqId, clientId, acct, time, symbol, secType, exch, side
            req_id = int(f[2])
            symbol = f[6]
            for execution in self._executions:
                if not symbol or execution.order.instrument.symbol == symbol:
                    conn.send(*msg.execution(req_id, execution))
                    conn.send(*msg.commission_report(execution))
            conn.send(55, 1, req_id)
        elif msg_id == 9:  # reqContractDetails: version, reqId, contract (12)...
            instrument = self._find_instrument(f[3:15])
            if instrument is None:
                self._error(conn, int(f[2]), 200, "No security definition has been found for the request")
            else:
                conn.send(*msg.contract_details(int(f[2]), instrument))
                conn.send(52, 1, int(f[2]))
        elif msg_id == 3:
            return self._place_order(conn, f)
        elif msg_id == 4:  # cancelOrder: version, orderId, manualCancelOrderTime (169+)
            self._cancel(conn, int(f[2]))
        elif msg_id == 58:  # reqGlobalCancel: every open order of every client
            for order in self._orders:
                if order.is_open:
                    self._request_cancel(order)
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
        ref = f[26]
        self.place_orders_received.append((conn.client_id, order_id, ref))
        existing = next((o for o in self._orders if o.order_id == order_id and o.client_id == conn.client_id), None)
        if existing is not None:
            self._modify(conn, existing, f)
            return True
        instrument = self._find_instrument(f[2:14])
        if instrument is None:
            self._error(conn, order_id, 200, "No security definition has been found for the request")
            return True
        if not f[9]:
            # an order needs its exchange even when the conId names the contract: TWS answers
            # "321 Error validating request.-'bF' : cause - Missing order exchange." and drops it
            # (reported against a real gateway: StrateQueue/StrateQueue#20, ranaroussi/qtpylib#50)
            self._error(conn, order_id, 321, "Error validating request.-'bF' : cause - Missing order exchange.")
            return True
        account = f[23] or ACCOUNT
        if account not in ACCOUNTS:
            self._error(conn, order_id, 321, f"Error validating request:-'bw' : cause - Invalid account {account}")
            return True
        order = PeerOrder(
            order_id=order_id,
            client_id=conn.client_id,
            perm_id=self._next_perm_id,
            instrument=instrument,
            action=f[16],
            quantity=float(f[17]),
            order_type=f[18],
            limit_price=float(f[19]) if f[19] else None,
            tif=f[21] or "DAY",
            order_ref=ref,
            account=account,
            exchange=f[9],
            status="PreSubmitted",
            held=True,
            aux_price=float(f[20]) if f[20] else None,
            oca_group=f[22],
            transmit=f[27] != "0",
            parent_id=int(f[28] or 0),
            oca_type=int(f[47] or 0) if len(f) > 47 else 0,
        )
        self._next_perm_id += 1
        self._next_order_id = max(self._next_order_id, order_id + 1)
        self._orders.append(order)
        fault, self._fault = self._fault, None
        if fault == "drop_before_ack":
            conn.writer.close()
            self._work(order)
            return False
        rule = self.faults.reject_for(instrument.con_id, instrument.symbol, order.action)
        if rule is not None:
            self._error(conn, order_id, rule.code, rule.message or REJECT_MESSAGES.get(rule.code, f"code {rule.code}"))
            if rule.code in FINAL_REJECT_CODES:
                # a rejected order ends Inactive ("received by the system but no longer active because
                # it was rejected or cancelled": IB's orderStatus documentation)
                order.status = "Inactive"
                order.completed_time = _now_text()
                self._notify_order(order)
                return True
            if rule.code == 404:
                self._notify_order(order)
                self._later(self.faults.locate_delay, lambda: self._work(order))
                return True
        self._notify_order(order)  # openOrder + PreSubmitted
        if not order.transmit:
            return True  # held at TWS, not transmitted, until a transmitted order of its bracket comes
        if order.parent_id:
            self._transmit_bracket(order)
            return True
        if fault == "drop_after_ack":
            self._work(order)
            conn.writer.close()
            return False
        if self.lost:
            return True  # held at TWS until connectivity returns
        if self.faults.presubmit_window > 0:
            self._later(self.faults.presubmit_window, lambda: self._work(order))
        else:
            self._work(order)
        return True

    def _modify(self, conn: Connection, order: PeerOrder, f: list[str]) -> None:
        """placeOrder with the id of an order of this client: a modification (IB "Modifying Orders":
        the same fields and orderId as the open order, except those to change; size, price and tif
        are what may change, https://interactivebrokers.github.io/tws-api/modifying_orders.html).
        A done order cannot be modified: 104 for a filled one, 103 (duplicate id) for the rest; a
        different contract or side is 105 (https://interactivebrokers.github.io/tws-api/message_codes.html).
        A size below what has filled is refused (TWS would not shrink an order under its fills)."""
        if not order.is_open:
            if order.status == "Filled":
                self._error(conn, order.order_id, 104, "Can't modify a filled order")
            else:
                self._error(conn, order.order_id, 103, "Duplicate order id")
            return
        instrument = self._find_instrument(f[2:14])
        same = instrument is not None and instrument.con_id == order.con_id
        if not same or f[16] != order.action or f[18] != order.order_type:
            self._error(conn, order.order_id, 105, "Order being modified does not match original order")
            return
        quantity = float(f[17])
        if quantity < order.filled:
            self._error(conn, order.order_id, 10147, f"OrderId {order.order_id}: size {quantity:g} is below "
                        f"the filled {order.filled:g}")  # fmt: skip
            return
        order.quantity = quantity
        order.limit_price = float(f[19]) if f[19] else None
        order.aux_price = float(f[20]) if f[20] else None
        order.tif = f[21] or order.tif
        self.modifications.append((order.order_ref, quantity))
        self._notify_order(order)  # openOrder + orderStatus with the new size

    def _parent(self, order: PeerOrder) -> PeerOrder | None:
        for parent in self._orders:
            if parent.order_id == order.parent_id and parent.client_id == order.client_id:
                return parent
        return None

    def _children(self, order: PeerOrder) -> list[PeerOrder]:
        return [o for o in self._orders if o.parent_id == order.order_id and o.client_id == order.client_id]

    def _transmit_bracket(self, child: PeerOrder) -> None:
        """A transmitted child sends its whole bracket: the held parent and the held siblings (IB's
        "Bracket Orders": the last child's transmit=True transmits the parent and the rest)."""
        parent = self._parent(child)
        if parent is None:
            return  # TWS would reject a child of an unknown parent; ib_insync never sends one
        for order in [parent, *self._children(parent)]:
            order.transmit = True
        if parent.is_open and parent.held:
            if self.faults.presubmit_window > 0:
                self._later(self.faults.presubmit_window, lambda: self._work(parent))
            else:
                self._work(parent)
        elif parent.status == "Filled":
            self._work(child)

    def _work(self, order: PeerOrder) -> None:
        """The order reaches the exchange: Submitted, and fills if it can.

        Not while untransmitted (transmit=False), and a child only once its parent has filled
        ("attached orders ... are activated when the parent order fills"): until then it stays
        PreSubmitted at TWS, and it is cancelled with its parent.
        """
        if not order.is_open or order.cancel_pending or self.lost or not order.transmit:
            return
        if order.parent_id:
            parent = self._parent(order)
            if parent is not None and (parent.is_open or parent.filled <= 0):
                return
        order.held = False
        order.status = "Submitted"
        self._notify_status(order)
        self._try_fill(order)

    def _owner(self, order: PeerOrder) -> Connection | None:
        for conn in self._connections:
            if conn.client_id == order.client_id and not conn.writer.is_closing():
                return conn
        return None

    def _notify_order(self, order: PeerOrder) -> None:
        owner = self._owner(order)
        if owner is None:
            return
        owner.send(*msg.open_order(order))
        self._notify_status(order, owner)

    def _notify_status(self, order: PeerOrder, owner: Connection | None = None) -> None:
        owner = owner or self._owner(order)
        if owner is None:
            return
        for _ in range(1 + self.faults.duplicate_status):
            owner.send(*msg.order_status(order))

    def _blocked(self, order: PeerOrder) -> bool:
        """OCA "with block" (ocaType 1 and 2: "overfill protection - only one order routed at a time"):
        while another order of the group is filling (slices still to come), this one waits; ocaType 3
        ("without block") does not, so its orders may overfill (https://interactivebrokers.github.io/tws-api/oca.html)."""
        if not order.oca_group:
            return False
        return any(
            other is not order and other.oca_group == order.oca_group and other.account == order.account
            and other.is_open and other.slices_left > 0 and other.oca_type in (1, 2)
            for other in self._orders
        )  # fmt: skip

    def _unblock(self, order: PeerOrder) -> None:
        """`order` has stopped filling: the orders of its group it blocked may fill now (at the price now)."""
        if not order.oca_group or order.oca_type not in (1, 2):
            return
        for other in self._orders:
            if other is not order and other.oca_group == order.oca_group and other.is_open:
                self._try_fill(other)

    def _try_fill(self, order: PeerOrder) -> None:
        if not order.is_open or order.held or self.lost or order.slices_left or self._blocked(order):
            return
        if order.instrument.bar_symbol in self.faults.halted:
            return  # a halted symbol trades nothing: market orders rest too
        price = self.instrument_price(order.instrument)
        if order.order_type == "LMT" and order.limit_price is not None:
            marketable = price <= order.limit_price if order.action == "BUY" else price >= order.limit_price
            if not marketable:
                return
        elif order.order_type == "STP" and order.aux_price is not None:
            # a stop becomes a market order once the price trades through it (IB's STP)
            triggered = price >= order.aux_price if order.action == "BUY" else price <= order.aux_price
            if not triggered:
                return
        elif order.order_type != "MKT":
            return
        slices = max(1, self.faults.fill_slices)
        order.slices_left = slices
        self._fill_slice(order, price)

    def _fill_slice(self, order: PeerOrder, price: float) -> None:
        if not order.is_open or self.lost:
            order.slices_left = 0
            self._unblock(order)
            return
        slices = order.slices_left
        shares = order.remaining if slices <= 1 else max(1.0, float(int(order.remaining / slices)))
        shares = min(shares, order.remaining)
        order.slices_left -= 1
        self._execute(order, shares, price)
        if order.remaining > 0 and order.slices_left > 0:
            interval = self.faults.fill_interval
            self._later(interval, lambda: self._fill_slice(order, self.instrument_price(order.instrument)))
        else:
            order.slices_left = 0
            self._unblock(order)

    def _execute(self, order: PeerOrder, shares: float, price: float) -> None:
        instrument = order.instrument
        mult = instrument.contract_multiplier
        signed = shares if order.action == "BUY" else -shares
        commission = round(min(max(1.0, 0.005 * shares), 0.01 * shares * price * mult), 4)
        key = (order.account, instrument.con_id)
        pos = self._positions.setdefault(key, PeerPosition())
        realized = 0.0
        unit_cost = pos.avg_cost / mult if mult else pos.avg_cost
        if pos.quantity and (pos.quantity > 0) != (signed > 0):
            closed = min(abs(signed), abs(pos.quantity))
            realized = closed * (price - unit_cost) * (1 if pos.quantity > 0 else -1) * mult
        new_qty = pos.quantity + signed
        if new_qty == 0:
            pos.avg_cost = 0.0
        elif pos.quantity == 0 or (pos.quantity > 0) != (new_qty > 0):
            pos.avg_cost = price * mult
        elif abs(new_qty) > abs(pos.quantity):
            pos.avg_cost = (pos.avg_cost * pos.quantity + price * mult * signed) / new_qty
        pos.quantity = new_qty
        self._cash -= signed * price * mult + commission
        self._realized += realized - commission
        order.avg_fill_price = (order.avg_fill_price * order.filled + price * shares) / (order.filled + shares)
        order.filled += shares
        if order.remaining <= 0:
            order.status = "Filled"
            order.completed_time = _now_text()
        self._one_cancels_all(order, shares)
        execution = PeerExecution(
            exec_id=f"0000e{self._next_exec:08d}.01",
            order=order,
            shares=shares,
            price=price,
            cum_qty=order.filled,
            epoch=int(time.time()),
            commission=commission,
            realized_pnl=realized,
        )
        self._next_exec += 1
        self._executions.append(execution)
        owner = self._owner(order)
        if owner is not None:
            owner.send(*msg.execution(-1, execution))
            owner.send(*msg.commission_report(execution))
            if not (self.faults.skip_fill_status and order.status == "Filled"):
                self._notify_status(order, owner)
                owner.send(*msg.open_order(order))
        snapshot = PeerPosition(pos.quantity, pos.avg_cost)
        self._later(self.faults.position_lag, lambda: self._report_position(key, snapshot))
        if order.status == "Filled":
            self._later(0, lambda: self._activate_children(order))
        for conn in self._connections:
            if conn.subscribed_account or conn.account_multi:
                self._send_account(conn)

    def _activate_children(self, parent: PeerOrder) -> None:
        """The parent filled: its attached orders go to work."""
        for child in self._children(parent):
            self._work(child)

    def _one_cancels_all(self, order: PeerOrder, shares: float) -> None:
        """A fill in an OCA group: ocaType 1 cancels the other orders of the group, 2 and 3 reduce
        them by the filled size (https://interactivebrokers.github.io/tws-api/oca.html)."""
        if not order.oca_group:
            return
        for other in self._orders:
            if other is order or other.oca_group != order.oca_group or other.account != order.account:
                continue
            if not other.is_open:
                continue
            if order.oca_type in (2, 3):
                other.quantity = max(other.filled, other.quantity - shares)
                if other.remaining > 0:
                    self._notify_status(other)
                    continue
            self._set_cancelled(other)

    def _report_position(self, key: BookKey, pos: PeerPosition) -> None:
        """Position reports catch up with the truth, `faults.position_lag` after the execution."""
        self._reported[key] = pos
        for conn in self._connections:
            if conn.subscribed_positions:
                conn.send(*msg.position(key[0], self._instruments[key[1]], pos.quantity, pos.avg_cost))

    def _cancel(self, conn: Connection, order_id: int) -> None:
        for order in self._orders:
            if order.order_id == order_id and order.client_id == conn.client_id:
                if order.is_open and not order.cancel_pending:
                    self._request_cancel(order)
                elif not order.is_open:
                    self._error(conn, order_id, 10148, f"OrderId {order_id} that needs to be cancelled cannot be "
                                f"cancelled, state: {order.status}.")  # fmt: skip
                return
        self._error(conn, order_id, 135, f"Can't find order with id = {order_id}")

    def _request_cancel(self, order: PeerOrder) -> None:
        """PendingCancel for `faults.cancel_window` s (a fill can still happen), then Cancelled."""
        if order.cancel_pending:
            return
        window = self.faults.cancel_window
        if window <= 0 and not self.lost:
            self._set_cancelled(order)
            return
        order.cancel_pending = True
        order.status = "PendingCancel"
        self._notify_status(order)
        self._later(window, lambda: self._finish_cancel(order))

    def _finish_cancel(self, order: PeerOrder) -> None:
        if self.lost:  # the cancel is not transmitted either; it goes out when IB is back
            self._later(0.05, lambda: self._finish_cancel(order))
            return
        if order.is_open:
            self._set_cancelled(order)

    def _set_cancelled(self, order: PeerOrder) -> None:
        was_filling = order.slices_left > 0
        order.status = "Cancelled"
        order.cancel_pending = False
        order.slices_left = 0
        if was_filling:
            self._unblock(order)
        order.completed_time = _now_text()
        owner = self._owner(order)
        if owner is not None:
            self._notify_status(order, owner)
            self._error(owner, order.order_id, 202, "Order Canceled - reason:")
        for child in self._children(order):
            if not child.is_open:
                continue
            if order.filled <= 0:
                self._set_cancelled(child)  # an entry cancelled before any fill takes its bracket with it
            else:  # partly filled, then cancelled: the children protect what was filled
                child.quantity = order.filled
                self._work(child)

    # ---------------------------------------------------------------- market data

    def _symbol_bars(self, symbol: str) -> list[ReplayBar] | list[hmds.IntradayBar]:
        if symbol not in self._bars:
            if symbol in hmds.INTRADAY:
                self._bars[symbol] = hmds.load_intraday_bars(symbol)
            else:
                self._bars[symbol] = load_daily_bars(symbol, self.data_dir) if symbol else []
        return self._bars[symbol]

    def _ensure_stream(self, symbol: str) -> None:
        if symbol not in self._streams and self._symbol_bars(symbol):
            assert self._loop is not None
            self._streams[symbol] = self._loop.create_task(self._stream(symbol))

    async def _stream(self, symbol: str) -> None:
        """Advance the replay of `symbol` one bar per `bar_interval` and publish it as a 5-second bar."""
        bars = self._symbol_bars(symbol)
        first = True
        while True:
            await asyncio.sleep(self.bar_interval)
            with self._lock, self._step():
                if self.lost or symbol in self.faults.halted:
                    continue  # no bars from a halted symbol, nor while TWS has lost IB
                index = self._cursor.get(symbol, 0) + 1
                if index >= len(bars):
                    return
                self._cursor[symbol] = index
                bar = bars[index]
                for order in self._orders:
                    if order.instrument.bar_symbol == symbol and order.is_open:
                        self._try_fill(order)
                if isinstance(bar, hmds.IntradayBar):
                    prints = _interval_prints(bar)
                elif self.dated_sessions:
                    prints = _session_bars(bar)
                else:
                    prints = [(replay_epoch(index), bar.open, bar.high, bar.low, bar.close, bar.volume)]
                if first:
                    prints, first = prints[self.mid_bar_join :], False
                pinned = self._price_override.get(symbol)
                if pinned is not None:
                    # The market trades at the set price: its bars print there too, or a client would
                    # take a reference price (a stop's level) from a replay the fills no longer follow.
                    prints = [(epoch, pinned, pinned, pinned, pinned, v) for epoch, _o, _h, _l, _c, v in prints]
                for epoch, o, h, low, c, v in prints:
                    wap = (h + low + c) / 3
                    for conn in self._connections:
                        for req_id, sub_symbol in conn.realtime.items():
                            if sub_symbol == symbol:
                                conn.send(50, 3, req_id, epoch, o, h, low, c, v, wap, 1)

    def _historical(self, conn: Connection, f: list[str]) -> None:
        # reqHistoricalData: 20, reqId, contract(12), includeExpired, end, barSize, duration, useRTH, what, fmt, ...
        req_id, symbol, end_text, bar_size, duration = int(f[1]), f[3], f[15], f[16], f[17]
        refusal = hmds.check_request(bar_size, duration)
        if refusal is not None:  # IB validates the request before it counts it for pacing
            self.refused_historical.append((bar_size, duration, refusal.code))
            self._error(conn, req_id, refusal.code, refusal.message)
            return
        if self._historical_paced(symbol, tuple(f[2:18])):
            self.refused_historical.append((bar_size, duration, 162))
            self._error(conn, req_id, 162, hmds.PACING_VIOLATION)
            return
        self.historical_requests += 1
        self.historical_log.append((symbol, end_text, duration, bar_size))
        bars = self._symbol_bars(symbol)
        if bars and isinstance(bars[0], hmds.IntradayBar):
            self._intraday_historical(conn, req_id, symbol, end_text, duration, bar_size)
            return
        if bar_size != "1 day" or not bars:
            self._error(conn, req_id, 162, hmds.NO_DATA)
            return
        end = dt.datetime.strptime(end_text[:8], "%Y%m%d").date() if end_text else bars[-1].date
        if self.dated_sessions:  # no bar from the replay's future: "now" is the bar it replayed last
            end = min(end, bars[min(self._cursor.get(symbol, 0), len(bars) - 1)].date)
        days = max(1, (hmds.duration_seconds(duration) or 0) // hmds.DAY)
        start = end - dt.timedelta(days=days)
        chosen = [b for b in bars if start < b.date <= end]
        fields: list[Field] = [17, req_id, start.strftime("%Y%m%d"), end.strftime("%Y%m%d"), len(chosen)]
        for b in chosen:
            wap = (b.high + b.low + b.close) / 3
            fields += [b.date.strftime("%Y%m%d"), b.open, b.high, b.low, b.close, b.volume, wap, 1]
        conn.send(*fields)

    def _intraday_historical(
        self, conn: Connection, req_id: int, symbol: str, end_text: str, duration: str, bar_size: str
    ) -> None:
        """An intraday symbol's bars (history.intraday_answer), up to the replay's "now": the end of
        the bar it replayed last. Dates as "yyyymmdd hh:mm:ss UTC" (formatDate 1 with a zone)."""
        bars = self._symbol_bars(symbol)
        assert isinstance(bars[0], hmds.IntradayBar)
        last = bars[min(self._cursor.get(symbol, 0), len(bars) - 1)]
        assert isinstance(last, hmds.IntradayBar)
        now = last.start + dt.timedelta(seconds=last.seconds)
        chosen = hmds.intraday_answer(bars, bar_size, hmds.parse_end(end_text), duration, now)
        if not chosen:
            self._error(conn, req_id, 162, hmds.NO_DATA)
            return
        stamp = "%Y%m%d %H:%M:%S UTC"
        fields: list[Field] = [17, req_id, chosen[0].start.strftime(stamp), now.strftime(stamp), len(chosen)]
        for b in chosen:
            wap = (b.high + b.low + b.close) / 3
            fields += [b.start.strftime(stamp), b.open, b.high, b.low, b.close, b.volume, wap, 1]
        conn.send(*fields)

    def pacing_windows_pass(self) -> None:
        """Forget the historical requests made so far, as if IB's pacing windows had all gone by."""
        with self._lock:
            self._historical_times.clear()
            self._historical_recent.clear()
            self._historical_by_contract.clear()

    def _historical_paced(self, symbol: str, request: tuple[str, ...]) -> bool:
        """IB's pacing rules for historical data (https://interactivebrokers.github.io/tws-api/historical_limitations.html):
        a violation is "making identical historical data requests within 15 seconds", "making six
        or more historical data requests for the same Contract, Exchange and Tick Type within two
        seconds", or "making more than 60 requests within any ten minute period"
        (`historical_limit`). A refused request counts for none of them."""
        now = self.clock()
        limit, window = self.historical_limit
        while self._historical_times and now - self._historical_times[0] > window:
            self._historical_times.popleft()
        recent = self._historical_by_contract.setdefault(symbol, deque())
        while recent and now - recent[0] > 2.0:
            recent.popleft()
        last = self._historical_recent.get(request)
        if len(self._historical_times) >= limit or len(recent) >= 5 or (last is not None and now - last < 15.0):
            return True
        self._historical_times.append(now)
        recent.append(now)
        self._historical_recent[request] = now
        return False

    # ---------------------------------------------------------------- account messages

    def _account_values(self) -> dict[str, float]:
        market = 0.0
        unrealized = 0.0
        for (account, cid), pos in self._positions.items():
            if pos.quantity and account == ACCOUNT:
                instrument = self._instruments[cid]
                value = pos.quantity * self.instrument_price(instrument) * instrument.contract_multiplier
                market += value
                unrealized += value - pos.quantity * pos.avg_cost
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
                conn.send(6, 2, key, f"{value:.2f}", "USD", conn.subscribed_account)
            for (account, cid), pos in self._positions.items():
                if account == conn.subscribed_account:
                    instrument = self._instruments[cid]
                    price = self.instrument_price(instrument)
                    conn.send(*msg.portfolio(account, instrument, pos.quantity, price, pos.avg_cost))
            conn.send(8, 1, dt.datetime.now(dt.UTC).strftime("%H:%M"))
        for req_id, account in conn.account_multi.items():
            for key, value in values.items():
                conn.send(73, 1, req_id, account, "", key, f"{value:.2f}", "USD")


def _now_text() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y%m%d %H:%M:%S UTC")
