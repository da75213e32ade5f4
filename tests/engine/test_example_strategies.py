"""Each example strategy trades on real data and respects its long-only, whole-share rules."""

from __future__ import annotations

from typing import Any

import pytest

from kubetrader.runner import BacktestRunner

EXAMPLES = [
    ("strategies.sma_crossover.SMACrossover", {"fast": 10, "slow": 30}),
    ("strategies.rsi_momentum.RSIMomentum", {"period": 14, "entry": 60.0, "exit": 40.0}),
    ("strategies.bollinger_reversion.BollingerReversion", {"period": 20, "devs": 2.0}),
    ("strategies.donchian_breakout.DonchianBreakout", {"entry": 20, "exit": 10}),
]


@pytest.mark.parametrize(("path", "params"), EXAMPLES, ids=[p.rsplit(".", 1)[1] for p, _ in EXAMPLES])
def test_example_strategy_trades_long_only_on_nvda(bundled_store: Any, make_spec: Any, path: str, params: dict) -> None:
    spec = make_spec(path, params=params, symbols=("NVDA",), start="2010-01-01", end="2013-12-31")
    result = BacktestRunner(spec, store=bundled_store).run()
    closed = result.closed_trades
    assert len(closed) >= 3
    assert (result.trades["size"] > 0).all()
    assert (result.trades["size"] == result.trades["size"].round()).all()
    assert result.metrics["final_value"] != pytest.approx(100_000)
    assert result.metrics["num_trades"] == len(closed)
    assert result.equity.min() > 0


def test_strategies_split_equity_across_symbols(bundled_store: Any, make_spec: Any) -> None:
    spec = make_spec(symbols=("ORCL", "NVDA"), start="2008-01-01", end="2011-12-31", params={"fast": 5, "slow": 20})
    result = BacktestRunner(spec, store=bundled_store).run()
    assert set(result.trades["symbol"]) == {"ORCL", "NVDA"}
    assert result.exposure.max() <= 1.0
    assert result.exposure.max() > 0.5
