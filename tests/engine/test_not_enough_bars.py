"""A range shorter than the slowest indicator is refused, in the engine and in the twins alike (issue 18, item 7).

It once ended in Backtrader's `IndexError: array assignment index out of range` (40 bars,
slow = 50), and the twin ran without a word.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import backtrader as bt
import numpy as np
import pytest

from kubetrader.errors import DataError
from kubetrader.pipeline import execute
from kubetrader.results.store import read_document

SHORT = {"start": "2014-06-01", "end": "2014-07-28"}  # 40 ORCL bars: 2014-06-02 .. 2014-07-28
MESSAGE = "ORCL: not enough bars: the strategy needs at least 50, the range has 40 (2014-06-02 .. 2014-07-28)"


def test_engine_refuses_a_range_shorter_than_the_slowest_indicator(
    bundled_store: Any, make_spec: Any, tmp_path: Path
) -> None:
    spec = make_spec(params={"fast": 10, "slow": 50}, **SHORT)
    outcome = execute(spec, name="short", output_dir=tmp_path, store=bundled_store, report=False)
    assert outcome.status == "failed" and outcome.exit_code == 2
    assert outcome.error == MESSAGE
    document = read_document(outcome.paths.json)
    assert document.status == "failed" and document.error == MESSAGE and not document.metrics


def test_engine_runs_a_range_of_exactly_the_slowest_indicator(
    bundled_store: Any, make_spec: Any, tmp_path: Path
) -> None:
    spec = make_spec(params={"fast": 10, "slow": 40}, **SHORT)
    outcome = execute(spec, name="just-enough", output_dir=tmp_path, store=bundled_store, report=False)
    assert outcome.status == "succeeded", outcome.error


def test_twin_refuses_the_same_range_with_the_same_message(bundled_store: Any, make_spec: Any) -> None:
    from kubetrader.runner import BacktestRunner
    from kubetrader.vectorized import run_twin

    spec = make_spec(params={"fast": 10, "slow": 50}, **SHORT)
    frames = BacktestRunner(spec, store=bundled_store).load_data()
    with pytest.raises(DataError) as info:
        run_twin(spec, frames=frames)
    assert str(info.value) == MESSAGE


def test_screening_marks_points_that_need_more_bars_invalid(bundled_store: Any, make_spec: Any) -> None:
    from kubetrader.runner import BacktestRunner
    from kubetrader.vectorized import Bars, equity_blocks

    spec = make_spec(params={"fast": 10, "slow": 30}, **SHORT)
    bars = Bars.from_frame(BacktestRunner(spec, store=bundled_store).load_data()["ORCL"])
    (block,) = equity_blocks(spec, [{"slow": 30}, {"slow": 40}, {"slow": 41}, {"slow": 50}], bars=bars)
    assert block.valid.tolist() == [True, True, False, False]
    assert np.isnan(block.equity[2:]).all() and np.isfinite(block.equity[:2]).all()


class _MinPeriod(bt.Analyzer):
    def start(self) -> None:
        self.rets["minperiod"] = self.strategy._minperiod


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("strategies.sma_crossover.SMACrossover", {"fast": 5, "slow": 50}),
        ("strategies.sma_crossover.SMACrossover", {"fast": 2, "slow": 3}),
        ("strategies.rsi_momentum.RSIMomentum", {"period": 14}),
        ("strategies.rsi_momentum.RSIMomentum", {"period": 2}),
        ("strategies.bollinger_reversion.BollingerReversion", {"period": 20}),
        ("strategies.bollinger_reversion.BollingerReversion", {"period": 2}),
        ("strategies.donchian_breakout.DonchianBreakout", {"entry": 20, "exit": 10}),
        ("strategies.donchian_breakout.DonchianBreakout", {"entry": 5, "exit": 30}),
    ],
)
def test_each_twin_needs_as_many_bars_as_backtrader(bundled_store: Any, path: str, params: dict[str, Any]) -> None:
    from kubetrader.data import load_bars
    from kubetrader.strategy_loader import load_strategy, strategy_defaults
    from kubetrader.vectorized import twin_for

    frame = load_bars("ORCL", start=dt.date(2014, 1, 1), end=dt.date(2014, 12, 31), store=bundled_store)
    cerebro = bt.Cerebro(stdstats=False)
    cerebro.adddata(bt.feeds.PandasData(dataname=frame.tz_convert(None)))
    cerebro.addstrategy(load_strategy(path), **params)
    cerebro.addanalyzer(_MinPeriod, _name="minperiod")
    (strategy,) = cerebro.run()
    twin = twin_for(path)
    assert twin is not None
    cls = load_strategy(path)
    assert twin.min_bars({**strategy_defaults(cls), **params}) == strategy.analyzers.minperiod.rets["minperiod"]
