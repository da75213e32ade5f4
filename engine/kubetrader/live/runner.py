"""LiveRunner: a BaseStrategy subclass, unchanged, on live bars through the session.

Two Backtrader classes bridge to the session, following backtrader's own IB store
pattern (feeds/ibdata.py, brokers/ibbroker.py): `SessionFeed` is a live DataBase whose
`_load` pumps the session and hands over queued bars (None = "nothing yet, still
live"); `SessionBroker` is a BrokerBase whose orders go through the session (risk ->
journal -> broker) and are completed from broker fills. The strategy cannot tell it
from a backtest, which is the point: one strategy class, two runners.

Neither holds the session. The strategy reaches its broker (`self.broker`), its feeds
(`self.datas`, `self.env`) and their params, so they hold ports: `OrderPort` speaks
only in order intents (submit, cancel, read-only views) and `BarPort` only hands over
bars. No public attribute leads from the strategy to the session or the raw broker;
the one way out is `OrderPort.submit`, the risk gate. (This is an in-process boundary
against a strategy's mistakes and shortcuts, not a sandbox: Python code that digs into
private attributes, or opens its own socket to the gateway, needs a process boundary.)
"""

from __future__ import annotations

import collections
import datetime as dt
import logging
from typing import Any

import backtrader as bt

from kubetrader.live.broker import Bar, BrokerOrder, Fill, OrderRequest, OrderType, Side
from kubetrader.live.journal import make_order_ref
from kubetrader.live.session import Session
from kubetrader.risk import RiskEngine

log = logging.getLogger(__name__)


class BarPort:
    """What a feed may do with the session: pump it and take its symbol's bars."""

    __slots__ = ("_session",)

    def __init__(self, session: Session) -> None:
        self._session = session
        session.delivering = True

    def pending(self, symbol: str) -> bool:
        return bool(self._session.history[symbol] or self._session.bars[symbol])

    def history_bar(self, symbol: str) -> Bar | None:
        """The next warm-up bar (`Session._warm_up`), or None once the history is spent."""
        history = self._session.history[symbol]
        return history.popleft() if history else None

    def next_bar(self, symbol: str, qcheck: float) -> Bar | bool | None:
        """The next bar, or False (ended), or None (nothing yet, still live)."""
        session = self._session
        queue = session.bars[symbol]
        if not queue:
            if session.finished:
                return False
            session.pump(qcheck)
        if not queue:
            if session.finished or symbol in session.ended:
                return False
            return None
        bar = queue.popleft()
        session.deliver(bar)
        return bar


class OrderPort:
    """The strategy-facing side of the session: order intents in, read-only views out."""

    __slots__ = ("_session",)

    def __init__(self, session: Session) -> None:
        self._session = session

    @property
    def risk(self) -> RiskEngine:
        """The session's engine: strategies size against the limits the gate enforces."""
        return self._session.risk

    @property
    def deployment(self) -> str:
        return self._session.config.deployment

    @property
    def cash(self) -> float:
        return self._session.cash

    @property
    def equity(self) -> float:
        return self._session.equity

    def price(self, symbol: str) -> float:
        return self._session.prices.get(symbol, 0.0)

    def position(self, symbol: str) -> tuple[float, float]:
        held = self._session.positions.get(symbol)
        return (held.quantity, held.avg_cost) if held else (0.0, 0.0)

    def submit(self, request: OrderRequest) -> str | None:
        """Through the risk gate; the refusal reason, or None when sent."""
        return self._session.submit(request)

    def cancel(self, order_ref: str) -> None:
        self._session.cancel(order_ref)

    def listen(self, on_order: Any, on_fill: Any) -> None:
        self._session.order_listeners.append(on_order)
        self._session.fill_listeners.append(on_fill)


