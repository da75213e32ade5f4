"""LiveRunner: a BaseStrategy subclass, unchanged, on live bars through the session.

Two Backtrader classes bridge to the session, following backtrader's own IB store
pattern (feeds/ibdata.py, brokers/ibbroker.py): `SessionFeed` is a live DataBase whose
`_load` pumps the session and hands over queued bars (None = "nothing yet, still
live"); `SessionBroker` is a BrokerBase whose orders go through the session (risk ->
journal -> broker) and are completed from broker fills. The strategy cannot tell it
from a backtest, which is the point: one strategy class, two runners.
"""

from __future__ import annotations

import collections
import datetime as dt
import logging
from typing import Any

import backtrader as bt

from kubetrader.live.broker import BrokerOrder, Fill, OrderRequest, OrderType, Side
from kubetrader.live.journal import make_order_ref
from kubetrader.live.session import Session

log = logging.getLogger(__name__)


class SessionFeed(bt.feed.DataBase):
    """One symbol's bars from the session; ends when the session finishes or the replay ends."""

    params = (("session", None), ("symbol", ""), ("qcheck", 0.05))

    def islive(self) -> bool:
        return True

    def haslivedata(self) -> bool:
        return bool(self.p.session.bars[self.p.symbol])

    def _load(self) -> bool | None:
        session: Session = self.p.session
        queue = session.bars[self.p.symbol]
        if not queue:
            if session.finished:
                return False
            session.pump(self.p.qcheck)
        if not queue:
            if session.finished or self.p.symbol in session.ended:
                return False
            return None
        bar = queue.popleft()
        self.lines.datetime[0] = bt.date2num(bar.time.replace(tzinfo=None))
        self.lines.open[0] = bar.open
        self.lines.high[0] = bar.high
        self.lines.low[0] = bar.low
        self.lines.close[0] = bar.close
        self.lines.volume[0] = bar.volume
        self.lines.openinterest[0] = 0.0
        if self._laststatus != self.LIVE:
            self.put_notification(self.LIVE)
        return True


class SessionBroker(bt.BrokerBase):
    """Backtrader broker over the session: positions and cash mirror the broker, fills complete orders."""

    params = (("session", None),)

    def __init__(self) -> None:
        super().__init__()
        self.session: Session = self.p.session
        self.notifs: collections.deque[Any] = collections.deque()
        self.orders: dict[str, Any] = {}
        self.positions: dict[Any, bt.Position] = collections.defaultdict(bt.Position)
        self._datas: dict[str, Any] = {}
        self._seq: collections.Counter[tuple[str, float]] = collections.Counter()
        self.session.order_listeners.append(self._on_order)
        self.session.fill_listeners.append(self._on_fill)

    def start(self) -> None:
        super().start()
        self.startingcash = self.session.cash  # read by Backtrader's analyzers at the end
        for data in self.cerebro.datas if hasattr(self, "cerebro") else []:
            self._bind(data)

    def _bind(self, data: Any) -> None:
        symbol = data.p.symbol
        if symbol not in self._datas:
            self._datas[symbol] = data
            existing = self.session.positions.get(symbol)
            if existing and existing.quantity:
                self.positions[data] = bt.Position(existing.quantity, existing.avg_cost)

    def getcash(self) -> float:
        return self.session.cash

    def getvalue(self, datas: Any = None) -> float:
        if datas:
            return sum(self.getposition(d).size * self.session.prices.get(d.p.symbol, 0.0) for d in datas)
        return self.session.equity

    def getposition(self, data: Any) -> bt.Position:
        self._bind(data)
        return self.positions[data]

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
        ref = make_order_ref(
            self.session.config.deployment, symbol, bt.num2date(bar_num), side, self._seq[(symbol, bar_num)]
        )
        order_type: OrderType = "LMT" if order.exectype == bt.Order.Limit else "MKT"
        if order.exectype not in (None, bt.Order.Market, bt.Order.Limit):
            order.reject(self)
            self.notify(order)
            return order
        limit = order.price if order_type == "LMT" else None
        request = OrderRequest(ref, symbol, side, abs(order.size), order_type, limit)
        order.submit(self)
        self.notify(order)
        reason = self.session.submit(request)
        if reason is not None:
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
            self.session.cancel(ref)
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
        broker = SessionBroker(session=self.session)  # type: ignore[call-arg]
        cerebro.setbroker(broker)
        for symbol in self.session.config.symbols:
            cerebro.adddata(SessionFeed(session=self.session, symbol=symbol, name=symbol), name=symbol)
        cerebro.addstrategy(self.strategy, **self.params)
        strategies = cerebro.run()
        self.strategy_instance = strategies[0] if strategies else None
        return self.strategy_instance
