"""Trading costs for the simulated broker: commission schedules, the SEC fee and slippage.

The numbers live in a frozen `CommissionSchedule` built by a pure function from the
`BrokerSpec`, and one pure function (`order_commission`) turns a fill into a cost.
Backtrader only sees a thin `CommInfoBase` subclass that delegates to that function,
so a vectorized twin of a strategy can charge exactly the same costs without
Backtrader, and a unit test can pin the numbers by hand.

Slippage uses Backtrader's own percentage slippage (`slip_perc` with `slip_open`, so
market orders filled at the next bar's open slip too). With the default `capped`
model, `slip_match` caps the slipped price at the bar's high for buys and low for
sells, so a fill never leaves the bar, and the cost charged can be less than the
rate (on ORCL 2005-2014, SMA 10/30: 4.74 bps charged on average at 5 bps, 40.5 at
50 bps, a third of the fills capped). The `uncapped` model sets `slip_out`: the full
rate always, at a price the bar may never have traded.
Backtrader has a single slippage rate for every order type, while the spec has one for
market orders and one for limit orders; `CostBroker` adds the second rate by swapping
the rate in only while a limit order is being matched, and otherwise is BackBroker.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import backtrader as bt

from kubetrader.specs import BrokerSpec

# Interactive Brokers' fixed-rate US stock schedules: (per share, minimum per order, cap as fraction of value).
IB_STANDARD = (0.005, 1.00, 0.01)
IB_PRO = (0.0035, 0.35, 0.01)


@dataclass(frozen=True)
class CommissionSchedule:
    """What one fill costs: per share + percent of value, floored at `minimum`, capped at `max_percent` of value.

    `sec_fee_rate` is a fraction of the notional, charged on sells only (the SEC's
    Section 31 fee; 27.80 per million is 27.80e-6).
    """

    per_share: float = 0.0
    percent: float = 0.0
    minimum: float = 0.0
    max_percent: float | None = None
    sec_fee_rate: float = 0.0


def commission_schedule(broker: BrokerSpec) -> CommissionSchedule:
    """The schedule a `BrokerSpec` describes (pure)."""
    commission = broker.commission
    sec = broker.sec_fee_per_million / 1_000_000
    if commission.model == "ib-standard":
        per_share, minimum, cap = IB_STANDARD
        return CommissionSchedule(per_share=per_share, minimum=minimum, max_percent=cap, sec_fee_rate=sec)
    if commission.model == "ib-pro":
        per_share, minimum, cap = IB_PRO
        return CommissionSchedule(per_share=per_share, minimum=minimum, max_percent=cap, sec_fee_rate=sec)
    if commission.model == "none":
        return CommissionSchedule(sec_fee_rate=sec)
    return CommissionSchedule(
        per_share=commission.per_share or 0.0,
        percent=commission.percent or 0.0,
        minimum=commission.minimum or 0.0,
        max_percent=commission.max_percent,
        sec_fee_rate=sec,
    )


def order_commission(size: float, price: float, schedule: CommissionSchedule) -> float:
    """Cost of filling `size` (signed: negative is a sell) at `price`.

    IB's rule for the cap: when 1 % of the trade value is below the minimum, the cap
    wins (a 10-share order at $5 pays $0.50, not $1.00). The SEC fee is added on
    top for sells. A zero size costs nothing (no minimum for an empty fill).
    """
    if size == 0:
        return 0.0
    shares = abs(size)
    value = shares * price
    fee = schedule.per_share * shares + schedule.percent * value
    fee = max(fee, schedule.minimum)
    if schedule.max_percent is not None:
        fee = min(fee, schedule.max_percent * value)
    if size < 0:
        fee += schedule.sec_fee_rate * value
    return fee


class ScheduleCommission(bt.CommInfoBase):
    """Backtrader commission info for stocks that charges `order_commission`.

    Backtrader calls `_getcommission` once per fill part: an order that reverses a
    position (long 100 -> short 100) is charged as two parts, each with its own
    minimum. The example strategies never reverse in one order.
    """

    params = (
        ("stocklike", True),
        ("commtype", bt.CommInfoBase.COMM_FIXED),
        ("schedule", CommissionSchedule()),
    )

    def _getcommission(self, size: float, price: float, pseudoexec: bool) -> float:
        return order_commission(size, price, self.p.schedule)


def build_comminfo(broker: BrokerSpec) -> ScheduleCommission:
    """The CommInfo object for `cerebro.broker.addcommissioninfo`."""
    return ScheduleCommission(schedule=commission_schedule(broker))


class CostBroker(bt.brokers.BackBroker):
    """BackBroker with a separate slippage rate for limit orders (`limit_slip_perc`).

    Market, stop and close orders use `slip_perc` as in BackBroker. While a limit
    order is matched, `slip_perc` is `limit_slip_perc`: a limit order that gaps
    through its price at the open fills at the slipped open (never beyond the
    limit); one touched inside the bar fills at its limit, as in BackBroker.
    `slip_out` (the uncapped model) is off while a limit order is matched:
    BackBroker would otherwise fill it beyond its own limit (`_slip_up` returns
    the out-of-range price for `lim=True` too).
    """

    params = (("limit_slip_perc", 0.0),)

    def _try_exec_limit(self, order: Any, popen: float, phigh: float, plow: float, plimit: float) -> None:
        market_rate, slip_out = self.p.slip_perc, self.p.slip_out
        self.p.slip_perc, self.p.slip_out = self.p.limit_slip_perc, False
        try:
            super()._try_exec_limit(order, popen, phigh, plow, plimit)
        finally:
            self.p.slip_perc, self.p.slip_out = market_rate, slip_out


def build_broker(broker: BrokerSpec, cls: type[CostBroker] = CostBroker, **params: Any) -> CostBroker:
    """A configured simulated broker: cash, commission for every data, slippage.

    `cls` and `params`: a subclass and its own params (the runner passes `GatedBroker` and the risk engine).
    """
    sim = cls(cash=broker.cash, limit_slip_perc=broker.slippage.limit_bps / 10_000, **params)
    sim.set_slippage_perc(
        broker.slippage.market_bps / 10_000,
        slip_open=True,
        slip_limit=True,
        slip_match=True,
        slip_out=broker.slippage.model == "uncapped",
    )
    sim.addcommissioninfo(build_comminfo(broker))
    return sim


def slipped_price(price: float, *, is_buy: bool, bps: float, high: float, low: float) -> float:
    """The fill price Backtrader's percentage slippage gives under the `capped` model, for twins and tests.

    Buys pay `price * (1 + bps/1e4)` capped at the bar's high; sells get
    `price * (1 - bps/1e4)` floored at the bar's low.
    """
    rate = bps / 10_000
    if not rate:
        return price
    if is_buy:
        return min(price * (1 + rate), high)
    return max(price * (1 - rate), low)


def max_affordable_shares(cash: float, price: float) -> int:
    """Whole shares `cash` buys at `price` (Backtrader's stock-like `getsize`)."""
    if price <= 0 or not math.isfinite(price):
        return 0
    return int(cash // price)
