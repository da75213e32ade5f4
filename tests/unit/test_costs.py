"""Commission schedules, the SEC fee and slippage, pinned by hand-computed cases."""

from __future__ import annotations

import backtrader as bt
import pandas as pd
import pytest

from kubetrader.costs import (
    CommissionSchedule,
    build_broker,
    build_comminfo,
    commission_schedule,
    order_commission,
    slipped_price,
)
from kubetrader.specs import BrokerSpec

SEC = 27.80 / 1_000_000


def _schedule(model: str, **numbers: float) -> CommissionSchedule:
    return commission_schedule(BrokerSpec.model_validate({"commission": {"model": model, **numbers}}))


def test_ib_standard_small_buy_pays_the_one_dollar_minimum() -> None:
    # 100 shares at $20: 100 * 0.005 = 0.50 < 1.00 minimum; cap 1% of 2000 = 20.
    assert order_commission(100, 20.0, _schedule("ib-standard")) == pytest.approx(1.00)


def test_ib_standard_per_share_rate_between_minimum_and_cap() -> None:
    # 1000 shares at $50: 1000 * 0.005 = 5.00.
    assert order_commission(1000, 50.0, _schedule("ib-standard")) == pytest.approx(5.00)


def test_ib_standard_penny_stock_hits_the_one_percent_cap() -> None:
    # 100000 shares at $0.20: 500.00 per share fee, capped at 1% of 20000 = 200.00.
    assert order_commission(100_000, 0.20, _schedule("ib-standard")) == pytest.approx(200.00)


def test_ib_standard_tiny_order_cap_wins_over_minimum() -> None:
    # 10 shares at $5: value 50, minimum 1.00 but 1% cap = 0.50 (IB: the cap is assessed).
    assert order_commission(10, 5.0, _schedule("ib-standard")) == pytest.approx(0.50)


def test_sell_pays_sec_fee_on_notional() -> None:
    # Sell 1000 at $50: commission 5.00 + 50000 * 27.80e-6 = 1.39.
    assert order_commission(-1000, 50.0, _schedule("ib-standard")) == pytest.approx(5.00 + 1.39)


def test_buy_pays_no_sec_fee() -> None:
    assert order_commission(1000, 50.0, _schedule("ib-standard")) == pytest.approx(5.00)


def test_ib_pro_minimum_and_rate() -> None:
    pro = _schedule("ib-pro")
    assert order_commission(50, 30.0, pro) == pytest.approx(0.35)  # 0.175 -> minimum 0.35
    assert order_commission(1000, 30.0, pro) == pytest.approx(3.50)  # 0.0035 * 1000


def test_none_model_charges_only_the_sec_fee_on_sells() -> None:
    none = _schedule("none")
    assert order_commission(1000, 50.0, none) == 0.0
    assert order_commission(-1000, 50.0, none) == pytest.approx(1.39)


def test_sec_fee_rate_comes_from_the_broker_spec() -> None:
    broker = BrokerSpec.model_validate({"commission": {"model": "none"}, "secFeePerMillion": 0})
    assert order_commission(-1000, 50.0, commission_schedule(broker)) == 0.0


def test_custom_percent_with_minimum_and_cap() -> None:
    custom = _schedule("custom", percent=0.001, minimum=2.0, maxPercent=0.002)
    assert order_commission(10, 100.0, custom) == pytest.approx(2.0)  # 1.00 -> minimum 2.00 (cap 2.00)
    assert order_commission(100, 100.0, custom) == pytest.approx(10.0)  # 0.1% of 10000
    assert order_commission(-100, 100.0, custom) == pytest.approx(10.0 + 10_000 * SEC)


def test_custom_per_share_and_percent_add_up() -> None:
    custom = _schedule("custom", perShare=0.01, percent=0.0005)
    # 200 shares at $40: 2.00 + 0.0005 * 8000 = 6.00
    assert order_commission(200, 40.0, custom) == pytest.approx(6.00)


def test_zero_size_costs_nothing() -> None:
    assert order_commission(0, 10.0, _schedule("ib-standard")) == 0.0


def test_comminfo_delegates_to_the_schedule() -> None:
    info = build_comminfo(BrokerSpec())
    assert info.getcommission(-1000, 50.0) == pytest.approx(6.39)
    assert info.getcommission(1000, 50.0) == pytest.approx(5.00)


