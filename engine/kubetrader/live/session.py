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
import os
import queue
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from kubetrader.errors import InfrastructureError
from kubetrader.live.bars import DEFAULT_CALENDAR, TIMEFRAME_SECONDS, BarAggregator, calendar
from kubetrader.live.broker import (
    STOP_SUFFIX,
    TAKE_PROFIT_SUFFIX,
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
    Protection,
    find_by_ref,
    oca_group_of,
    protected_entry,
)
from kubetrader.live.connection import HealthCheck, RetryPolicy, backoff_delays, connect_with_retry
from kubetrader.live.download import Pacer, WarmupPlan, paced_request, page_back
from kubetrader.live.journal import UNRESOLVED_STATES, Journal, reconcile_decision
from kubetrader.live.lease import AccountLease
from kubetrader.live.reconcile import account_differences
from kubetrader.live.stop import Flattener, StopReport, StopSettings
from kubetrader.risk import Origin, RiskEngine, TradingState, reduces_exposure
from kubetrader.specs import RiskSpec
from kubetrader.specs.live import ProtectiveStopSpec

log = logging.getLogger(__name__)
FLATTEN_PREFIX = "kt-flat"
STOPPING_REASON = "stopping: no new entries"


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
    # Seconds between reconciliations with the broker (positions, cash, unresolved intents).
    reconcile_interval: float = 60.0
    # Cash may differ from the broker's by this fraction of equity (commissions reported late).
    cash_tolerance: float = 0.001
    # Seconds to let lagging position reports arrive before a difference halts trading.
    confirm_delay: float = 1.0
    # One trader per account (kubetrader.live.lease.AccountLease): the account's key, or None.
    lease_account: str | None = None
    lease_term: float = 15.0
    # The runner's flatten (kubetrader.live.stop): `spec.stopPolicy.scope`, settling window.
    stop_scope: str = "strategy"
    settle_window: float = 1.5
    # Seconds the gateway may stay unreachable before the runner gives up with exit 3 and a report
    # (`--gateway-deadline`): the Deployment restarts it, the operator's stop can take over.
    gateway_deadline: float = 300.0
    # A runner whose own loop did not run for this long (a hung process, SIGSTOP, a stuck call)
    # fences itself before it sends anything again: HALTED until `POST /resume`, because the
    # operator may have taken over its account meanwhile (kubetrader_operator.live.stopping
    # waits longer than this before it acts on a hung runner). See `_fenced`.
    stall_fence: float = 60.0
    # `spec.timeframe`: a broker that streams 5-second bars (IB) has them aggregated to it on the
    # exchange calendar (kubetrader.live.bars); None: bars as the broker gives them (a replay).
    timeframe: str | None = None
    # `spec.risk.protectiveStop`: a broker-side stop (and take-profit) attached to every entry.
    protection: ProtectiveStopSpec | None = None
    # Warm-up from the broker's history before the first live bar (`kubetrader.live.download.WARMUP`
    # [timeframe]: chunks within IB's limits, paced); None: the strategy starts cold.
    warmup: WarmupPlan | None = None
    # The exchange calendar live bars are cut on (kubetrader.live.bars); XNYS for US stocks.
    calendar: str = DEFAULT_CALENDAR

    def stop_settings(self) -> StopSettings:
        """The runner never gives up on a flatten by time: it ends flat or blocked (rejects)."""
        return StopSettings(
            timeout=math.inf, scope="account" if self.stop_scope == "account" else "strategy",
            owned=frozenset(self.symbols), settle_window=self.settle_window,
            ref_prefix=f"{FLATTEN_PREFIX}-{self.deployment[:20]}",
        )  # fmt: skip


class GatewayDownError(InfrastructureError):
    """The gateway stayed unreachable past `SessionConfig.gateway_deadline`: exit 3 with the report."""

    def __init__(self, message: str, report: dict[str, Any]) -> None:
        super().__init__(message)
        self.report = report