class SessionFeed(bt.feed.DataBase):
    """One symbol's bars from the session; ends when the session finishes or the replay ends."""

    params = (("port", None), ("symbol", ""), ("qcheck", 0.05))

    def islive(self) -> bool:
        return True

    def haslivedata(self) -> bool:
        return bool(self.p.port.pending(self.p.symbol))

    def _load(self) -> bool | None:
        """History first (status DELAYED, as backtrader's IBData backfills), then live bars (LIVE).
        `SessionBroker` sends nothing on a bar that is not LIVE."""
        bar = self.p.port.history_bar(self.p.symbol)
        if bar is not None:
            self._set(bar)
            if self._laststatus != self.DELAYED:
                self.put_notification(self.DELAYED)
            return True
        bar = self.p.port.next_bar(self.p.symbol, self.p.qcheck)
        if not isinstance(bar, Bar):
            return bar
        self._set(bar)
        if self._laststatus != self.LIVE:
            self.put_notification(self.LIVE)
        return True

    def _set(self, bar: Bar) -> None:
        self.lines.datetime[0] = bt.date2num(bar.time.replace(tzinfo=None))
        self.lines.open[0] = bar.open
        self.lines.high[0] = bar.high
        self.lines.low[0] = bar.low
        self.lines.close[0] = bar.close
        self.lines.volume[0] = bar.volume
        self.lines.openinterest[0] = 0.0


