"""A broker that fills against replayed bars: paper runs with no gateway (`--replay`).

Same semantics as the backtest broker, so a replay of a strategy agrees with its
backtest: a market order fills at the next bar's open, a limit order fills on the
first later bar that trades through it (at the better of open and limit), costs come
from `kubetrader.costs`. Each `poll` advances every subscribed symbol by one bar.
"""

from __future__ import annotations

import datetime as dt
import itertools
import time
from collections import deque

from kubetrader.costs import CommissionSchedule, commission_schedule, order_commission
from kubetrader.live.broker import (
    Bar,
    BarUpdate,
    BrokerEvent,
    BrokerOrder,
    BrokerUnavailableError,
    EndOfBars,
    Fill,
    FillUpdate,
    OrderRejectedError,
    OrderRequest,
    OrderUpdate,
    Position,
)
from kubetrader.specs import BrokerSpec


class SimulatedBroker:
    """`Broker` over in-memory bars; `bar_interval` > 0 paces the replay in wall-clock time."""

    def __init__(
        self,
        bars: dict[str, list[Bar]],
        *,
        cash: float = 100_000.0,
        schedule: CommissionSchedule | None = None,
        bar_interval: float = 0.0,
    ) -> None:
        self._bars = bars
        self._cash = cash
        self._schedule = schedule or commission_schedule(BrokerSpec())
        self.bar_interval = bar_interval
        self._connected = False
        self._cursor: dict[str, int] = {}
        self._subscribed: list[str] = []
        self._positions: dict[str, Position] = {}
        self._orders: dict[str, BrokerOrder] = {}
        self._fills: list[Fill] = []
        self._events: deque[BrokerEvent] = deque()
        self._ids = itertools.count(1)
        self._ended: set[str] = set()

    def connect(self) -> None:
        self._connected = True

    def disconnect(self) -> None:
        self._connected = False

    def is_connected(self) -> bool:
        return self._connected

    def link_up(self) -> bool:
        return self._connected

    def _require(self, what: str) -> None:
        if not self._connected:
            raise BrokerUnavailableError(f"{what}: simulated broker is disconnected")

    def ping(self) -> float:
        self._require("ping")
        return 0.0

    def _last_price(self, symbol: str) -> float:
        bars = self._bars[symbol]
        return bars[max(0, min(self._cursor.get(symbol, 0), len(bars) - 1))].close

    def account_values(self) -> dict[str, float]:
        self._require("account values")
        market = sum(p.quantity * self._last_price(p.symbol) for p in self._positions.values())
        return {"NetLiquidation": self._cash + market, "TotalCashValue": self._cash, "GrossPositionValue": abs(market)}

    def positions(self) -> list[Position]:
        self._require("positions")
        return [p for p in self._positions.values() if p.quantity]

    def open_orders(self) -> list[BrokerOrder]:
        self._require("open orders")
        return [o for o in self._orders.values() if o.is_open]

    def completed_orders(self) -> list[BrokerOrder]:
        self._require("completed orders")
        return [o for o in self._orders.values() if not o.is_open]

    def executions(self) -> list[Fill]:
        self._require("executions")
        return list(self._fills)

    def historical_bars(self, symbol: str, end: dt.date | None, duration: str, bar_size: str) -> list[Bar]:
        self._require("historical bars")
        bars = self._bars.get(symbol, [])
        return [b for b in bars if end is None or b.time.date() <= end]

    def place_order(self, request: OrderRequest) -> BrokerOrder:
        self._require(f"place order {request.order_ref}")
        if request.symbol not in self._bars:
            raise OrderRejectedError(f"unknown symbol {request.symbol}")
        if request.order_type == "LMT" and request.limit_price is None:
            raise OrderRejectedError(f"{request.order_ref}: a limit order needs a limit price")
        order = BrokerOrder(
            order_ref=request.order_ref,
            broker_id=str(next(self._ids)),
            symbol=request.symbol,
            side=request.side,
            quantity=request.quantity,
            order_type=request.order_type,
            limit_price=request.limit_price,
            status="Submitted",
        )
        self._orders[request.order_ref] = order
        self._events.append(OrderUpdate(order))
        return order

    def cancel_order(self, order_ref: str) -> None:
        self._require(f"cancel {order_ref}")
        order = self._orders.get(order_ref)
        if order is not None and order.is_open:
            self._set(order, status="Cancelled")

    def resize(self, order_ref: str, remaining: float) -> bool:
        self._require(f"modify {order_ref}")
        order = self._orders.get(order_ref)
        if order is None or not order.is_open:
            return False
        self._set(order, quantity=order.filled + remaining)
        return True

    def global_cancel(self) -> None:
        self._require("global cancel")
        for order in list(self._orders.values()):
            if order.is_open:
                self._set(order, status="Cancelled")

    def subscribe_bars(self, symbol: str) -> None:
        if symbol not in self._bars:
            raise OrderRejectedError(f"no bars to replay for {symbol}")
        if symbol not in self._subscribed:
            self._subscribed.append(symbol)
            self._cursor.setdefault(symbol, -1)

    def poll(self, timeout: float) -> list[BrokerEvent]:
        if self.bar_interval > 0:
            time.sleep(min(timeout, self.bar_interval))
        if self._connected:
            for symbol in self._subscribed:
                self._advance(symbol)
        events = list(self._events)
        self._events.clear()
        return events

    def _advance(self, symbol: str) -> None:
        bars = self._bars[symbol]
        index = self._cursor[symbol] + 1
        if index >= len(bars):
            if symbol not in self._ended:
                self._ended.add(symbol)
                self._events.append(EndOfBars(symbol))
            return
        self._cursor[symbol] = index
        bar = bars[index]
        for order in list(self._orders.values()):
            if order.symbol == symbol and order.is_open:
                self._match(order, bar)
        self._events.append(BarUpdate(bar))

    def _match(self, order: BrokerOrder, bar: Bar) -> None:
        price: float | None = bar.open
        if order.order_type == "LMT" and order.limit_price is not None:
            if order.side == "BUY":
                price = min(bar.open, order.limit_price) if bar.low <= order.limit_price else None
            else:
                price = max(bar.open, order.limit_price) if bar.high >= order.limit_price else None
        if price is None:
            return
        signed = order.quantity if order.side == "BUY" else -order.quantity
        commission = order_commission(signed, price, self._schedule)
        old = self._positions.get(order.symbol, Position(order.symbol, 0.0, 0.0))
        qty = old.quantity + signed
        if qty == 0:
            avg = 0.0
        elif old.quantity == 0 or (old.quantity > 0) != (qty > 0):
            avg = price
        elif abs(qty) > abs(old.quantity):
            avg = (old.avg_cost * old.quantity + price * signed) / qty
        else:
            avg = old.avg_cost
        self._positions[order.symbol] = Position(order.symbol, qty, avg)
        self._cash -= signed * price + commission
        fill = Fill(
            exec_id=f"sim-{next(self._ids)}",
            order_ref=order.order_ref,
            symbol=order.symbol,
            side=order.side,
            quantity=order.quantity,
            price=price,
            commission=commission,
            time=bar.time,
        )
        self._fills.append(fill)
        self._events.append(FillUpdate(fill))
        self._set(order, status="Filled", filled=order.quantity, avg_fill_price=price)

    def _set(self, order: BrokerOrder, **changes: object) -> None:
        from dataclasses import replace

        updated = replace(order, **changes)  # type: ignore[arg-type]
        self._orders[order.order_ref] = updated
        self._events.append(OrderUpdate(updated))


def bars_from_frame(symbol: str, frame: object) -> list[Bar]:
    """Bars of a normalized frame from `kubetrader.data.load_bars` (UTC index, OHLCV columns)."""
    import pandas as pd

    assert isinstance(frame, pd.DataFrame)
    columns = [frame[c].astype(float).tolist() for c in ("open", "high", "low", "close", "volume")]
    return [
        Bar(symbol, ts.to_pydatetime(), o, h, lo, c, v)
        for ts, o, h, lo, c, v in zip(frame.index, *columns, strict=True)
    ]