class Session:
    def __init__(self, broker: Broker, journal: Journal, config: SessionConfig) -> None:
        self.broker = broker
        self.journal = journal
        self.config = config
        self.health = HealthCheck(config.health_interval)
        self.positions: dict[str, Position] = {}
        self.prices: dict[str, float] = {}
        self.cash = 0.0
        self.clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)  # tests set a fake clock
        # The risk gate: the same engine (and limits) as a backtest's; every order this session
        # sends passes `risk.check` in `submit`, and nothing else here calls `place_order`.
        self.risk = RiskEngine(config.limits)
        # Set by the strategy's feed: prices (and equity) then move when the strategy is handed
        # a bar, so the gate checks an order at the price the strategy decided on (as a backtest).
        self.delivering = False
        # The unresolved intents (ref -> symbol, signed quantity, filled), kept in step with the
        # journal (rebuilt from it by reconcile) so the gate's position-with-working-orders costs
        # no query per order.
        self._working: dict[str, tuple[str, float, float]] = {}
        # `spec.risk.protectiveStop`: symbol -> the entry whose bracket children (stop, take-profit)
        # protect the WHOLE position at the broker. One group per symbol, so every exit can join it
        # (see `_protect`) and `_resize_protection` keeps it the size of the position.
        self.guards: dict[str, str] = {}
        # symbol -> an add to a protected position whose bracket (sized to the whole position, in the
        # group's OCA) takes over the group once the add has filled (see `_protect`, `_hand_over`)
        self.successors: dict[str, str] = {}
        self._successor_fills: dict[str, float] = {}  # the successor's filled quantity so far
        self._grouped: set[str] = set()  # orders sent into a protection group: the broker rebalances for them
        # The trading state last written to the journal, and when (see `_save_trading_state`).
        self._saved_state: dict[str, Any] | None = None
        self._saved_at = 0.0
        self._account_known = False  # a baseline to compare the broker's account with
        self._commissions: dict[str, float] = {}  # exec id -> commission taken out of cash
        self._next_reconcile = 0.0
        self.lease: AccountLease | None = None
        if config.lease_account:
            holder = f"{config.deployment}@{socket.gethostname()}:{os.getpid()}:{id(self):x}"
            self.lease = AccountLease(journal.engine, config.lease_account, holder, term=config.lease_term)
        self.lease_wait: str | None = None  # who holds the account's lease while this runner waits
        self._next_renew = 0.0
        self._started = False  # the account and the trading state are known (see `start`)
        self.link_lost = False  # IB 1100: TWS is up, its link to IB is not; nothing is sent
        self.flattener: Flattener | None = None
        self.stop_blocked: str | None = None  # why the last flatten ended NOT flat
        self.stopping = False
        self.finished = False
        self.connected = False
        self.bars: dict[str, deque[Bar]] = {s: deque() for s in config.symbols}
        # The warm-up (`_warm_up`): history bars handed to the strategy before any live one, and
        # the last one's time, so a live bar it already holds is not handed over twice.
        self.history: dict[str, deque[Bar]] = {s: deque() for s in config.symbols}
        self.history_end: dict[str, dt.datetime] = {}
        self.aggregators: dict[str, BarAggregator] = {}
        if config.timeframe and getattr(broker, "realtime_bar_seconds", None):
            cal = calendar(config.calendar)
            self.aggregators = {s: BarAggregator(s, config.timeframe, cal) for s in config.symbols}
        self.pacer = Pacer()  # IB's historical-data pacing, for the warm-up
        self.ended: set[str] = set()
        self.order_listeners: list[Callable[[BrokerOrder], None]] = []
        self.fill_listeners: list[Callable[[Fill, bool], None]] = []
        self.commands: queue.Queue[str] = queue.Queue()
        self._reconnect_at = 0.0
        self._reconnect_attempt = 0
        self._down_since: float | None = None  # monotonic: when the connection was lost
        self._loop_at = time.monotonic()  # the last time this session's loop ran (see `_fenced`)
        self.stall_fenced: str | None = None  # why this runner fenced itself after a stall
        self._lock = threading.Lock()
        self._snapshot: dict[str, Any] = {}
        self.flat_confirmed_at: float | None = None
        self.flatten_requested_at: float | None = None  # wall clock; cleared when flat is confirmed
        self.last_heartbeat: float | None = None  # wall clock of the last answered round trip

    # ------------------------------------------------------------ start-up

    def wait_for_lease(self, *, poll: float = 1.0, stop: Callable[[], bool] = lambda: False) -> None:
        """Block until this runner holds the account's lease (none configured: at once), saying why it waits."""
        if self.lease is None:
            return
        while (holder := self.lease.acquire()) is not None:
            reason = f"waiting for the account lease of {self.lease.account}: {holder.describe()}"
            if reason != self.lease_wait:
                self.journal.note("lease_wait", account=self.lease.account, holder=holder.holder, token=holder.token)
                log.warning(reason)
            self.lease_wait = reason
            self._publish()
            if stop():
                return
            time.sleep(poll)
        self.lease_wait = None
        self._next_renew = time.monotonic() + self.config.lease_term / 3
        self.journal.note("lease_acquired", account=self.lease.account, token=self.lease.token)

    def _renew_lease(self) -> None:
        """Renew every third of the term; a lost lease fences the gate until it is taken again."""
        if self.lease is None or time.monotonic() < self._next_renew:
            return
        had = self.lease.token
        holder = self.lease.acquire()
        self._next_renew = time.monotonic() + self.config.lease_term / 3
        if holder is not None and had is not None:
            self.journal.note("lease_lost", account=self.lease.account, holder=holder.holder, token=holder.token)
            log.error("account lease lost: %s", holder.describe())

    def release_lease(self) -> None:
        if self.lease is not None:
            self.lease.release()

    def _check_stall(self) -> None:
        """Fence this runner for good (until /resume) when its loop has not run for `stall_fence` s.

        A runner that hangs while connected keeps its client id at the gateway, so the operator
        cannot act under it; after its own deadline (longer than this limit) it acts under its
        own client id instead. Whatever this runner does when it wakes up, its first step is
        here, before any send: the gap since its loop last ran is over the limit, so it halts
        and sends nothing, and the operator is the one flattener. (The monotonic clock keeps
        running while a process is stopped.)
        """
        now = time.monotonic()
        gap = now - self._loop_at
        self._loop_at = now
        if gap > self.config.stall_fence and self.stall_fenced is None and self._started:
            self.stall_fenced = (f"stalled {gap:.1f} s (limit {self.config.stall_fence:g} s): the operator may "
                                 "have taken over this account; nothing is sent until POST /resume")  # fmt: skip
            self.risk.set_manual(TradingState.HALTED, self.stall_fenced)
            if self.flattener is not None and self.flattener.report is None:
                self.flattener = None  # its plan is from before the stall: another process may be closing
            self.journal.note("stall_fenced", gap=round(gap, 3), limit=self.config.stall_fence)
            log.error("FENCED: %s", self.stall_fenced)

    def _fenced(self) -> str | None:
        """Why this runner may not send now (stalled past its limit, no valid account lease), or None."""
        self._check_stall()
        if self.stall_fenced is not None:
            return self.stall_fenced
        if self.lease is None or self.lease.valid():
            return None
        holder = self.lease.current()
        return f"no account lease for {self.lease.account}" + (f": {holder.describe()}" if holder else "")

    def start(self) -> None:
        self.wait_for_lease(stop=lambda: not self.commands.empty())  # SIGTERM while waiting: give up
        if self.lease is not None and self.lease.token is None:
            return  # never connected: the runner's loop sees the shutdown and ends; the gate stays fenced
        connect_with_retry(self.broker, self.config.retry)
        self.connected = True
        self.health.last_ok = time.monotonic()
        self.last_heartbeat = time.time()
        self._restore_trading_state()
        self.reconcile()
        self._started = True
        self._loop_at = time.monotonic()  # connecting may take long; the loop starts now
        self._observe()
        self._save_trading_state(force=True)
        self._warm_up()
        for symbol in self.config.symbols:
            self.broker.subscribe_bars(symbol)
        self._publish()

    def _warm_up(self) -> None:
        """The strategy's history, from the broker, before its first live bar: requests within IB's
        duration limit for the bar size, paced, paging back from now (`page_back`); daily bars up to
        the session before today (today's bar is the live feed's: a daily bar asked for mid-session
        would be a partial one), intraday ones up to now, less a bar still forming. A failed request
        (a farm down, pacing past every retry) leaves that symbol cold, journaled: trading never
        waits on history."""
        plan = self.config.warmup
        if plan is None:
            return
        daily = plan.resolution.timeframe == "1d"
        now = self.clock()
        for symbol in self.config.symbols:
            try:
                end = self._today() - dt.timedelta(days=1) if daily else None
                bars = page_back(self.broker, symbol, plan.resolution, plan.requests, self.pacer, now=now, end=end)
            except BrokerUnavailableError as exc:
                self.journal.note("warmup_failed", symbol=symbol, error=str(exc))
                log.error("%s: no warm-up from history (%s): its indicators start cold", symbol, exc)
                continue
            if not daily:
                size = dt.timedelta(seconds=TIMEFRAME_SECONDS[plan.resolution.timeframe])
                bars = [b for b in bars if b.time + size <= now]  # IB's answer ends with the bar now forming
            self.history[symbol] = deque(bars)
            if bars:
                self.history_end[symbol] = bars[-1].time
            self.journal.note("warmup", symbol=symbol, bars=len(bars), last=bars[-1].time.isoformat() if bars else None)

    def _completed(self, partial: Bar) -> Bar:
        """The first live bar began before the subscription: IB's history has all of it (the warm-up
        left it out while it was still forming), so the strategy gets that, as a backtest would; one
        paced request, ending at the bar's end. Without it (no warm-up, the request failed, not there
        yet) the partial bar is handed over, journaled."""
        plan = self.config.warmup
        found: Bar | None = None
        error = "no warm-up configured"
        if plan is not None:
            res = plan.resolution
            size = TIMEFRAME_SECONDS[res.timeframe]
            end: dt.date = partial.time + dt.timedelta(seconds=size) if size else partial.time.date()
            try:  # from the runner's loop: a pacing violation is not waited out here (no retry)
                got, _ = paced_request(self.broker, self.pacer, partial.symbol, end, res.duration, res.bar_size,
                                       retries=0)  # fmt: skip
                found = next((b for b in got if b.time == partial.time), None)
                error = "" if found else "not in the broker's history yet"
            except BrokerUnavailableError as exc:
                error = str(exc)
        self.journal.note("partial_bar", symbol=partial.symbol, time=partial.time.isoformat(),
                          from_history=found is not None, error=error or None)  # fmt: skip
        if found is None:
            log.warning("%s: the first live bar (%s) began before the subscription: handed over partial (%s)",
                        partial.symbol, partial.time, error)  # fmt: skip
        return found or partial

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
            ours = fill.order_ref in known or protected_entry(fill.order_ref) in known
            if ours and self.journal.record_fill(fill):
                self._apply_fill(fill)  # a fill missed while away (a cut, a crash): into the view first
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
                # checked again: the state may have changed since it was journaled (a halt, a fill)
                refusal = self._refusal(intent.request(), "strategy")
                if refusal is not None:
                    self.journal.set_state(intent.order_ref, "refused", reason=refusal, kind="refused")
                    counts["expired"] += 1
                    continue
                self.journal.note("resend", order_ref=intent.order_ref)
                self._send(intent.request())
                counts["resent"] += 1
            else:
                self.journal.set_state(
                    intent.order_ref, "expired", reason="not at the broker and too old to send", kind="reconciled"
                )
                counts["expired"] += 1
        self._working = {
            i.order_ref: (i.symbol, i.request().signed_quantity, i.filled) for i in self.journal.unresolved()
        }
        # a restarted runner finds its positions' protection where it lives: at the broker
        # (a stop whose entry still works is an add's bracket waiting to take the group over)
        unresolved = {i.order_ref for i in self.journal.unresolved()}
        stops = [(o.symbol, entry) for o in open_orders
                 if o.order_ref.endswith(STOP_SUFFIX) and (entry := protected_entry(o.order_ref)) in known]  # fmt: skip
        self.guards = {symbol: entry for symbol, entry in stops if entry not in unresolved}
        self.successors = {symbol: entry for symbol, entry in stops if entry in unresolved and symbol in self.guards}
        self.guards.update({symbol: entry for symbol, entry in stops if symbol not in self.guards})
        self._successor_fills = {e: sum(f.quantity for f in executions if f.order_ref == e)
                                 for e in self.successors.values()}  # fmt: skip
        positions = self._check_account(positions)
        for symbol in set(self.journal.positions()) | set(self.positions):
            pos = self.positions.get(symbol)
            self.journal.set_position(symbol, pos.quantity if pos else 0.0, pos.avg_cost if pos else 0.0)
        self.journal.note("reconciled", **counts, positions={p.symbol: p.quantity for p in positions})
        self._next_reconcile = time.monotonic() + self.config.reconcile_interval
        return counts

    def _periodic_account_check(self) -> None:
        """Positions and cash against the broker's, between reconciliations. No intent is decided
        here: an order just sent may not be at the broker yet, and resending is for reconnects."""
        positions = self._check_account(self.broker.positions())
        for p in positions:
            self.journal.set_position(p.symbol, p.quantity, p.avg_cost)
        self._next_reconcile = time.monotonic() + self.config.reconcile_interval

    def _check_account(self, positions: list[Position]) -> list[Position]:
        """Compare the view (with every fill applied) with the broker's fresh positions and cash; a
        difference that survives a second look halts trading (HALTED, with it as the reason). Then
        the broker's numbers are adopted either way: they are the account."""
        differences: list[str] = []
        cash = 0.0
        for attempt in range(2):
            cash = self.broker.account_values().get("TotalCashValue", 0.0)
            if not self._account_known:
                break
            view = {s: p.quantity for s, p in self.positions.items() if p.quantity}
            broker = {p.symbol: p.quantity for p in positions}
            tolerance = self.config.cash_tolerance * max(abs(self.equity), 1.0)
            differences = account_differences(view, broker, self.cash, cash, cash_tolerance=tolerance)
            if not differences or attempt:
                break
            for event in self.broker.poll(self.config.confirm_delay):  # lagging reports get a second look
                self._dispatch(event)
            positions = self.broker.positions()
        if differences:
            reason = "the broker's account differs from the journal: " + "; ".join(differences)
            self.risk.set_manual(TradingState.HALTED, reason)
            self.journal.note("reconcile_halt", differences=differences)
            log.error("HALTED: %s", reason)
        self.positions = {p.symbol: p for p in positions}
        self.cash = cash
        self._commissions.clear()  # the broker's cash holds every commission of the fills before it
        self._account_known = True
        return positions

    # ------------------------------------------------------------ trading state (persisted)

    def _restore_trading_state(self) -> None:
        """Before anything is sent: the engine's state, the cash and positions the journal last knew."""
        record = self.journal.trading_state()
        if record is None:
            return  # a deployment's first run: the broker's account is the baseline
        self.risk.restore(record.get("risk", {}))
        if self.risk.manual is not None and self.risk.manual[1] == STOPPING_REASON:
            self.risk.set_manual(TradingState.ACTIVE, "a new run")  # a stop ended that run; the halts stay
        self.cash = float(record.get("cash", 0.0))
        self.positions = {s: Position(s, q, 0.0) for s, q in self.journal.positions().items()}
        self._account_known = True
        self.journal.note("trading_state_restored", state=self.risk.state.value, reason=self.risk.reason)

    def _save_trading_state(self, *, force: bool = False) -> None:
        """Write the state when it changed: at once for a state change, a new day or cash (a fill), the
        equity peak at most every few seconds (it moves with every new high)."""
        record: dict[str, Any] = {"risk": self.risk.to_record(), "cash": self.cash}
        if record == self._saved_state and not force:
            return
        now = time.monotonic()
        saved = self._saved_state or {"risk": {}, "cash": None}
        quiet = {"peak_equity", "last_equity"}
        old_risk = {k: v for k, v in saved["risk"].items() if k not in quiet}
        new_risk = {k: v for k, v in record["risk"].items() if k not in quiet}
        urgent = force or old_risk != new_risk or saved["cash"] != record["cash"]
        if not urgent and now - self._saved_at < 5.0:
            return
        self.journal.save_trading_state(record)
        self._saved_state, self._saved_at = record, now

    # ------------------------------------------------------------ orders

    @property
    def equity(self) -> float:
        market = sum(p.quantity * self.prices.get(s, p.avg_cost) for s, p in self.positions.items())
        return self.cash + market

    @property
    def halted(self) -> str | None:
        """Why the engine is not ACTIVE (kill switch, daily loss, drawdown, ...), or None."""
        return self.risk.reason

    @property
    def day_start_equity(self) -> float:
        return self.risk.day_open_equity if self.risk.day is not None else self.equity

    def _today(self) -> dt.date:
        from zoneinfo import ZoneInfo

        return self.clock().astimezone(ZoneInfo(self.config.timezone)).date()

    def _observe(self) -> None:
        """Give the engine the current equity on the exchange's trading day (halts, a new day's budget)."""
        if not self._started:
            return  # no account yet: an equity of 0 must not become the day's baseline
        self.risk.observe(self.equity, self._today().isoformat())

    def deliver(self, bar: Bar) -> None:
        """The strategy's feed hands `bar` over: it becomes the reference price (see `delivering`)."""
        self.prices[bar.symbol] = bar.close
        self._observe()

    def working(self, symbol: str, *, exclude: str | None = None) -> float:
        """The signed remaining size of this deployment's unresolved orders in `symbol`."""
        total = 0.0
        for ref, (sym, signed, filled) in self._working.items():
            if sym == symbol and ref != exclude:
                remaining = max(0.0, abs(signed) - filled)
                total += remaining if signed > 0 else -remaining
        return total

    def _refusal(self, request: OrderRequest, origin: Origin) -> str | None:
        """The gate: the engine's verdict on `request` against position PLUS working orders."""
        fenced = self._fenced()
        if fenced is not None:
            return fenced
        self._observe()
        held = self.positions.get(request.symbol)
        position = held.quantity if held else 0.0
        if origin == "strategy":
            # an operator's flatten follows a global cancel: it closes what is held, not what was working
            position += self.working(request.symbol, exclude=request.order_ref)
        price = self.prices.get(request.symbol) or (request.limit_price or 0.0)
        return self.risk.check(
            request.symbol,
            request.signed_quantity,
            position=position,
            price=price,
            equity=self.equity,
            now=time.monotonic(),
            limit_price=request.limit_price if request.order_type == "LMT" else None,
            origin=origin,
        )

    def submit(self, request: OrderRequest, *, origin: Origin = "strategy") -> str | None:
        """Risk-check, journal and send one order. Returns the refusal reason, or None when sent.

        The one way an order leaves the session (flattens and resends come through here too).
        """
        existing = self.journal.intent(request.order_ref)
        if existing is not None:
            return f"duplicate intent {request.order_ref} ({existing.state}); not sent again"
        reason = self._refusal(request, origin)
        if reason is not None:
            self.journal.record_refusal(request, reason)
            log.warning("order %s refused: %s", request.order_ref, reason)
            return reason
        self.journal.record_intent(request)
        self._send(request)
        return None

    def _protect(self, request: OrderRequest) -> OrderRequest:
        """Attach the broker-side stop (and take-profit) of `spec.risk.protectiveStop`, or join it.

        One protection group per symbol (`guards`), sized to the whole position:
        - an exit (it takes exposure off position plus working orders) joins the group's OCA
          (ocaType 2, reduce): if the stop triggers while the exit works, the stop's fill shrinks
          the exit by as much, and the exit's fills shrink the stop, so the two never close the
          position twice (never a flip), and a partial exit leaves a stop of the rest;
        - an entry on an unprotected symbol carries a new bracket for all that is held after it (a
          position whose stop was cancelled is covered again at once, not after a resize);
        - an entry that adds to a protected position carries a bracket for the WHOLE position after
          it (held + the add), in the group's OCA: IB activates it the moment the add fills, so the
          add is never unprotected for a round trip, and while the old stop still works too the
          two never close more than is held (ocaType 2: a fill of either shrinks the other by as
          much, so together they close at most the larger). Once the add has filled, its bracket
          takes the group over and the old one is cancelled (`_hand_over`). Sized on what is held,
          not on working orders: the group's exits shrink it at the broker as they fill;
        - an order that flips the position does both: it joins the old group (whose stop may
          still close the old side first) and carries a bracket for the part beyond zero.
        The children are not intents and never count in the gate's position-with-working-orders
        (`working`): they can only reduce a position, and counting them would free room for new
        entries while the position is still held.
        """
        spec = self.config.protection
        if spec is None or request.protection is not None or request.order_ref.startswith(FLATTEN_PREFIX):
            return request
        held = self.positions.get(request.symbol)
        position = (held.quantity if held else 0.0) + self.working(request.symbol, exclude=request.order_ref)
        guard = self.guards.get(request.symbol)
        group = oca_group_of(guard) if guard is not None else None
        if reduces_exposure(position, request.signed_quantity):
            return replace(request, oca_group=group)
        after = position + request.signed_quantity
        flips = position * after < 0
        joins = guard is not None and not flips  # an add to a protected position
        held_qty = held.quantity if held else 0.0
        if flips:
            added = abs(after)
        elif held_qty * request.signed_quantity > 0:  # adds to a position held unprotected or protected
            added = abs(held_qty + request.signed_quantity)
        else:
            added = abs(request.signed_quantity)
        price = request.limit_price or self.prices.get(request.symbol) or 0.0
        if price <= 0:
            log.error("no reference price for %s: entry %s sent WITHOUT its protective stop", request.symbol,
                      request.order_ref)  # fmt: skip
            self.journal.note("unprotected", order_ref=request.order_ref, reason="no reference price")
            return request
        sign = 1.0 if request.side == "BUY" else -1.0
        stop = round(price * (1 - sign * spec.stop_loss), 2)
        take = round(price * (1 + sign * spec.take_profit), 2) if spec.take_profit is not None else None
        protection = Protection(stop, take, added, oca_group=group if joins else None)
        return replace(request, protection=protection, oca_group=group if flips else None)

    def _resize_protection(self, fill: Fill) -> None:
        """After a fill in a protected symbol, the group's stop and take-profit work exactly what is
        held on the side they protect (IB modifies an open order's size in place), and nothing held
        there cancels them.

        A fill of an order IN the group (an exit that joined it, the stop or take-profit) is
        rebalanced by the broker itself (OCA reduce); resizing after it too would race the
        broker's own reduction (a later fill shrinks the stop, then our older size arrives), so
        then only the guard is forgotten once nothing is held. Fills from outside the group (an
        entry adding to the position, an exit sent before the group existed) are ours to follow.
        """
        guard = self.guards[fill.symbol]
        successor = self.successors.get(fill.symbol)
        if fill.order_ref == successor and self._successor_done(successor):
            self._hand_over(fill.symbol, guard, successor)
            return
        entry = self.journal.intent(guard)
        held = self.positions.get(fill.symbol)
        quantity = held.quantity if held else 0.0
        protected = quantity if entry is None or entry.side == "BUY" else -quantity
        in_group = fill.order_ref in self._grouped or protected_entry(fill.order_ref) is not None
        if protected <= 0 and entry is not None and entry.state in UNRESOLVED_STATES:
            return  # its entry still works: the children wait with it (a flip whose old side was stopped out)
        if in_group:
            if protected <= 0:
                self._guard_done(fill.symbol)
            return
        if protected <= 0:
            for suffix in (STOP_SUFFIX, TAKE_PROFIT_SUFFIX):
                self.broker.cancel_order(guard + suffix)
            del self.guards[fill.symbol]
            if quantity:
                self.journal.note("protection_cancelled", symbol=fill.symbol, remaining=quantity)
            return
        if not self.broker.resize(guard + STOP_SUFFIX, protected):
            del self.guards[fill.symbol]  # the stop is done (it filled meanwhile): the next entry gets a bracket
            log.error("%s: %g held without a broker-side stop (the group's stop is no longer open)", fill.symbol,
                      quantity)  # fmt: skip
            self.journal.note("unprotected", symbol=fill.symbol, reason="the protective stop is no longer open")
            return
        self.broker.resize(guard + TAKE_PROFIT_SUFFIX, protected)
        self.journal.note("protection_resized", symbol=fill.symbol, order_ref=guard, quantity=protected)

    def _guard_done(self, symbol: str) -> None:
        """The group's bracket is done: a pending add's bracket (in the same OCA group) is the group's
        now; with none, the symbol is unprotected until the next entry brings a bracket."""
        successor = self.successors.pop(symbol, None)
        if successor is not None:
            self.guards[symbol] = successor
        else:
            self.guards.pop(symbol, None)

    def _successor_done(self, ref: str) -> bool:
        """Has the add `ref` filled completely (IB then works its children)?"""
        intent = self.journal.intent(ref)
        return intent is not None and self._successor_fills.get(ref, 0.0) >= intent.quantity

    def _hand_over(self, symbol: str, old: str, new: str) -> None:
        """The add `new` has filled and IB works its bracket: it becomes the group's protection, sized
        to what is held now (a concurrent fill may have moved it), and the old bracket is cancelled.
        The resize goes first: until the cancel lands both work, in one OCA group, so the position is
        covered throughout and never twice (a fill of either shrinks the other)."""
        self.successors.pop(symbol, None)
        self._successor_fills.pop(new, None)
        self.guards[symbol] = new
        entry = self.journal.intent(new)
        held = self.positions.get(symbol)
        quantity = held.quantity if held else 0.0
        protected = quantity if entry is None or entry.side == "BUY" else -quantity
        if protected > 0 and not self.broker.resize(new + STOP_SUFFIX, protected):
            log.error("%s: the add's protective stop is no longer open", symbol)
        elif protected > 0:
            self.broker.resize(new + TAKE_PROFIT_SUFFIX, protected)
        for suffix in (STOP_SUFFIX, TAKE_PROFIT_SUFFIX):
            self.broker.cancel_order(old + suffix)
        self.journal.note("protection_handed_over", symbol=symbol, old=old, new=new, quantity=protected)

    def _send(self, request: OrderRequest) -> None:
        """Send a journaled intent that passed the gate. A connection error leaves it `pending` for reconcile."""
        request = self._protect(request)
        self.risk.sent(time.monotonic())
        self._working[request.order_ref] = (request.symbol, request.signed_quantity, 0.0)
        try:
            order = self.broker.place_order(request)
        except BrokerUnavailableError as exc:
            self.journal.note("send_failed", order_ref=request.order_ref, error=str(exc))
            self._lost(str(exc))
            return
        except OrderRejectedError as exc:
            self.journal.set_state(request.order_ref, "rejected", reason=str(exc))
            self._working.pop(request.order_ref, None)
            return
        if request.protection is not None and request.protection.oca_group is not None:
            self.successors[request.symbol] = request.order_ref  # takes the group over once it fills
        elif request.protection is not None:
            self.guards[request.symbol] = request.order_ref
        if request.oca_group is not None:
            self._grouped.add(request.order_ref)
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
        if self.stall_fenced is not None:
            self.stop_blocked = self.stall_fenced  # another process may be flattening: never a second one
            return
        if self.flattener is None or self.flattener.report is not None:
            self.stop_blocked = None
            self.flattener = Flattener(self.broker, self.config.stop_settings(), send=self._send_close)

    def _send_close(self, request: OrderRequest) -> None:
        """A flatten order: journaled like any order, never risk-checked (it only reduces; the
        flattener asserts so), and errors raised to the flattener, which decides what next.
        Fenced like every send: without the account's lease nothing goes out."""
        fenced = self._fenced()
        if fenced is not None:
            raise OrderRejectedError(f"{request.order_ref}: {fenced}")
        self.journal.record_intent(request)
        self.risk.sent(time.monotonic())
        self._working[request.order_ref] = (request.symbol, request.signed_quantity, 0.0)
        try:
            order = self.broker.place_order(request)
        except OrderRejectedError as exc:
            self.journal.set_state(request.order_ref, "rejected", reason=str(exc))
            self._working.pop(request.order_ref, None)
            raise
        self.journal.note("sent", order_ref=request.order_ref, broker_id=order.broker_id)

    # ------------------------------------------------------------ event loop

    def pump(self, timeout: float) -> None:
        """Run broker I/O for up to `timeout` s, fold events in, keep the connection healthy.

        Raises GatewayDownError once the gateway has been unreachable past `gateway_deadline`.
        """
        self._check_stall()
        self._renew_lease()
        self._handle_commands()
        if not self.connected:
            self._try_reconnect()
            if not self.connected:
                self._publish()
                self._give_up_when_down()
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
        if self.connected and time.monotonic() >= self._next_reconcile:
            try:
                self._periodic_account_check()
            except BrokerUnavailableError as exc:
                self._lost(str(exc))
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
            aggregator = self.aggregators.get(event.bar.symbol)
            for done in aggregator.add(event.bar) if aggregator is not None else [event.bar]:
                warmed = self.history_end.get(done.symbol)
                if warmed is not None and done.time <= warmed:
                    continue  # the history already held it
                partial = aggregator is not None and done.time in aggregator.partial
                bar = self._completed(done) if partial else done
                if not self.delivering:
                    self.deliver(bar)
                if bar.symbol in self.bars:
                    self.bars[bar.symbol].append(bar)
        elif isinstance(event, OrderUpdate):
            order = event.order
            if not order.is_open and order.order_ref.endswith(STOP_SUFFIX):
                entry = protected_entry(order.order_ref)
                if self.guards.get(order.symbol) == entry:
                    # the group's stop is done (filled, cancelled by a stop or by hand): a pending add's
                    # bracket (in the same group) is now the group's; else the next entry carries a
                    # new bracket, sized by the fills to the whole position
                    self._guard_done(order.symbol)
            state = self.journal.apply_order(event.order)
            working = self._working.get(event.order.order_ref)
            if working is not None:
                if state in UNRESOLVED_STATES:
                    self._working[event.order.order_ref] = (working[0], working[1], event.order.filled)
                else:
                    self._working.pop(event.order.order_ref)
            for order_listener in self.order_listeners:
                order_listener(event.order)
        elif isinstance(event, FillUpdate):
            new = self.journal.record_fill(event.fill)
            if new:
                self._apply_fill(event.fill)
            else:
                self._charge_commission(event.fill)  # IB reports the commission after the execution
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
        self.cash -= signed * fill.price
        self._commissions[fill.exec_id] = 0.0
        self._charge_commission(fill)
        self.journal.set_position(fill.symbol, qty, avg)
        if fill.order_ref == self.successors.get(fill.symbol):
            self._successor_fills[fill.order_ref] = self._successor_fills.get(fill.order_ref, 0.0) + fill.quantity
        if fill.symbol in self.guards and self.connected:
            try:
                self._resize_protection(fill)
            except BrokerUnavailableError as exc:  # reconcile after the reconnect resizes it again
                self.journal.note("protection_resize_failed", symbol=fill.symbol, error=str(exc))

    def _charge_commission(self, fill: Fill) -> None:
        """Take a fill's commission out of cash once, when it becomes known (often a second report).
        Only for fills applied in this process: older ones are in the cash the broker reports."""
        charged = self._commissions.get(fill.exec_id)
        if charged is not None and fill.commission != charged:
            self.cash -= fill.commission - charged
            self._commissions[fill.exec_id] = fill.commission

    def _give_up_when_down(self) -> None:
        """Past the deadline with no gateway: journal it and raise, so the process exits 3 with a report."""
        if self._down_since is None:
            return
        down = time.monotonic() - self._down_since
        if down <= self.config.gateway_deadline:
            return
        self.journal.note("gateway_down_exit", seconds=round(down, 1), deadline=self.config.gateway_deadline)
        message = (f"GATEWAY DOWN for {down:.0f} s (deadline {self.config.gateway_deadline:g} s): the runner exits; "
                   "positions and orders stay at the broker, to be reconciled by the next runner "
                   "(or closed by the operator's emergency stop)")  # fmt: skip
        raise GatewayDownError(message, self.snapshot())

    def _lost(self, reason: str) -> None:
        if self.connected:
            self.journal.note("connection_lost", reason=reason)
            log.warning("broker connection lost: %s", reason)
        if self.connected or self._down_since is None:
            self._down_since = time.monotonic()
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
            self._down_since = None
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
                self.risk.set_manual(TradingState.REDUCING, STOPPING_REASON)
                self.flatten()
            elif command == "shutdown":
                # SIGTERM (a rollout, a node drain): leave positions at the broker for the next
                # runner to reconcile; closing them on every restart would be a trade nobody asked for
                self.finished = True
            elif command == "resume":
                # lifts the kill switch (and a reconciliation halt, once someone has looked);
                # never the drawdown's halt for good or the day's daily-loss halt
                self.risk.set_manual(TradingState.ACTIVE, "resumed")
                self.stall_fenced = None  # someone has looked: the operator is done with the account
            elif command == "halt":
                self.risk.set_manual(TradingState.REDUCING, "kill switch")
            elif command == "halt-cancel-entries":
                # a stop with cancelOrders: false and no flatten: keep positions and their exits,
                # cancel what would add exposure (see kubetrader.live.stop)
                self.risk.set_manual(TradingState.REDUCING, "kill switch")
                if self.connected:
                    self.cancel_entries()
            elif command == "flatten":
                # halted first: the strategy must not re-enter while (or after) we close
                if self.risk.manual is None:
                    self.risk.set_manual(TradingState.REDUCING, "flatten requested")
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
        self._observe()
        if self._started:
            self._save_trading_state()
        pnl = self.equity - self.day_start_equity
        unrealized = self.unrealized_pnl()
        snapshot = {
            "deployment": self.config.deployment,
            "mode": self.config.mode,
            "connected": self.connected and not self.link_lost,
            "stop_blocked": self.stop_blocked,
            "fenced": self.stall_fenced,
            "published_at": time.time(),
            "last_health_ok": self.health.last_ok,
            "halted": self.halted,
            "lease_wait": self.lease_wait,
            "trading_state": self.risk.state.value,
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
