"""`BaseStrategy`: the risk controls every kubetrader strategy runs under, in backtests and live.

Every order a strategy sends goes through `buy` or `sell` (Backtrader's `close` and
`order_target_*` call them too), and this class checks it there, before it reaches
the broker. Only Backtrader APIs that live brokers and feeds also provide are used
(`buy`/`sell`/`cancel`, `getposition`, `broker.getvalue`, `notify_cashvalue`), so
the same class runs unchanged under the backtest runner and the live runner.

The rules, exactly (a vectorized twin of a strategy must apply the same ones):

- Equity is the broker's value at the close of the current bar; prices for the
  checks are the current bar's close.
- The effective position is the broker's position plus the remaining size of this
  strategy's own orders that are still alive (so two entries in a row cannot each
  use the whole limit).
- An order that reduces exposure (the position moves towards zero without crossing
  it) is always sent unchanged.
- After `max_drawdown` has halted the strategy, or while `max_daily_loss` halts the
  day, every other order is refused.
- Otherwise the part that opens (or adds to) a position is cut so that the position
  is at most `max_position_size` shares and at most `max_concentration * equity /
  close` shares (both rounded down to whole shares); then the whole order is cut to
  `max_order_notional / close` shares, never below the part that closes. An order
  cut to zero is refused.
- Day boundaries: at the first bar of a new calendar date (UTC), the day's opening
  equity is the equity at the previous bar (the starting cash on the first bar).
  When equity falls below `(1 - max_daily_loss)` of it, entries are refused until
  the next date.
- Drawdown: when equity falls below `(1 - max_drawdown)` of its running peak, the
  strategy halts for good: open orders are cancelled and every position closed.

The rules live in `kubetrader.risk.RiskEngine`, the one engine that also gates every
order at the broker (`kubetrader.gate.GatedBroker` in a backtest, the live session),
so a strategy that calls the broker directly meets the same limits, refused instead
of cut. Each reduction, refusal or halt is logged and appended to `self.risk_events` as a
`RiskEvent`, which the runner copies into the result. Subclasses that override
`notify_cashvalue` must call `super().notify_cashvalue(cash, value)`.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any, Literal

import backtrader as bt

from kubetrader.results.schema import RiskEvent
from kubetrader.risk import RiskEngine
from kubetrader.specs import RiskSpec

log = logging.getLogger(__name__)
RiskAction = Literal["reduced", "refused", "halted_day", "halted", "flattened"]

RISK_PARAMS: tuple[str, ...] = (
    "max_position_size",
    "max_concentration",
    "max_daily_loss",
    "max_drawdown",
    "max_order_notional",
    "max_orders_per_minute",
    "max_price_deviation",
)


class BaseStrategy(bt.Strategy):
    """Backtrader strategy with pre-trade risk checks; subclass it and write `next` as usual."""

    params: tuple[tuple[str, Any], ...] = (
        ("max_position_size", None),  # shares per symbol
        ("max_concentration", None),  # fraction of equity in one symbol
        ("max_daily_loss", None),  # fraction of the day's opening equity
        ("max_drawdown", None),  # fraction from the equity peak; halts for good
        ("max_order_notional", None),  # currency per order
        ("max_orders_per_minute", None),  # orders sent per minute (bar time in a backtest)
        ("max_price_deviation", None),  # a limit price's largest distance from the last trade
    )

    def __init__(self) -> None:
        super().__init__()
        self.risk_events: list[RiskEvent] = []
        self._own_orders: list[Any] = []
        # The broker's engine when it has one (the backtest's GatedBroker, the live session's
        # port): one engine sizes here and checks at the gate. A plain Backtrader broker (a
        # hand-built Cerebro) gets an engine from this strategy's own params.
        engine = getattr(self.broker, "risk", None)
        self._owns_engine = not isinstance(engine, RiskEngine)
        if not isinstance(engine, RiskEngine):
            engine = RiskEngine(RiskSpec(**{name: getattr(self.p, name) for name in RISK_PARAMS}))
        self.risk: RiskEngine = engine
        self._seen_transitions = 0

    @property
    def halted(self) -> bool:
        """Halted for good by the drawdown limit."""
        return bool(self.risk.halted_for_good)

    @property
    def halted_day(self) -> bool:
        """Halted for the rest of the day by the daily-loss limit."""
        return bool(self.risk.halted_day)

    # ---- per-bar checks -------------------------------------------------------------

    def notify_cashvalue(self, cash: float, value: float) -> None:
        """Called once per bar with the equity at the bar's close, before `next`.

        The engine sees the equity here (own engine) or at the gate (the broker's), the
        same value either way; a halt is recorded, and the drawdown halt flattens.
        """
        engine = self.risk
        if not engine.watches_equity:
            return  # nothing to watch: keep the per-bar cost at zero
        if self._owns_engine:
            engine.observe(value, int(self._now_num()))  # Backtrader's day number of the bar (UTC)
        new = engine.transitions[self._seen_transitions :]
        self._seen_transitions = len(engine.transitions)
        for transition in new:
            self._record(self.datas[0], transition.rule, transition.action, message=transition.message)
            if transition.action == "halted":
                self.emergency_stop()

    def emergency_stop(self) -> None:
        """Cancel this strategy's open orders and close every position (reducing orders always pass)."""
        for order in list(self._own_orders):
            if order.alive():
                self.cancel(order)
        self._own_orders.clear()
        for data in self.datas:
            size = self.getposition(data).size
            if size:
                self.close(data=data)
                self._record(data, "emergency_stop", "flattened", requested=abs(size), allowed=abs(size))

    # ---- helpers for subclasses --------------------------------------------------------

    def entry_size(self, data: Any, fraction: float) -> int:
        """Whole shares worth `fraction` of equity at the current close: floor(fraction * equity / close)."""
        price = float(data.close[0])
        if price <= 0:
            return 0
        return int(fraction * self.broker.getvalue() // price)

    def has_open_order(self, data: Any) -> bool:
        """Whether one of this strategy's orders for `data` is still waiting to be filled."""
        return any(o.alive() and o.data is data for o in self._own_orders)

    # ---- the order path -------------------------------------------------------------

    def buy(self, data: Any = None, size: Any = None, *args: Any, **kwargs: Any) -> Any:
        data = self._data(data)
        size = size if size is not None else self.getsizing(data, isbuy=True)
        allowed = self._pretrade(data, abs(size), kwargs.get("parent"))
        if not allowed:
            return None
        return self._track(super().buy(data, allowed, *args, **kwargs))

    def sell(self, data: Any = None, size: Any = None, *args: Any, **kwargs: Any) -> Any:
        data = self._data(data)
        size = size if size is not None else self.getsizing(data, isbuy=False)
        allowed = self._pretrade(data, -abs(size), kwargs.get("parent"))
        if not allowed:
            return None
        return self._track(super().sell(data, allowed, *args, **kwargs))

    def _pretrade(self, data: Any, signed: float, parent: Any) -> float:
        """The size (positive) that may be sent for a signed order size; 0 refuses it."""
        requested = abs(signed)
        if not requested:
            return 0
        if parent is not None:
            return requested  # a bracket's child only ever closes its parent's position
        position = self.getposition(data).size + self._pending_size(data)
        price = float(data.close[0])
        equity = self.broker.getvalue() if self.risk.limits.max_concentration is not None else 0.0
        verdict = self.risk.size(signed, position=position, price=price, equity=equity)
        if verdict.allowed < requested:
            action: RiskAction = "reduced" if verdict.allowed else "refused"
            self._record(data, verdict.rule, action, requested, verdict.allowed, verdict.message)
        return verdict.allowed

    def _pending_size(self, data: Any) -> float:
        """The signed remaining size of live orders on `data`: the broker's count when it keeps one
        (the gate counts every order, also those sent to the broker directly), else this strategy's."""
        alive = [o for o in self._own_orders if o.alive()]
        self._own_orders = alive
        working = getattr(self.broker, "working_size", None)
        if working is not None:
            return float(working(data))
        total = 0.0
        for order in alive:
            if order.data is data:
                total += order.executed.remsize  # signed: what is still to be filled
        return total

    def _track(self, order: Any) -> Any:
        if order is not None:
            self._own_orders.append(order)
        return order

    def _data(self, data: Any) -> Any:
        if isinstance(data, str):
            return self.getdatabyname(data)
        return data if data is not None else self.datas[0]

    def _now_num(self) -> float:
        """The current bar's time as Backtrader's float: the latest among the datas.

        The strategy's own clock is not advanced yet when `notify_cashvalue` runs.
        """
        return max((d.datetime[0] for d in self.datas if len(d)), default=self.datas[0].datetime[0])

    def _record(
        self,
        data: Any,
        rule: str,
        action: RiskAction,
        requested: float | None = None,
        allowed: float | None = None,
        message: str = "",
    ) -> None:
        event = RiskEvent(
            time=bt.num2date(self._now_num()).replace(tzinfo=dt.UTC).isoformat(),
            symbol=str(data._name),
            rule=rule,
            action=action,
            requested=requested,
            allowed=allowed,
            message=message,
        )
        self.risk_events.append(event)
        level = logging.INFO if action in ("reduced", "refused") else logging.WARNING
        log.log(level, "risk %s by %s on %s: %s", event.action, event.rule, event.symbol, event.message)
