"""Test-only strategies (loaded with KUBETRADER_STRATEGY_PREFIXES including this module)."""

from __future__ import annotations

from typing import Any, ClassVar

import backtrader as bt

from strategies.base_strategy import BaseStrategy


class RaisesMidRun(BaseStrategy):
    """Raises on the `fail_at`-th bar, to check that the runner names the exception and the bar."""

    params: tuple[tuple[str, Any], ...] = (("fail_at", 50),)

    def next(self) -> None:
        if len(self) >= self.p.fail_at:
            raise RuntimeError("probe failure")


class Churn(BaseStrategy):
    """Enters with `fraction` of equity when flat, exits on the next bar: an entry attempt every other bar."""

    params: tuple[tuple[str, Any], ...] = (("fraction", 0.5),)

    def next(self) -> None:
        if self.has_open_order(self.data):
            return
        if self.position.size:
            self.close()
        else:
            self.buy(size=self.entry_size(self.data, self.p.fraction))


class NotAStrategy:
    """Not a BaseStrategy subclass."""


# (bar number, how, side, size, limit price as a multiple of the close or None)
# how: "sized" goes through BaseStrategy.buy/sell (cut to fit), "raw" straight to self.broker (the gate only).
ORDER_SCHEDULE: tuple[tuple[int, str, str, float, float | None], ...] = (
    (2, "raw", "buy", 30, 0.8),  # rests: working orders count from here on
    (3, "raw", "buy", 30, 0.8),  # 2 x 30 resting would be 60 against maxPositionSize 50
    (4, "sized", "buy", 30, None),  # cut to the 20 left
    (5, "raw", "sell", 5, 1.5),  # outside the price band
    (6, "sized", "sell", 100, None),  # cut by the order notional, never below the closing part
    (7, "raw", "sell", 40, None),  # order notional
    (8, "raw", "sell", 30, None),
    (9, "raw", "sell", 30, None),  # position with working orders
    (10, "raw", "buy", 70, None),  # a flip beyond the notional
    (11, "sized", "buy", 100, None),  # from short, through flat: cut
)


class OrderSchedule(BaseStrategy):
    """Sends ORDER_SCHEDULE and records what became of each order in TABLES[tag]: the parity table."""

    TABLES: ClassVar[dict[str, list[tuple[Any, ...]]]] = {}
    params: tuple[tuple[str, Any], ...] = (("tag", "default"),)

    def next(self) -> None:
        table = self.TABLES.setdefault(self.p.tag, [])
        for bar, how, side, size, limit in ORDER_SCHEDULE:
            if bar != len(self):
                continue
            events = len(self.risk_events)
            close = float(self.data.close[0])
            kwargs: dict[str, Any] = {}
            if limit is not None:
                kwargs = {"price": round(close * limit, 2), "exectype": bt.Order.Limit}
            if how == "raw":
                send = self.broker.buy if side == "buy" else self.broker.sell
                order = send(self, self.data, size, **kwargs)
            elif side == "close":
                order = self.close()
            else:
                order = (self.buy if side == "buy" else self.sell)(size=size, **kwargs)
            refused = order is None or order.status == bt.Order.Rejected
            sent = 0.0 if order is None else abs(order.created.size)
            rules = [e.rule for e in self.risk_events[events:]]
            reason = "" if order is None else order.info.get("reason", "")
            table.append((bar, how, side, size, sent, "refused" if refused else "accepted", ",".join(rules), reason))
