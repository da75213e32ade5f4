"""THE check: the platform's run equals a plain Backtrader run built by hand, to the cent.

The reference below shares nothing with kubetrader but the bars: its own commission
class, Backtrader's own slippage settings, its own SMA crossover and sizing rule.
"""

from __future__ import annotations

from typing import Any

import backtrader as bt
import pytest

from kubetrader.data import load_bars


class _IBStandardBySpec(bt.CommInfoBase):
    """IB fixed: $0.005/share, $1 minimum, 1 % of value cap; plus $27.80 per $1M sold."""

    params = (("stocklike", True), ("commtype", bt.CommInfoBase.COMM_FIXED))

    def _getcommission(self, size: float, price: float, pseudoexec: bool) -> float:
        value = abs(size) * price
        fee = min(max(abs(size) * 0.005, 1.0), 0.01 * value)
        return fee + (value * 27.80 / 1e6 if size < 0 else 0.0)


class _HandSMA(bt.Strategy):
    params = (("fast", 10), ("slow", 30))

    def __init__(self) -> None:
        self.fast = bt.indicators.SMA(self.data.close, period=self.p.fast)
        self.slow = bt.indicators.SMA(self.data.close, period=self.p.slow)
        self.pending: Any = None
        self.closed: list[tuple[str, str, float, float]] = []

    def notify_order(self, order: Any) -> None:
        if not order.alive():
            self.pending = None

    def notify_trade(self, trade: Any) -> None:
        if trade.isclosed:
            opened = bt.num2date(trade.dtopen).date().isoformat()
            closed = bt.num2date(trade.dtclose).date().isoformat()
            self.closed.append((opened, closed, trade.pnl, trade.pnlcomm))

    def next(self) -> None:
        if len(self) <= self.p.slow or self.pending:
            return
        crossed_up = self.fast[0] > self.slow[0] and self.fast[-1] <= self.slow[-1]
        crossed_down = self.fast[0] < self.slow[0] and self.fast[-1] >= self.slow[-1]
        if not self.position and crossed_up:
            shares = int(0.95 * self.broker.getvalue() // self.data.close[0])
            self.pending = self.buy(size=shares)
        elif self.position.size > 0 and crossed_down:
            self.pending = self.sell(size=self.position.size)


@pytest.fixture(scope="module")
def plain_backtrader_run(bundled_store: Any) -> tuple[float, list[tuple[str, str, float, float]], float]:
    import datetime as dt

    frame = load_bars("ORCL", start=dt.date(2005, 1, 1), end=dt.date(2014, 12, 31), store=bundled_store)
    cerebro = bt.Cerebro(stdstats=False)
    cerebro.broker.setcash(100_000)
    cerebro.broker.set_slippage_perc(0.0005, slip_open=True, slip_limit=True, slip_match=True, slip_out=False)
    cerebro.broker.addcommissioninfo(_IBStandardBySpec())
    cerebro.adddata(bt.feeds.PandasData(dataname=frame.tz_convert(None)))
    cerebro.addstrategy(_HandSMA, fast=10, slow=30)
    (strategy,) = cerebro.run()
    return cerebro.broker.getvalue(), strategy.closed, strategy.position.size


def test_sma_crossover_on_orcl_matches_plain_backtrader_to_the_cent(
    sma_orcl_result: Any, plain_backtrader_run: tuple[float, list[Any], float]
) -> None:
    final_value, _, final_position = plain_backtrader_run
    assert round(float(sma_orcl_result.equity.iloc[-1]), 2) == round(final_value, 2)
    assert sma_orcl_result.metrics["final_value"] == pytest.approx(final_value, abs=0.005)
    assert sma_orcl_result.positions == {"ORCL": final_position}


def test_sma_crossover_on_orcl_trade_list_matches_plain_backtrader(
    sma_orcl_result: Any, plain_backtrader_run: tuple[float, list[Any], float]
) -> None:
    _, reference, _ = plain_backtrader_run
    closed = sma_orcl_result.closed_trades
    ours = [
        (row.entry_time[:10], row.exit_time[:10], round(row.pnl, 6), round(row.pnl_net, 6))
        for row in closed.itertuples()
    ]
    theirs = [(o, c, round(p, 6), round(n, 6)) for o, c, p, n in reference]
    assert len(ours) > 20
    assert ours == theirs


def test_trade_records_are_consistent_with_fills(sma_orcl_result: Any) -> None:
    closed = sma_orcl_result.closed_trades
    for row in closed.itertuples():
        assert row.pnl == pytest.approx(row.size * (row.exit_price - row.entry_price), rel=1e-9)
        assert row.pnl_net == pytest.approx(row.pnl - row.commission, rel=1e-9)
        assert row.bars_held >= 1
    buys = [o for o in sma_orcl_result.orders if o.side == "buy" and o.status == "Completed"]
    assert [o.size for o in buys][: len(closed)] == list(closed["size"])


def test_equity_curve_is_daily_and_exposure_within_bounds(sma_orcl_result: Any) -> None:
    equity = sma_orcl_result.equity
    assert equity.index.is_monotonic_increasing
    assert str(equity.index[0].date()) == "2005-01-03"
    assert str(equity.index[-1].date()) == "2014-12-31"
    assert equity.iloc[0] == pytest.approx(100_000)
    assert 0.0 <= sma_orcl_result.exposure.max() <= 1.0
    assert len(sma_orcl_result.benchmark_returns) == len(equity)
