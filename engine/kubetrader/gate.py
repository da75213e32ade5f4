"""`GatedBroker`: the backtest's simulated broker behind the `RiskEngine` (kubetrader.risk).

Every order that reaches Backtrader's broker, whether it came through
`BaseStrategy.buy` or a strategy calling `self.broker.buy(...)` directly, passes
`RiskEngine.check` in `submit` first; a refused order is rejected (Backtrader's
`Rejected` status, the reason in `order.info["reason"]`) and never fills. The live
session applies the same engine with the same limits to every order it sends, so a
strategy meets the same limits in both runtimes.

The gate also feeds the engine its per-bar equity (after the broker has processed the
bar, the value `notify_cashvalue` then reports), so the daily-loss and drawdown halts
hold even for a strategy that never calls `BaseStrategy.notify_cashvalue`.
"""

from __future__ import annotations

from typing import Any

import backtrader as bt

from kubetrader.costs import CostBroker, ScheduleCommission
from kubetrader.risk import RiskEngine

SECONDS_PER_DAY = 86_400.0


class GatedBroker(CostBroker):
    """CostBroker whose `submit` is the risk gate; `risk` is the engine strategies size against."""

    params = (("risk", None),)  # type: ignore[assignment]  # Backtrader merges params by name

    def __init__(self) -> None:
        super().__init__()
        self.risk: RiskEngine = self.p.risk
        self._working: list[Any] = []

    def next(self) -> None:
        if self._toactivate or self.submitted or self.pending or self._userhist or not self._plain_costs():
            super().next()
        else:
            self._get_value()  # all that BackBroker.next changes on a bar with nothing to do (see below)
        if self.risk.watches_equity and getattr(self, "cerebro", None) is not None:
            datas = [d for d in self.cerebro.datas if len(d)]
            if datas:
                self.risk.observe(self.getvalue(), int(max(d.datetime[0] for d in datas)))

    def _plain_costs(self) -> bool:
        """Every commission is the platform's stock schedule, without credit interest.

        Then a bar with no order to activate, check, execute or replay changes nothing in
        `BackBroker.next` but the value at its end: each held position's credit interest is 0.0 (and
        the time of that credit, which only the interest reads, is not kept), the stock-like cash
        adjustment to the close is 0.0 (and the base price it reads, only for futures, is not
        kept), so cash, positions and value come out the same to the bit. That skips a Python
        `datetime` per held position and bar and most of the broker's per-bar work: about 9 % of
        a daily SMA run (tests/engine/test_run_loop.py compares every bar with BackBroker's)."""
        infos = self.comminfo.values()
        return all(type(info) is ScheduleCommission and info._stocklike and not info.p.interest for info in infos)

    def working_size(self, data: Any) -> float:
        """The signed remaining size of this broker's live orders on `data`."""
        self._working = [o for o in self._working if o.alive()]
        return sum(o.executed.remsize for o in self._working if o.data is data)

    def submit(self, order: Any, check: bool = True) -> Any:
        reason = self._refusal(order)
        if reason is not None:
            order.addinfo(reason=reason)
            order.reject(self)
            self.notify(order)
            return order
        self._working.append(order)
        return super().submit(order, check)

    def _refusal(self, order: Any) -> str | None:
        data = order.data
        signed = float(order.size)
        position = self.getposition(data).size + self.working_size(data)
        parent = order.parent
        if parent is not None:  # a bracket's child: it may only close what its parent opens
            if parent.size * signed < 0 and abs(signed) <= abs(parent.size):
                return None
            return f"a bracket child must close its parent ({parent.size:g}), got {signed:g}"
        price = float(data.close[0])
        limit_price = float(order.price) if order.exectype == bt.Order.Limit and order.price else None
        concentration = self.risk.limits.max_concentration is not None
        reason = self.risk.check(
            str(data._name),
            signed,
            position=position,
            price=price,
            equity=self.getvalue() if concentration else 0.0,
            now=float(data.datetime[0]) * SECONDS_PER_DAY,
            limit_price=limit_price,
        )
        if reason is None:
            self.risk.sent(float(data.datetime[0]) * SECONDS_PER_DAY)
        return reason
