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

Each reduction, refusal or halt is logged and appended to `self.risk_events` as a
`RiskEvent`, which the runner copies into the result. Subclasses that override
`notify_cashvalue` must call `super().notify_cashvalue(cash, value)`.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from typing import Any, Literal

import backtrader as bt

from kubetrader.results.schema import RiskEvent

log = logging.getLogger(__name__)
RiskAction = Literal["reduced", "refused", "halted_day", "halted", "flattened"]

RISK_PARAMS: tuple[str, ...] = (
    "max_position_size",
    "max_concentration",
    "max_daily_loss",
    "max_drawdown",
    "max_order_notional",
)


class BaseStrategy(bt.Strategy):
    """Backtrader strategy with pre-trade risk checks; subclass it and write `next` as usual."""

    params: tuple[tuple[str, Any], ...] = (
        ("max_position_size", None),  # shares per symbol
        ("max_concentration", None),  # fraction of equity in one symbol
        ("max_daily_loss", None),  # fraction of the day's opening equity
        ("max_drawdown", None),  # fraction from the equity peak; halts for good
        ("max_order_notional", None),  # currency per order
    )

    def __init__(self) -> None:
        super().__init__()
        self.risk_events: list[RiskEvent] = []
        self.halted = False
        self.halted_day = False
        self._own_orders: list[Any] = []
        self._peak_equity = -math.inf
        self._day: Any = None
        self._day_open_equity = 0.0
        self._last_equity: float | None = None

    # ---- per-bar checks -------------------------------------------------------------

    def notify_cashvalue(self, cash: float, value: float) -> None:
        """Called once per bar with the equity at the bar's close, before `next`."""
        if self.p.max_drawdown is None and self.p.max_daily_loss is None:
            return  # nothing to watch: keep the per-bar cost at zero
        day = int(self._now_num())  # Backtrader's day number of the bar (UTC, as the feeds are)
        if day != self._day:
            self._day = day
            self._day_open_equity = self._last_equity if self._last_equity is not None else value
            self.halted_day = False
        self._last_equity = value
        self._peak_equity = max(self._peak_equity, value)
        limit = self.p.max_drawdown
        if limit is not None and not self.halted and value < self._peak_equity * (1 - limit):
            self.halted = True
            self._record(
                self.datas[0],
                "max_drawdown",
                "halted",
                message=f"equity {value:.2f} is more than {limit:.2%} below its peak {self._peak_equity:.2f}",
            )
            self.emergency_stop()
        limit = self.p.max_daily_loss
        if limit is not None and not self.halted_day and value < self._day_open_equity * (1 - limit):
            self.halted_day = True
            self._record(
                self.datas[0],
                "max_daily_loss",
                "halted_day",
                message=f"equity {value:.2f} is more than {limit:.2%} below the day's open {self._day_open_equity:.2f}",
            )

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
        new = position + signed
        if abs(new) <= abs(position) and new * position >= 0:
            return requested  # reduces exposure: always allowed
        if self.halted:
            self._record(data, "max_drawdown", "refused", requested, 0, "trading halted for good")
            return 0
        if self.halted_day:
            self._record(data, "max_daily_loss", "refused", requested, 0, "trading halted for the day")
            return 0
        closing = min(requested, abs(position)) if position * signed < 0 else 0
        opening = requested - closing
        held = abs(position) if position * signed > 0 else 0  # same-side shares already held
        price = float(data.close[0])
        allowed_open, rule = opening, ""
        if self.p.max_position_size is not None:
            room = max(0.0, math.floor(self.p.max_position_size) - held)
            if room < allowed_open:
                allowed_open, rule = room, "max_position_size"
        if self.p.max_concentration is not None and price > 0:
            equity = self.broker.getvalue()
            room = max(0.0, math.floor(self.p.max_concentration * equity / price) - held)
            if room < allowed_open:
                allowed_open, rule = room, "max_concentration"
        allowed = closing + allowed_open
        if self.p.max_order_notional is not None and price > 0:
            cap = max(closing, math.floor(self.p.max_order_notional / price))
            if cap < allowed:
                allowed, rule = cap, "max_order_notional"
        if allowed < requested:
            self._record(
                data,
                rule,
                "reduced" if allowed else "refused",
                requested,
                allowed,
                f"{'buy' if signed > 0 else 'sell'} {requested:g} at {price:.4f}",
            )
        return allowed

    def _pending_size(self, data: Any) -> float:
        alive = [o for o in self._own_orders if o.alive()]
        self._own_orders = alive
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
