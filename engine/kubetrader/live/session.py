"""A trading session: one broker connection, the journal and the risk limits, wired together.

The runner (Backtrader), the HTTP endpoint and the stop commands all go through this
one object, so they share one path for orders: risk check -> journal the intent ->
send -> fold broker updates back into the journal. It is single-threaded on purpose
(ib_insync's loop runs in the thread that calls `pump`); other threads only read
`snapshot()` and post to `commands`.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kubetrader.live.broker import (
    Bar,
    BarUpdate,
    Broker,
    BrokerEvent,
    BrokerOrder,
    BrokerUnavailableError,
    ConnectionUpdate,
    EndOfBars,
    Fill,
    FillUpdate,
    OrderRejectedError,
    OrderRequest,
    OrderUpdate,
    Position,
    find_by_ref,
)
from kubetrader.live.connection import HealthCheck, RetryPolicy, backoff_delays, connect_with_retry
from kubetrader.live.journal import Journal, reconcile_decision
from kubetrader.live.risk import RiskState, check_order, reduces_exposure, roll_trading_day
from kubetrader.live.stop import Flattener, StopReport, StopSettings
from kubetrader.specs import RiskSpec

log = logging.getLogger(__name__)
FLATTEN_PREFIX = "kt-flat"


@dataclass
class SessionConfig:
    deployment: str
    symbols: list[str]
    limits: RiskSpec
    health_interval: float = 30.0
    max_resend_age: float = 60.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    mode: str | None = None  # the spec's `paper` / `live`, reported in the snapshot
    # Where the trading day turns over for the daily-loss limit (US equities: New York midnight).
    timezone: str = "America/New_York"
    # The runner's flatten (kubetrader.live.stop): `spec.stopPolicy.scope`, settling window.
    stop_scope: str = "strategy"
    settle_window: float = 1.5

    def stop_settings(self) -> StopSettings:
        """The runner never gives up on a flatten by time: it ends flat or blocked (rejects)."""
        return StopSettings(
            timeout=math.inf, scope="account" if self.stop_scope == "account" else "strategy",
            owned=frozenset(self.symbols), settle_window=self.settle_window,
            ref_prefix=f"{FLATTEN_PREFIX}-{self.deployment[:20]}",
        )  # fmt: skip


class Session:
    def __init__(self, broker: Broker, journal: Journal, config: SessionConfig) -> None:
        self.broker = broker
        self.journal = journal
        self.config = config
        self.health = HealthCheck(config.health_interval)
        self.positions: dict[str, Position] = {}
        self.prices: dict[str, float] = {}
        self.cash = 0.0
        self.day_start_equity = 0.0
        self.trading_day: dt.date | None = None
        self.clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)  # tests set a fake clock
        self.peak_equity = 0.0
        self.halted: str | None = None
        self.link_lost = False  # IB 1100: TWS is up, its link to IB is not; nothing is sent
        self.flattener: Flattener | None = None
        self.stop_blocked: str | None = None  # why the last flatten ended NOT flat
        self.stopping = False
        self.finished = False
        self.connected = False
        self.bars: dict[str, deque[Bar]] = {s: deque() for s in config.symbols}
        self.ended: set[str] = set()
        self.order_listeners: list[Callable[[BrokerOrder], None]] = []
        self.fill_listeners: list[Callable[[Fill, bool], None]] = []
        self.commands: queue.Queue[str] = queue.Queue()
        self._recent_orders: deque[float] = deque(maxlen=1000)
        self._reconnect_at = 0.0
        self._reconnect_attempt = 0
        self._lock = threading.Lock()
        self._snapshot: dict[str, Any] = {}
        self.flat_confirmed_at: float | None = None
        self.flatten_requested_at: float | None = None  # wall clock; cleared when flat is confirmed
        self.last_heartbeat: float | None = None  # wall clock of the last answered round trip

    # ------------------------------------------------------------ start-up

    def start(self) -> None:
        connect_with_retry(self.broker, self.config.retry)
        self.connected = True
        self.health.last_ok = time.monotonic()
        self.last_heartbeat = time.time()
        self.reconcile()
        values = self.broker.account_values()
        self.cash = values.get("TotalCashValue", 0.0)
        equity = values.get("NetLiquidation", self.cash)
        self.day_start_equity = self.peak_equity = equity
        self.trading_day = self._today()
        for symbol in self.config.symbols:
            self.broker.subscribe_bars(symbol)
        self._publish()

    def reconcile(self) -> dict[str, int]:
        """Make the journal agree with the broker: fresh queries, then one decision per unresolved intent.

        Raises BrokerUnavailableError if any query fails: deciding on partial
        knowledge is how orders get sent twice.
        """
        open_orders = self.broker.open_orders()
        done_orders = self.broker.completed_orders()
        executions = self.broker.executions()
        positions = self.broker.positions()
        counts = {"adopted": 0, "resent": 0, "expired": 0}
        known = {i.order_ref for i in self.journal.intents()}
        for fill in executions:
            if fill.order_ref in known:
                self.journal.record_fill(fill)
        now = time.time()
        for intent in self.journal.unresolved():
            at_broker = find_by_ref(open_orders, intent.order_ref) or find_by_ref(done_orders, intent.order_ref)
            filled = sum(f.quantity for f in executions if f.order_ref == intent.order_ref)
            age = now - intent.created_at.timestamp()
            decision = reconcile_decision(intent, at_broker, filled, age=age, max_resend_age=self.config.max_resend_age)
            if decision == "send" and intent.order_ref.startswith(FLATTEN_PREFIX):
                decision = "expire"  # a close is never resent blind: the flattener re-plans from its ledger
            if decision == "adopt":
                if at_broker is not None:
                    self.journal.apply_order(at_broker)
                else:
                    self.journal.set_state(intent.order_ref, "filled", kind="reconciled", filled=filled)
                counts["adopted"] += 1
            elif decision == "send":
                self.journal.note("resend", order_ref=intent.order_ref)
                self._send(intent.request())
                counts["resent"] += 1
            else:
                self.journal.set_state(
                    intent.order_ref, "expired", reason="not at the broker and too old to send", kind="reconciled"
                )
                counts["expired"] += 1
        self.positions = {p.symbol: p for p in positions}
        for symbol in set(self.journal.positions()) | set(self.positions):
            pos = self.positions.get(symbol)
            self.journal.set_position(symbol, pos.quantity if pos else 0.0, pos.avg_cost if pos else 0.0)
        self.journal.note("reconciled", **counts, positions={p.symbol: p.quantity for p in positions})
        return counts

    # ------------------------------------------------------------ orders

    @property
    def equity(self) -> float:
        market = sum(p.quantity * self.prices.get(s, p.avg_cost) for s, p in self.positions.items())
        return self.cash + market

    def _today(self) -> dt.date:
        from zoneinfo import ZoneInfo

        return self.clock().astimezone(ZoneInfo(self.config.timezone)).date()

    def _roll_day(self) -> None:
        """Start a new trading day's loss budget (and PnL) on the first look after midnight."""
        self.day_start_equity, self.trading_day = roll_trading_day(
            self.day_start_equity, self.trading_day, self._today(), self.equity
        )

    def risk_state(self) -> RiskState:
        self._roll_day()
        halted = self.halted or ("stopping: no new entries" if self.stopping else None)
        return RiskState(
            equity=self.equity,
            day_start_equity=self.day_start_equity,
            peak_equity=self.peak_equity,
            positions={s: p.quantity for s, p in self.positions.items()},
            recent_orders=tuple(self._recent_orders),
            halted=halted,
        )

    def submit(self, request: OrderRequest) -> str | None:
        """Risk-check, journal and send one order. Returns the refusal reason, or None when sent."""
        existing = self.journal.intent(request.order_ref)
        if existing is not None:
            return f"duplicate intent {request.order_ref} ({existing.state}); not sent again"
        price = self.prices.get(request.symbol) or (request.limit_price or 0.0)
        reason = check_order(request, price, self.risk_state(), self.config.limits, time.monotonic())
        if reason is not None:
            self.journal.record_refusal(request, reason)
            log.warning("order %s refused: %s", request.order_ref, reason)
            return reason
        self.journal.record_intent(request)
        self._send(request)
        return None

    def _send(self, request: OrderRequest) -> None:
        """Send a journaled intent. A connection error leaves it `pending`: reconcile decides later."""
        self._recent_orders.append(time.monotonic())
        try:
            order = self.broker.place_order(request)
        except BrokerUnavailableError as exc:
            self.journal.note("send_failed", order_ref=request.order_ref, error=str(exc))
            self._lost(str(exc))
            return
        except OrderRejectedError as exc:
            self.journal.set_state(request.order_ref, "rejected", reason=str(exc))
            return
        self.journal.note("sent", order_ref=request.order_ref, broker_id=order.broker_id)

    def cancel(self, order_ref: str) -> None:
        """Cancels are never risk-checked: taking risk off must always be possible."""
        self.journal.note("cancel_requested", order_ref=order_ref)
        self.broker.cancel_order(order_ref)

    def cancel_entries(self) -> list[str]:
        """Cancel our working orders that would increase exposure; exits (reducing orders) stay."""
        refs = []
        for intent in self.journal.unresolved():
            pos = self.positions.get(intent.symbol)
            if not reduces_exposure(pos.quantity if pos else 0.0, intent.request().signed_quantity):
                self.cancel(intent.order_ref)
                refs.append(intent.order_ref)
        return refs

    def flatten(self) -> None:
        """Start the one flattener (kubetrader.live.stop), unless one is already at work."""
        if self.flattener is None or self.flattener.report is not None:
            self.stop_blocked = None
            self.flattener = Flattener(self.broker, self.config.stop_settings(), send=self._send_close)

    def _send_close(self, request: OrderRequest) -> None:
        """A flatten order: journaled like any order, never risk-checked (it only reduces; the
        flattener asserts so), and errors raised to the flattener, which decides what next."""
        self.journal.record_intent(request)
        self._recent_orders.append(time.monotonic())
        try:
            order = self.broker.place_order(request)
        except OrderRejectedError as exc:
            self.journal.set_state(request.order_ref, "rejected", reason=str(exc))
            raise
        self.journal.note("sent", order_ref=request.order_ref, broker_id=order.broker_id)

    # ------------------------------------------------------------ event loop

    def pump(self, timeout: float) -> None:
        """Run broker I/O for up to `timeout` s, fold events in, keep the connection healthy."""
        self._handle_commands()
        if not self.connected:
            self._try_reconnect()
            if not self.connected:
                self._publish()
                time.sleep(min(timeout, 0.05))
                return
        if self.health.due():
            if not self.health.run(self.broker):
                self._lost(self.health.last_error or "health check failed")
                self._publish()
                return
            self.last_heartbeat = time.time()
        try:
            events = self.broker.poll(timeout)
        except BrokerUnavailableError as exc:
            self._lost(str(exc))
            self._publish()
            return
        for event in events:
            self._dispatch(event)
            if self.flattener is not None:
                self.flattener.observe(event)
        if self.flattener is not None and self.flattener.report is None and self.connected:
            report = self.flattener.step()
            if report is not None:
                self._flatten_done(report)
        self._publish()

    def _flatten_done(self, report: StopReport) -> None:
        """The flattener's verdict: flat (confirmed over its settling window) or blocked with a reason."""
        self.journal.note("flat_confirmed" if report.flat else "stop_blocked", **report.as_dict())
        if not report.flat:
            self.stop_blocked = report.message
            log.error("flatten NOT confirmed: %s", report.message)
            return
        if self.config.stop_scope == "account":
            self.positions = {}
        else:  # scope strategy: positions the deployment does not trade were left alone
            self.positions = {s: p for s, p in self.positions.items() if s not in self.config.symbols}
        self.flat_confirmed_at = time.time()
        self.flatten_requested_at = None
        self.last_heartbeat = self.flat_confirmed_at
        if self.stopping:
            self.finished = True

    def _dispatch(self, event: BrokerEvent) -> None:
        if isinstance(event, BarUpdate):
            bar = event.bar
            self.prices[bar.symbol] = bar.close
            self.peak_equity = max(self.peak_equity, self.equity)
            if bar.symbol in self.bars:
                self.bars[bar.symbol].append(bar)
        elif isinstance(event, OrderUpdate):
            self.journal.apply_order(event.order)
            for order_listener in self.order_listeners:
                order_listener(event.order)
        elif isinstance(event, FillUpdate):
            new = self.journal.record_fill(event.fill)
            if new:
                self._apply_fill(event.fill)
            for fill_listener in self.fill_listeners:
                fill_listener(event.fill, new)
        elif isinstance(event, ConnectionUpdate):
            self.journal.note("connection", state=event.state, code=event.code, message=event.message)
            if event.state == "closed":
                self._lost(event.message)
            elif event.state == "lost":
                self.link_lost = True  # 1100: reported disconnected; the broker refuses to send
            else:
                # 1101 / 1102: orders may have changed meanwhile: look them up by orderRef before
                # anything else is sent, and (1101, data lost) subscribe again
                self.link_lost = False
                if event.state == "restored_data_lost":
                    resubscribe = getattr(self.broker, "resubscribe", None)
                    if resubscribe is not None:
                        resubscribe()
                try:
                    self.reconcile()
                except BrokerUnavailableError as exc:
                    self._lost(str(exc))
        elif isinstance(event, EndOfBars):
            self.ended.add(event.symbol)

    def _apply_fill(self, fill: Fill) -> None:
        signed = fill.quantity if fill.side == "BUY" else -fill.quantity
        old = self.positions.get(fill.symbol, Position(fill.symbol, 0.0, 0.0))
        qty = old.quantity + signed
        if qty == 0:
            avg = 0.0
        elif old.quantity == 0 or (old.quantity > 0) != (qty > 0):
            avg = fill.price
        elif abs(qty) > abs(old.quantity):
            avg = (old.avg_cost * old.quantity + fill.price * signed) / qty
        else:
            avg = old.avg_cost
        self.positions[fill.symbol] = Position(fill.symbol, qty, avg)
        self.cash -= signed * fill.price + fill.commission
        self.journal.set_position(fill.symbol, qty, avg)

    def _lost(self, reason: str) -> None:
        if self.connected:
            self.journal.note("connection_lost", reason=reason)
            log.warning("broker connection lost: %s", reason)
        self.connected = False
        self.broker.disconnect()
        self._reconnect_at = time.monotonic()
        self._reconnect_attempt = 0

    def _try_reconnect(self) -> None:
        if time.monotonic() < self._reconnect_at:
            return
        delays = backoff_delays(RetryPolicy(attempts=32, base_delay=self.config.retry.base_delay,
                                            max_delay=self.config.retry.max_delay))  # fmt: skip
        try:
            self.broker.connect()
            self.broker.ping()
            self.connected = True
            self.reconcile()
            for symbol in self.config.symbols:
                self.broker.subscribe_bars(symbol)
            self.journal.note("connection_restored", attempts=self._reconnect_attempt + 1)
        except BrokerUnavailableError as exc:
            self.connected = False
            self.broker.disconnect()
            delay = delays[min(self._reconnect_attempt, len(delays) - 1)]
            self._reconnect_attempt += 1
            self._reconnect_at = time.monotonic() + delay
            log.warning("reconnect failed (next try in %.1f s): %s", delay, exc)

    def _handle_commands(self) -> None:
        while True:
            try:
                command = self.commands.get_nowait()
            except queue.Empty:
                return
            self.journal.note("command", command=command)
            if command == "stop":
                self.stopping = True
                self.flatten()
            elif command == "shutdown":
                # SIGTERM (a rollout, a node drain): leave positions at the broker for the next
                # runner to reconcile; closing them on every restart would be a trade nobody asked for
                self.finished = True
            elif command == "halt":
                self.halted = "kill switch"
            elif command == "halt-cancel-entries":
                # a stop with cancelOrders: false and no flatten: keep positions and their exits,
                # cancel what would add exposure (see kubetrader.live.stop)
                self.halted = "kill switch"
                if self.connected:
                    self.cancel_entries()
            elif command == "flatten":
                # halted first: the strategy must not re-enter while (or after) we close
                self.halted = self.halted or "flatten requested"
                self.flatten_requested_at = time.time()
                self.flatten()

    # ------------------------------------------------------------ views for other threads

    def unrealized_pnl(self) -> float:
        return sum(p.quantity * (self.prices.get(s, p.avg_cost) - p.avg_cost) for s, p in self.positions.items())

    def _open_order_views(self) -> list[dict[str, Any]]:
        return [
            {
                "order_id": i.order_ref,
                "symbol": i.symbol,
                "side": i.side,
                "size": i.quantity,
                "order_type": i.order_type,
                "limit_price": i.limit_price,
                "status": i.state,
                "submitted_at": i.created_at.isoformat(),
            }
            for i in self.journal.unresolved()
        ]

    def _publish(self) -> None:
        self._roll_day()
        pnl = self.equity - self.day_start_equity
        unrealized = self.unrealized_pnl()
        snapshot = {
            "deployment": self.config.deployment,
            "mode": self.config.mode,
            "connected": self.connected and not self.link_lost,
            "stop_blocked": self.stop_blocked,
            "last_health_ok": self.health.last_ok,
            "halted": self.halted,
            "stopping": self.stopping,
            "finished": self.finished,
            "equity": self.equity,
            "cash": self.cash,
            "pnl": pnl,
            "unrealized_pnl": unrealized,
            "realized_pnl": pnl - unrealized,
            "positions": {s: p.quantity for s, p in self.positions.items() if p.quantity},
            "position_details": [
                {
                    "symbol": s,
                    "size": p.quantity,
                    "avg_price": p.avg_cost,
                    "market_price": self.prices.get(s),
                    "unrealized_pnl": p.quantity * (self.prices.get(s, p.avg_cost) - p.avg_cost),
                }
                for s, p in sorted(self.positions.items())
                if p.quantity
            ],
            "open_orders": self._open_order_views(),
            "prices": dict(self.prices),
            "last_heartbeat": self.last_heartbeat,
            "flatten_requested_at": self.flatten_requested_at,
            "flat_confirmed_at": self.flat_confirmed_at,
        }
        with self._lock:
            self._snapshot = snapshot

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return dict(self._snapshot)
