"""`RiskEngine`: the one pre-trade risk engine, the same object in backtests and live.

Every order passes it twice in the same way in both runtimes:

1. `size` (the strategy side, `BaseStrategy`): cut an order to what the limits allow,
   so a strategy's `buy(size=1000)` becomes the 33 shares `maxOrderNotional` leaves
   room for. A strategy that skips this step only loses the convenience.
2. `check` (the gate, between every order and the broker: `GatedBroker` in a backtest,
   the session in live): the order as it stands either passes every limit or is
   refused with a reason. Nothing reaches a broker (simulated or IB) around it.

Both steps use the same numbers: the position *plus the remaining size of working
orders* (two entries in a row cannot each use the whole limit), the reference price
(the last trade the strategy saw), equity, and the trading state. The sizing rules
are exactly the ones `BaseStrategy` has always applied (its docstring lists them; the
backtest parity tests pin them to the cent), so a sized order always passes the gate.

Trading state, as NautilusTrader's `TradingState`:

- ACTIVE: every limit applies.
- REDUCING: only orders that move a position toward zero without crossing it
  (computed on position plus working orders) pass; an order that would flip the
  position is refused whole. The daily-loss limit reduces until the next trading
  day, the drawdown limit for good, and the kill switch (`/halt`) until resumed.
- HALTED: no order at all from the strategy (cancels always pass): set when the
  engine cannot trust its own view, e.g. the broker's cash or positions disagree with
  the journal. An operator's flatten (`origin="operator"`) may still close positions.

The order rate (`maxOrdersPerMinute`) counts every order sent, reducing ones too, on the
clock the runtime gives: the bar's time in a backtest, the monotonic clock live. The
price band (`maxPriceDeviation`) refuses a limit price further than that fraction
from the last trade.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Hashable
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:  # only a type here: `live emergency-stop` imports this module and must not wait for pydantic
    from kubetrader.specs import RiskSpec

RATE_WINDOW_SECONDS = 60.0
Origin = Literal["strategy", "operator"]


class TradingState(StrEnum):
    ACTIVE = "ACTIVE"
    REDUCING = "REDUCING"
    HALTED = "HALTED"


@dataclass(frozen=True)
class Verdict:
    """How much of an order may go: `allowed` shares (0 refuses it), the rule that bound, and why."""

    allowed: float
    rule: str = ""
    message: str = ""


@dataclass(frozen=True)
class Transition:
    """A state change seen by `observe`: a halt for the day (`halted_day`) or for good (`halted`)."""

    rule: str
    action: Literal["halted_day", "halted"]
    message: str


def reduces_exposure(position: float, signed_quantity: float) -> bool:
    """True when the order only shrinks the position toward zero (never flips it)."""
    after = position + signed_quantity
    return signed_quantity != 0 and abs(after) <= abs(position) and after * position >= 0


class RiskEngine:
    """Limits plus the state they need (day's opening equity, peak, halts, recent sends)."""

    def __init__(self, limits: RiskSpec) -> None:
        self.limits = limits
        self.day: Hashable | None = None
        self.day_open_equity = 0.0
        self.last_equity: float | None = None
        self.peak_equity = -math.inf
        self.halted_for_good: str | None = None  # drawdown: REDUCING for good
        self.halted_day: str | None = None  # daily loss: REDUCING until the day turns
        self.manual: tuple[TradingState, str] | None = None  # kill switch, stop, reconciliation
        self.transitions: list[Transition] = []
        self._sent: deque[float] = deque()

    # ------------------------------------------------------------ state

    @property
    def watches_equity(self) -> bool:
        return self.limits.max_drawdown is not None or self.limits.max_daily_loss is not None

    @property
    def state(self) -> TradingState:
        if self.manual is not None and self.manual[0] is TradingState.HALTED:
            return TradingState.HALTED
        if self.manual is not None or self.halted_for_good or self.halted_day:
            return TradingState.REDUCING
        return TradingState.ACTIVE

    @property
    def reason(self) -> str | None:
        """Why the state is not ACTIVE (the most severe cause first), or None."""
        if self.manual is not None and self.manual[0] is TradingState.HALTED:
            return self.manual[1]
        if self.manual is not None:
            return self.manual[1]
        return self.halted_for_good or self.halted_day

    def set_manual(self, state: TradingState, reason: str) -> None:
        """An operator's or the runtime's state: REDUCING (kill switch, stop) or HALTED; never weakens HALTED."""
        if state is TradingState.ACTIVE:
            self.manual = None
        elif self.manual is None or self.manual[0] is not TradingState.HALTED or state is TradingState.HALTED:
            self.manual = (state, reason)

    def observe(self, equity: float, day: Hashable) -> list[Transition]:
        """Fold one equity sample in: roll the day, raise the peak, latch the halts. Repeat calls are harmless.

        The day's opening equity is the last equity seen before the day turned (the first
        sample's on the first day), which in a backtest is the previous bar's close.
        """
        if not self.watches_equity:
            return []
        if day != self.day:
            self.day = day
            self.day_open_equity = self.last_equity if self.last_equity is not None else equity
            self.halted_day = None
        self.last_equity = equity
        self.peak_equity = max(self.peak_equity, equity)
        new: list[Transition] = []
        limit = self.limits.max_drawdown
        if limit is not None and not self.halted_for_good and equity < self.peak_equity * (1 - limit):
            message = f"equity {equity:.2f} is more than {limit:.2%} below its peak {self.peak_equity:.2f}"
            self.halted_for_good = f"drawdown: {message}"
            new.append(Transition("max_drawdown", "halted", message))
        limit = self.limits.max_daily_loss
        if limit is not None and not self.halted_day and equity < self.day_open_equity * (1 - limit):
            message = f"equity {equity:.2f} is more than {limit:.2%} below the day's open {self.day_open_equity:.2f}"
            self.halted_day = f"daily loss: {message}"
            new.append(Transition("max_daily_loss", "halted_day", message))
        self.transitions.extend(new)
        return new

    # ------------------------------------------------------------ sizing (strategy side)

    def size(self, signed: float, *, position: float, price: float, equity: float) -> Verdict:
        """The size (positive) that may be sent for a signed order size; see the module docstring.

        `position` is the effective position: held plus the remaining size of working orders.
        """
        requested = abs(signed)
        if not requested:
            return Verdict(0.0)
        if reduces_exposure(position, signed):
            return Verdict(requested)
        if self.halted_for_good:
            return Verdict(0.0, "max_drawdown", "trading halted for good")
        if self.halted_day:
            return Verdict(0.0, "max_daily_loss", "trading halted for the day")
        if self.manual is not None:
            return Verdict(0.0, "trading_state", f"{self.state.value}: {self.manual[1]}")
        limits = self.limits
        closing = min(requested, abs(position)) if position * signed < 0 else 0
        opening = requested - closing
        held = abs(position) if position * signed > 0 else 0  # same-side shares already held
        allowed_open, rule = opening, ""
        if limits.max_position_size is not None:
            room = max(0.0, math.floor(limits.max_position_size) - held)
            if room < allowed_open:
                allowed_open, rule = room, "max_position_size"
        if limits.max_concentration is not None and price > 0:
            room = max(0.0, math.floor(limits.max_concentration * equity / price) - held)
            if room < allowed_open:
                allowed_open, rule = room, "max_concentration"
        allowed = closing + allowed_open
        if limits.max_order_notional is not None and price > 0:
            cap = max(closing, math.floor(limits.max_order_notional / price))
            if cap < allowed:
                allowed, rule = cap, "max_order_notional"
        if allowed < requested:
            return Verdict(allowed, rule, f"{'buy' if signed > 0 else 'sell'} {requested:g} at {price:.4f}")
        return Verdict(requested)

    # ------------------------------------------------------------ the gate

    def check(
        self,
        symbol: str,
        signed: float,
        *,
        position: float,
        price: float,
        equity: float,
        now: float,
        limit_price: float | None = None,
        origin: Origin = "strategy",
    ) -> str | None:
        """The reason to refuse this order exactly as it stands, or None to let it through.

        Call `sent(now)` once it has gone out (the rate limit counts sent orders).
        """
        requested = abs(signed)
        if requested <= 0 or not math.isfinite(requested):
            return f"quantity must be positive, got {requested}"
        if price <= 0 or not math.isfinite(price):
            return f"no valid reference price for {symbol} ({price})"
        reducing = reduces_exposure(position, signed)
        if origin == "operator":
            return None if reducing else f"an operator order must only reduce the {symbol} position ({position:g})"
        if self.state is TradingState.HALTED:
            return f"HALTED: {self.reason}; no orders"
        limits = self.limits
        if limits.max_orders_per_minute is not None:
            while self._sent and now - self._sent[0] >= RATE_WINDOW_SECONDS:
                self._sent.popleft()
            if len(self._sent) >= limits.max_orders_per_minute:
                return f"order rate: {len(self._sent)} orders in the last minute, limit {limits.max_orders_per_minute}"
        if limit_price is not None and limits.max_price_deviation is not None:
            deviation = abs(limit_price / price - 1.0)
            if deviation > limits.max_price_deviation:
                return (
                    f"limit price {limit_price:g} is {deviation:.2%} from the last trade {price:g} of {symbol}, "
                    f"band {limits.max_price_deviation:.2%}"
                )
        if reducing:
            return None
        if self.state is TradingState.REDUCING:
            return f"REDUCING: {self.reason}; only orders that reduce a position without flipping it pass"
        if limits.max_concentration is not None and equity <= 0:
            return "equity is not positive; no new exposure"
        verdict = self.size(signed, position=position, price=price, equity=equity)
        if verdict.allowed >= requested:
            return None
        after = position + signed
        if verdict.rule == "max_position_size":
            return (
                f"position {after:g} {symbol} (with working orders) would exceed the limit {limits.max_position_size:g}"
            )
        if verdict.rule == "max_concentration":
            share = abs(after) * price / equity
            return (
                f"{symbol} would be {share:.2%} of equity (with working orders), limit {limits.max_concentration:.2%}"
            )
        notional = requested * price
        return f"order notional {notional:,.2f} exceeds the limit {limits.max_order_notional or 0:,.2f}"

    def sent(self, now: float) -> None:
        self._sent.append(now)

    # ------------------------------------------------------------ persistence

    def to_record(self) -> dict[str, Any]:
        """What must survive a restart (the journal stores it): state, halts, day baseline, peak."""
        return {
            "manual": [self.manual[0].value, self.manual[1]] if self.manual else None,
            "halted_for_good": self.halted_for_good,
            "halted_day": self.halted_day,
            "day": self.day if isinstance(self.day, (str, int, float)) or self.day is None else str(self.day),
            "day_open_equity": self.day_open_equity,
            "last_equity": self.last_equity,
            "peak_equity": self.peak_equity if math.isfinite(self.peak_equity) else None,
        }

    def restore(self, record: dict[str, Any]) -> None:
        manual = record.get("manual")
        self.manual = (TradingState(manual[0]), str(manual[1])) if manual else None
        self.halted_for_good = record.get("halted_for_good")
        self.halted_day = record.get("halted_day")
        self.day = record.get("day")
        self.day_open_equity = float(record.get("day_open_equity") or 0.0)
        last = record.get("last_equity")
        self.last_equity = float(last) if last is not None else None
        peak = record.get("peak_equity")
        self.peak_equity = float(peak) if peak is not None else -math.inf
