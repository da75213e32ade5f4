"""Twins against Backtrader on bundled real data: a fixed sample of the harness grid.

The full grid (every strategy x params x commission model x slippage, plus the
stress cases) runs in `make bench` (bench/bench_vectorized.py); here a seeded
sample of it, and every stress case for one strategy each.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from kubetrader.vectorized.equivalence import (
    COMMISSIONS,
    PARAM_GRID,
    SLIPPAGE_BPS,
    STRESS_CASES,
    check,
    harness_spec,
)

_RNG = random.Random(10)
_SAMPLE = [
    (path, params, model, bps)
    for path, points in PARAM_GRID.items()
    for params, model, bps in _RNG.sample([(p, m, b) for p in points for m in COMMISSIONS for b in SLIPPAGE_BPS], 5)
]
_STRESS = [
    (path, i)
    for i, path in enumerate(
        [
            "strategies.sma_crossover.SMACrossover",
            "strategies.rsi_momentum.RSIMomentum",
            "strategies.bollinger_reversion.BollingerReversion",
            "strategies.donchian_breakout.DonchianBreakout",
            "strategies.rsi_momentum.RSIMomentum",
            "strategies.bollinger_reversion.BollingerReversion",
            "strategies.sma_crossover.SMACrossover",
            "strategies.donchian_breakout.DonchianBreakout",
            "strategies.bollinger_reversion.BollingerReversion",
        ]
    )
]


def _name(path: str) -> str:
    return path.rsplit(".", 1)[-1]


@pytest.mark.parametrize(
    ("path", "params", "model", "bps"),
    _SAMPLE,
    ids=[f"{_name(p)}-{'-'.join(map(str, q.values()))}-{m}-{b:g}bps" for p, q, m, b in _SAMPLE],
)
def test_twin_equals_backtrader_on_orcl_to_the_cent_with_same_trades_and_metrics(
    path: str, params: dict[str, Any], model: str, bps: float, bundled_store: Any
) -> None:
    outcome = check(harness_spec(path, params, commission=model, slippage=bps), store=bundled_store)
    assert outcome.trades > 0, "a sample point without trades proves nothing"
    assert outcome.differences == []
    assert round(outcome.final_twin, 2) == round(outcome.final_backtrader, 2)


@pytest.mark.parametrize(("path", "case_index"), _STRESS, ids=[f"{_name(p)}-stress{i}" for p, i in _STRESS])
def test_twin_equals_backtrader_when_risk_limits_cash_and_minimums_bind(
    path: str, case_index: int, bundled_store: Any
) -> None:
    case = STRESS_CASES[case_index]
    points = PARAM_GRID[path]
    spec = harness_spec(
        path,
        {**points[len(points) // 2], **case.get("params", {})},
        commission=case.get("commission", "ib-standard"),
        slippage=case.get("slippage", 5.0),
        cash=case.get("cash", 100_000.0),
        risk=case.get("risk"),
        symbol="NVDA",
        start="1999-01-01",
    )
    outcome = check(spec, store=bundled_store)
    assert outcome.differences == []
