"""How long one backtest task may run before it is stopped and dead-lettered.

A strategy stuck in `next()` keeps its worker alive and renewing its lease, so
without a deadline its task never ends and neither does the campaign. The default
grows with the data a cell reads (symbols x bars): a generous multiple of what
the engine needs (about 0.1 ms per bar and symbol on one core, see
`make bench`), plus a fixed allowance for loading the data and the strategy, so a
healthy cell never meets it and a hung one is stopped within minutes.
"""

from __future__ import annotations

import datetime as dt

from kubetrader.specs.backtest import BacktestSpec

BASE_SECONDS = 300.0  # data loading, imports, a slow node
SECONDS_PER_BAR = 0.005  # per symbol: about 50x the engine's cost
MAX_DEFAULT_SECONDS = 6 * 3600.0
# Bars in one trading day (US equities, 6.5 hours) per timeframe of `specs.backtest.Timeframe`.
BARS_PER_DAY = {"1d": 1, "1h": 7, "5m": 78, "1m": 390}
TRADING_DAYS_PER_YEAR = 252


def estimated_bars(spec: BacktestSpec) -> int:
    """Bars the cell reads: trading days in its range x bars per day x symbols (an estimate, not a read)."""
    days = max((spec.data.end - spec.data.start) / dt.timedelta(days=365.25) * TRADING_DAYS_PER_YEAR, 1.0)
    return int(days * BARS_PER_DAY.get(spec.data.timeframe, 390)) * len(spec.data.symbols)


def default_task_timeout(spec: BacktestSpec) -> float:
    """The execution deadline of a cell or trial when its spec and the command line set none."""
    return round(min(BASE_SECONDS + SECONDS_PER_BAR * estimated_bars(spec), MAX_DEFAULT_SECONDS), 1)
