"""The equivalence check: a twin's run against Backtrader's run of the same spec.

Agreement means all of: final equity equal to the cent, every bar's equity within
1e-9 relative, the same trade list (symbol, entry and exit dates, size exactly;
prices, pnl and commission within 1e-9 relative), and every metric within 1e-9
relative (None where the other is None). The tests, the bench harness and the
screening self-check all use this one definition.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

    from kubetrader.specs import BacktestSpec

REL = 1e-9
_EXACT_TRADE_FIELDS = ("symbol", "entry_time", "exit_time", "size", "bars_held")
_CLOSE_TRADE_FIELDS = ("entry_price", "exit_price", "pnl", "pnl_net", "commission")


@dataclass
class Equivalence:
    """Outcome of one comparison: `differences` is empty when the twin agrees."""

    spec: BacktestSpec
    final_backtrader: float
    final_twin: float
    trades: int
    differences: list[str] = field(default_factory=list)

    @property
    def agrees(self) -> bool:
        return not self.differences


def close_enough(a: float | None, b: float | None, rel: float = REL) -> bool:
    """Equal within `rel` relative (absolute below 1e-12), None only with None, NaN only with NaN."""
    if a is None or b is None:
        return a is None and b is None
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return abs(a - b) <= rel * max(abs(a), abs(b)) or abs(a - b) <= 1e-12


def compare_results(
    spec: BacktestSpec,
    bt_equity: pd.Series,
    bt_trades: pd.DataFrame,
    bt_metrics: dict[str, float | None],
    twin_equity: pd.Series,
    twin_trades: pd.DataFrame,
    twin_metrics: dict[str, float | None],
) -> Equivalence:
    """Every difference between the two runs, described."""
    out = Equivalence(spec, float(bt_equity.iloc[-1]), float(twin_equity.iloc[-1]), len(bt_trades))
    diffs = out.differences
    if round(out.final_backtrader, 2) != round(out.final_twin, 2):
        diffs.append(f"final value: backtrader {out.final_backtrader:.6f} twin {out.final_twin:.6f}")
    if len(bt_equity) != len(twin_equity) or not (bt_equity.index == twin_equity.index).all():
        diffs.append(f"equity dates differ: {len(bt_equity)} vs {len(twin_equity)} bars")
    else:
        a, b = bt_equity.to_numpy(), twin_equity.to_numpy()
        bad = np.flatnonzero(np.abs(a - b) > REL * np.maximum(np.abs(a), np.abs(b)))
        if bad.size:
            i = int(bad[0])
            diffs.append(f"equity differs on {bad.size} bars, first {bt_equity.index[i]}: {a[i]!r} vs {b[i]!r}")
    if len(bt_trades) != len(twin_trades):
        diffs.append(f"trade count: backtrader {len(bt_trades)} twin {len(twin_trades)}")
    for i, (x, y) in enumerate(zip(bt_trades.to_dict("records"), twin_trades.to_dict("records"), strict=False)):
        for name in _EXACT_TRADE_FIELDS:
            if not _same(x[name], y[name]):
                diffs.append(f"trade {i} {name}: backtrader {x[name]!r} twin {y[name]!r}")
        for name in _CLOSE_TRADE_FIELDS:
            if not close_enough(_num(x[name]), _num(y[name])):
                diffs.append(f"trade {i} {name}: backtrader {x[name]!r} twin {y[name]!r}")
        if len(diffs) > 20:
            break
    for name, value in bt_metrics.items():
        if not close_enough(value, twin_metrics.get(name)):
            diffs.append(f"metric {name}: backtrader {value!r} twin {twin_metrics.get(name)!r}")
    return out


def _num(value: Any) -> float | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return float(value)


def _same(a: Any, b: Any) -> bool:
    if _missing(a) or _missing(b):
        return _missing(a) and _missing(b)
    return bool(a == b)


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def check(spec: BacktestSpec, *, frames: dict[str, pd.DataFrame] | None = None, store: Any = None) -> Equivalence:
    """Run `spec` on Backtrader (the runner, on `store`) and on its twin, and compare."""
    from kubetrader.runner import BacktestRunner

    runner = BacktestRunner(spec, store=store)
    frames = frames if frames is not None else runner.load_data()
    result = runner.run()
    return check_run(spec, result.equity, result.trades, result.metrics, frames=frames)


def check_run(
    spec: BacktestSpec,
    equity: pd.Series,
    trades: pd.DataFrame,
    metrics: dict[str, float | None],
    *,
    frames: dict[str, pd.DataFrame] | None = None,
) -> Equivalence:
    """`check` with Backtrader's run of `spec` already done (e.g. in another process): run the twin, compare."""
    from kubetrader.vectorized.run import run_twin

    twin = run_twin(spec, frames=frames)
    return compare_results(spec, equity, trades, metrics, twin.equity, twin.trades, twin.metrics)