class SessionBroker(bt.BrokerBase):
    """Backtrader broker over the session: positions and cash mirror the broker, fills complete orders."""

    params = (("port", None),)

    def __init__(self) -> None:
        super().__init__()
        self.port: OrderPort = self.p.port
        self.risk: RiskEngine = self.port.risk
        self.notifs: collections.deque[Any] = collections.deque()
        self.orders: dict[str, Any] = {}
        self.positions: dict[Any, bt.Position] = collections.defaultdict(bt.Position)
        self._datas: dict[str, Any] = {}
        self._seq: collections.Counter[tuple[str, float]] = collections.Counter()
        self.port.listen(self._on_order, self._on_fill)

    def start(self) -> None:
        super().start()
        self.startingcash = self.port.cash  # read by Backtrader's analyzers at the end
        for data in self.cerebro.datas if hasattr(self, "cerebro") else []:
            self._bind(data)

    def _bind(self, data: Any) -> None:
        symbol = data.p.symbol
        if symbol not in self._datas:
            self._datas[symbol] = data
            quantity, avg_cost = self.port.position(symbol)
            if quantity:
                self.positions[data] = bt.Position(quantity, avg_cost)

    def getcash(self) -> float:
        return self.port.cash

    def getvalue(self, datas: Any = None) -> float:
        if datas:
            return sum(self.getposition(d).size * self.port.price(d.p.symbol) for d in datas)
        return self.port.equity

    def getposition(self, data: Any) -> bt.Position:
        self._bind(data)
        return self.positions[data]

    def working_size(self, data: Any) -> float:
        """The signed remaining size of this broker's live orders on `data` (what the gate counts too)."""
        return sum(o.executed.remsize for o in self.orders.values() if o.data is data and o.alive())

    def get_notification(self) -> Any:
        return self.notifs.popleft() if self.notifs else None

    def next(self) -> None:
        self.notifs.append(None)  # a marker, as in Backtrader's own brokers

    def buy(self, owner: Any, data: Any, size: float, price: float | None = None, plimit: float | None = None,
            exectype: Any = None, valid: Any = None, tradeid: int = 0, oco: Any = None, trailamount: Any = None,
            trailpercent: Any = None, parent: Any = None, transmit: bool = True, **kwargs: Any) -> Any:  # fmt: skip
        order = bt.BuyOrder(owner=owner, data=data, size=size, price=price, pricelimit=plimit, exectype=exectype,
                            valid=valid, tradeid=tradeid, oco=oco, parent=parent, transmit=transmit)  # fmt: skip
        return self._submit(order)

    def sell(self, owner: Any, data: Any, size: float, price: float | None = None, plimit: float | None = None,
             exectype: Any = None, valid: Any = None, tradeid: int = 0, oco: Any = None, trailamount: Any = None,
             trailpercent: Any = None, parent: Any = None, transmit: bool = True, **kwargs: Any) -> Any:  # fmt: skip
        order = bt.SellOrder(owner=owner, data=data, size=size, price=price, pricelimit=plimit, exectype=exectype,
                             valid=valid, tradeid=tradeid, oco=oco, parent=parent, transmit=transmit)  # fmt: skip
        return self._submit(order)

    def _submit(self, order: Any) -> Any:
        data = order.data
        self._bind(data)
        order.addcomminfo(self.getcommissioninfo(data))
        symbol = data.p.symbol
        bar_num = float(data.datetime[0])
        self._seq[(symbol, bar_num)] += 1
        side: Side = "BUY" if order.isbuy() else "SELL"
        ref = make_order_ref(self.port.deployment, symbol, bt.num2date(bar_num), side, self._seq[(symbol, bar_num)])
        order_type: OrderType = "LMT" if order.exectype == bt.Order.Limit else "MKT"
        if data._laststatus != data.LIVE:
            # a warm-up (history) bar: the decision is in the past, nothing goes to the broker
            order.addinfo(reason="warm-up bar: not sent")
            order.reject(self)
            self.notify(order)
            return order
        if order.exectype not in (None, bt.Order.Market, bt.Order.Limit):
            order.reject(self)
            self.notify(order)
            return order
        limit = order.price if order_type == "LMT" else None
        request = OrderRequest(ref, symbol, side, abs(order.size), order_type, limit)
        order.submit(self)
        self.notify(order)
        reason = self.port.submit(request)
        if reason is not None:
            order.addinfo(reason=reason)
            order.reject(self)
            self.notify(order)
            return order
        order.accept(self)
        self.notify(order)
        order.kt_ref = ref
        self.orders[ref] = order
        return order

    def cancel(self, order: Any) -> Any:
        ref = getattr(order, "kt_ref", None)
        if ref and order.alive():
            self.port.cancel(ref)
        return order

    def notify(self, order: Any) -> None:
        self.notifs.append(order.clone())

    def _on_order(self, update: BrokerOrder) -> None:
        order = self.orders.get(update.order_ref)
        if order is None or not order.alive():
            return
        if update.status in ("Cancelled", "ApiCancelled"):
            order.cancel()
            self.notify(order)
        elif update.status == "Inactive":
            order.reject(self)
            self.notify(order)

    def _on_fill(self, fill: Fill, new: bool) -> None:
        order = self.orders.get(fill.order_ref)
        if order is None or not new or not order.alive():
            return
        data = order.data
        size = fill.quantity if fill.side == "BUY" else -fill.quantity
        position = self.positions[data]
        pprice_orig = position.price
        psize, pprice, opened, closed = position.update(size, fill.price)
        comminfo = order.comminfo
        closedvalue = comminfo.getoperationcost(closed, pprice_orig)
        closedcomm = fill.commission * abs(closed) / abs(size) if size else 0.0
        openedvalue = comminfo.getoperationcost(opened, fill.price)
        openedcomm = fill.commission - closedcomm
        margin = comminfo.getvaluesize(size, fill.price)
        pnl = comminfo.profitandloss(-closed, pprice_orig, fill.price)
        when = bt.date2num(fill.time.astimezone(dt.UTC).replace(tzinfo=None))
        order.execute(when, size, fill.price, closed, closedvalue, closedcomm, opened, openedvalue, openedcomm,
                      margin, pnl, psize, pprice)  # fmt: skip
        if order.executed.remsize:
            order.partial()
        else:
            order.completed()
        self.notify(order)


class LiveRunner:
    """Runs one strategy class on the session's symbols until stopped (or the replay ends)."""

    def __init__(self, session: Session, strategy: type[Any], params: dict[str, Any] | None = None) -> None:
        self.session = session
        self.strategy = strategy
        self.params = params or {}
        self.strategy_instance: Any = None

    def run(self) -> Any:
        cerebro = bt.Cerebro(stdstats=False, live=True, quicknotify=True)
        broker = SessionBroker(port=OrderPort(self.session))  # type: ignore[call-arg]
        cerebro.setbroker(broker)
        bars = BarPort(self.session)
        for symbol in self.session.config.symbols:
            cerebro.adddata(SessionFeed(port=bars, symbol=symbol, name=symbol), name=symbol)
        cerebro.addstrategy(self.strategy, **self.params)
        strategies = cerebro.run()
        self.strategy_instance = strategies[0] if strategies else None
        return self.strategy_instance
