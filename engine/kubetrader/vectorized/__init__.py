"""Exact vectorized twins of strategies, for screening parameter grids before Backtrader confirms.

A twin computes, with numpy and numba, the same equity curve, trades and metrics as
the runner's Backtrader run of the same spec: same indicators bit for bit, same
fills (next bar's open, slippage capped by the bar), same commission schedules and
SEC fee, same integer sizing and cash checks, same risk limits. It is about a
thousand times faster, which makes screening a grid of thousands of points take a
second; Backtrader stays the engine of record: a study that screens re-runs its
best points on Backtrader and reports only those runs (kubetrader.optimize.screening).

Public surface: `twin_for`, `not_screenable`, `run_twin`, `equity_blocks`, `check`.
"""

from __future__ import annotations

from kubetrader.vectorized.equivalence import Equivalence, check
from kubetrader.vectorized.run import TwinResult, equity_blocks, not_screenable, run_twin
from kubetrader.vectorized.twins import TWINS, Bars, IndicatorCache, Twin, twin_for

__all__ = [
    "TWINS",
    "Bars",
    "Equivalence",
    "IndicatorCache",
    "Twin",
    "TwinResult",
    "check",
    "equity_blocks",
    "not_screenable",
    "run_twin",
    "twin_for",
]
