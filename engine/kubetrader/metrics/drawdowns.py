"""Drawdowns of an equity curve: depth (negative fractions) and duration (calendar days).

A drawdown episode starts on the first day the equity is below its running
peak and ends on the first day it is back at (or above) that peak. Its depth
is the lowest equity / peak - 1 inside it; its duration runs from the day of
the peak to the day of recovery, or to the last day when it never recovered.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class Drawdowns(NamedTuple):
    max_drawdown: float
    max_drawdown_duration: float
    avg_drawdown: float


def drawdown_series(equity: np.ndarray) -> np.ndarray:
    """equity / running peak - 1 for each day: 0 at a new high, negative below it."""
    return np.asarray(equity / np.maximum.accumulate(equity) - 1.0)


def drawdowns(equity: np.ndarray, days: np.ndarray) -> Drawdowns:
    """Maximum depth, longest duration and mean episode depth of the curve's drawdowns.

    `days` holds each equity point's time in (fractional) calendar days.

    max_drawdown = min(equity / running peak - 1), quantstats' `max_drawdown` of the equity.

    max_drawdown_duration = the longest peak-to-recovery span in calendar days.
    Difference from quantstats: its "Longest DD Days" (`drawdown_details`) counts
    from the first underwater day to the last underwater day, plus one. We count
    from the peak to the recovery day (the span during which the money was
    below a level it had already reached: backtesting.py's convention), which is
    what an investor waits; an unrecovered drawdown counts up to the last day.

    avg_drawdown = mean of the episodes' depths, quantstats' "Avg. Drawdown"
    (`drawdown_details(...)["max drawdown"].mean()`).

    Without any drawdown all three are 0.
    """
    dd = drawdown_series(equity)
    underwater = (dd < 0).astype(np.int8)
    edges = np.diff(np.concatenate(([0], underwater, [0])))
    starts = np.flatnonzero(edges == 1)
    if starts.size == 0:
        return Drawdowns(0.0, 0.0, 0.0)
    stops = np.flatnonzero(edges == -1)  # first day back at the peak (== len when never)
    recovered_at = np.minimum(stops, equity.size - 1)
    durations = days[recovered_at] - days[starts - 1]
    depths = np.minimum.reduceat(dd, starts)  # stretches between episodes are 0, above any depth
    return Drawdowns(float(dd.min()), float(durations.max()), float(depths.mean()))