# ---- the harness grid: the points the tests sample and the bench runs in full --------------------

COMMISSIONS: dict[str, dict[str, Any]] = {
    "ib-standard": {"model": "ib-standard"},
    "ib-pro": {"model": "ib-pro"},
    "none": {"model": "none"},
    "custom": {"model": "custom", "perShare": 0.01, "percent": 0.0005, "minimum": 2.0, "maxPercent": 0.005},
}
SLIPPAGE_BPS: tuple[float, ...] = (0.0, 5.0)
PARAM_GRID: dict[str, list[dict[str, Any]]] = {
    "strategies.sma_crossover.SMACrossover": [
        {"fast": f, "slow": s} for f in (2, 5, 10, 20, 50) for s in (10, 30, 60, 120, 250) if f < s
    ],
    "strategies.rsi_momentum.RSIMomentum": [
        {"period": p, "entry": a, "exit": b}
        for p in (2, 7, 14, 30)
        for a, b in ((60.0, 40.0), (55.0, 45.0), (70.0, 30.0), (50.0, 50.0))
    ],
    "strategies.bollinger_reversion.BollingerReversion": [
        {"period": p, "devs": d} for p in (10, 20, 30, 50) for d in (1.0, 1.5, 2.0, 2.5)
    ],
    "strategies.donchian_breakout.DonchianBreakout": [
        {"entry": a, "exit": b} for a in (5, 20, 55) for b in (3, 10, 20)
    ],
}
# Settings that bind: risk limits, all-in sizing (cash rejections), tiny accounts (commission minimums and caps).
STRESS_CASES: list[dict[str, Any]] = [
    {"risk": {"maxDrawdown": 0.2}},
    {"risk": {"maxDailyLoss": 0.03}},
    {"risk": {"maxPositionSize": 150}},
    {"risk": {"maxConcentration": 0.5}},
    {"risk": {"maxOrderNotional": 20_000}},
    {"params": {"target": 1.0}},
    {"params": {"target": 1.0}, "slippage": 50.0},
    {"cash": 1_000.0, "commission": "ib-standard"},
    {"cash": 2_000.0, "commission": "custom", "risk": {"maxDrawdown": 0.3, "maxDailyLoss": 0.05}},
]


def harness_spec(
    path: str,
    params: dict[str, Any],
    *,
    commission: str = "ib-standard",
    slippage: float = 5.0,
    cash: float = 100_000.0,
    risk: dict[str, Any] | None = None,
    symbol: str = "ORCL",
    start: str = "1995-01-01",
    end: str = "2014-12-31",
) -> BacktestSpec:
    """A Backtest spec of the harness: one symbol's bundled daily bars, the given costs and limits."""
    from kubetrader.specs import BacktestSpec

    return BacktestSpec.model_validate(
        {
            "strategy": {"path": path, "params": params},
            "data": {"symbols": [symbol], "start": start, "end": end},
            "broker": {"cash": cash, "commission": COMMISSIONS[commission], "slippage": {"marketBps": slippage}},
            "risk": risk or {},
        }
    )


def harness_specs() -> list[BacktestSpec]:
    """The full harness on ORCL 1995-2014: every strategy x params x commission model x slippage,
    then every stress case for each strategy's first and middle point (also on NVDA)."""
    specs = [
        harness_spec(path, params, commission=model, slippage=bps)
        for path, points in PARAM_GRID.items()
        for params in points
        for model in COMMISSIONS
        for bps in SLIPPAGE_BPS
    ]
    for path, points in PARAM_GRID.items():
        for params in (points[0], points[len(points) // 2]):
            for case in STRESS_CASES:
                for symbol in ("ORCL", "NVDA"):
                    specs.append(
                        harness_spec(
                            path,
                            {**params, **case.get("params", {})},
                            commission=case.get("commission", "ib-standard"),
                            slippage=case.get("slippage", 5.0),
                            cash=case.get("cash", 100_000.0),
                            risk=case.get("risk"),
                            symbol=symbol,
                            start="1999-01-01" if symbol == "NVDA" else "1995-01-01",
                        )
                    )
    return specs
