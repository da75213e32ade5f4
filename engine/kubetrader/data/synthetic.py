"""Seeded synthetic bars (geometric Brownian motion with optional regime switches).

For load tests only: benchmarks and queue/worker stress tests need many symbols
and long histories of a known shape. Results on synthetic bars say nothing
about a strategy; examples, golden values and the demo use the bundled real data.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field

from kubetrader.data.frames import COLUMNS, bar_frame, to_utc_index
from kubetrader.errors import SpecError

if TYPE_CHECKING:
    import pandas as pd

# Bars per session and the session's first bar (US equities hours, 09:30-16:00) per timeframe.
_BARS_PER_SESSION = {"1d": 1, "1h": 7, "5m": 78, "1m": 390}
_BAR_MINUTES = {"1d": 0, "1h": 60, "5m": 5, "1m": 1}
_TRADING_DAYS = 252


class Regime(BaseModel):
    """A market state: annualized drift and volatility of log returns."""

    model_config = ConfigDict(frozen=True)

    drift: float = 0.05
    volatility: float = Field(default=0.2, gt=0)


def _stamps(start: dt.date, periods: int, timeframe: str) -> pd.DatetimeIndex:
    import pandas as pd

    per_day = _BARS_PER_SESSION[timeframe]
    days = pd.bdate_range(start, periods=math.ceil(periods / per_day))
    if timeframe == "1d":
        return to_utc_index(days)
    offsets = pd.to_timedelta([570 + _BAR_MINUTES[timeframe] * i for i in range(per_day)], unit="min")
    stamps = [day + offset for day in days for offset in offsets]
    return to_utc_index(stamps[:periods])


def synthetic_bars(
    *,
    periods: int = 2520,
    timeframe: str = "1d",
    start: dt.date = dt.date(2000, 1, 3),
    seed: int = 0,
    initial_price: float = 100.0,
    regimes: Sequence[Regime] = (Regime(),),
    switch_probability: float = 0.0,
) -> pd.DataFrame:
    """Bars in the normalized shape from a seeded GBM; the same arguments give the same bars (and hash).

    Each bar opens at the previous close, closes after one GBM step, and has a
    high/low a random half-step beyond its body, so every bar passes validation.
    With several regimes, each bar switches to another one (uniformly) with
    `switch_probability`: a crude bull/bear/crash alternation for stress tests.
    """
    import numpy as np

    if timeframe not in _BARS_PER_SESSION:
        raise SpecError("timeframe", f"unknown timeframe {timeframe!r}; known: {', '.join(_BARS_PER_SESSION)}")
    if periods < 1:
        raise SpecError("periods", f"must be at least 1, not {periods}")
    if not regimes:
        raise SpecError("regimes", "give at least one regime")
    if not 0.0 <= switch_probability <= 1.0:
        raise SpecError("switch_probability", f"must be within [0, 1], not {switch_probability}")
    rng = np.random.default_rng(seed)
    step = 1.0 / (_TRADING_DAYS * _BARS_PER_SESSION[timeframe])
    state = np.zeros(periods, dtype=int)
    if len(regimes) > 1 and switch_probability > 0:
        switches = rng.random(periods) < switch_probability
        jumps = rng.integers(1, len(regimes), size=periods)
        for i in range(1, periods):
            state[i] = (state[i - 1] + jumps[i]) % len(regimes) if switches[i] else state[i - 1]
    drift = np.array([r.drift for r in regimes])[state]
    vol = np.array([r.volatility for r in regimes])[state]
    log_returns = (drift - 0.5 * vol**2) * step + vol * math.sqrt(step) * rng.standard_normal(periods)
    close = initial_price * np.exp(np.cumsum(log_returns))
    open_ = np.concatenate([[initial_price], close[:-1]])
    wick = 0.5 * vol * math.sqrt(step)
    high = np.maximum(open_, close) * np.exp(wick * np.abs(rng.standard_normal(periods)))
    low = np.minimum(open_, close) * np.exp(-wick * np.abs(rng.standard_normal(periods)))
    volume = np.round(rng.lognormal(mean=13.0, sigma=0.5, size=periods))
    values = dict(zip(COLUMNS, (open_, high, low, close, volume), strict=True))
    return bar_frame(_stamps(start, periods, timeframe), dict(values))