def test_slipped_price_is_capped_by_the_bar() -> None:
    assert slipped_price(100.0, is_buy=True, bps=5, high=101.0, low=99.0) == pytest.approx(100.05)
    assert slipped_price(100.0, is_buy=False, bps=5, high=101.0, low=99.0) == pytest.approx(99.95)
    assert slipped_price(100.0, is_buy=True, bps=50, high=100.2, low=99.0) == pytest.approx(100.2)


class _OneRoundTrip(bt.Strategy):
    """Buy 100 at market on bar 0 and place a limit sell; record the fills."""

    params = (("limit", None),)

    def __init__(self) -> None:
        self.fills: list[tuple[str, float, float]] = []

    def next(self) -> None:
        if len(self) == 1:
            self.buy(size=100)
        elif len(self) == 2:
            self.sell(size=100, exectype=bt.Order.Limit, price=self.p.limit)

    def notify_order(self, order: bt.Order) -> None:
        if order.status == order.Completed:
            side = "buy" if order.isbuy() else "sell"
            self.fills.append((side, order.executed.price, order.executed.comm))


def _bars() -> pd.DataFrame:
    index = pd.date_range("2020-01-01", periods=4, freq="D", tz="UTC")
    return pd.DataFrame(
        {
            "open": [100.0, 100.0, 110.0, 90.0],
            "high": [101.0, 102.0, 112.0, 95.0],
            "low": [99.0, 98.0, 108.0, 85.0],
            "close": [100.0, 101.0, 111.0, 91.0],
            "volume": [1e6] * 4,
        },
        index=index,
    )


def _fills(broker: BrokerSpec, limit: float) -> list[tuple[str, float, float]]:
    cerebro = bt.Cerebro(stdstats=False)
    cerebro.broker = build_broker(broker)
    cerebro.adddata(bt.feeds.PandasData(dataname=_bars().tz_localize(None)))
    cerebro.addstrategy(_OneRoundTrip, limit=limit)
    (strategy,) = cerebro.run()
    return list(strategy.fills)


def test_market_buy_slips_up_at_next_open_and_limit_sell_uses_limit_rate() -> None:
    broker = BrokerSpec.model_validate({"slippage": {"marketBps": 10, "limitBps": 20}})
    # Buy at bar 1's open 100 * 1.001; the limit sell at 105 gaps through at bar 2's open 110:
    # slipped down by 20 bps to 109.78 (not below the limit).
    buy, sell = _fills(broker, limit=105.0)
    assert buy[1] == pytest.approx(100.1)
    assert buy[2] == pytest.approx(1.00)
    assert sell[1] == pytest.approx(110 * 0.998)
    assert sell[2] == pytest.approx(1.00 + 100 * 110 * 0.998 * SEC)


def test_limit_orders_do_not_slip_by_default() -> None:
    buy, sell = _fills(BrokerSpec(), limit=105.0)
    assert buy[1] == pytest.approx(100 * 1.0005)
    assert sell[1] == pytest.approx(110.0)


def test_market_slippage_stops_at_the_bar_by_default_and_not_when_uncapped() -> None:
    """300 bps on bar 1's open of 100 is 103, above the bar's high of 102 (issue 18, item 6)."""
    capped = BrokerSpec.model_validate({"slippage": {"marketBps": 300}})
    uncapped = BrokerSpec.model_validate({"slippage": {"marketBps": 300, "model": "uncapped"}})
    assert capped.slippage.model == "capped"
    assert _fills(capped, limit=105.0)[0][1] == pytest.approx(102.0)
    assert _fills(uncapped, limit=105.0)[0][1] == pytest.approx(103.0)


@pytest.mark.parametrize("model", ["capped", "uncapped"])
def test_a_limit_order_never_fills_beyond_its_limit_whatever_the_slippage_model(model: str) -> None:
    """The sell limit 109.9 gaps through at bar 2's open of 110; 50 bps would give 109.45, below the limit."""
    broker = BrokerSpec.model_validate({"slippage": {"marketBps": 5, "limitBps": 50, "model": model}})
    _, sell = _fills(broker, limit=109.9)
    assert sell[1] == pytest.approx(109.9)
