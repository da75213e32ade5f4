"""Turning numpy results into what JSON and MLflow accept.

Every metric leaves the package as a plain Python float or None: numpy scalars
are not JSON serialisable, and NaN / inf are refused by strict JSON and by
MLflow's metric API. So "undefined" (no trades, zero volatility, no benchmark)
is spelled None, once, here.
"""

from __future__ import annotations

import math

# A standard deviation below this is treated as zero. Daily returns whose spread
# is a trillionth are rounding noise of a constant series (e.g. equity growing at
# a fixed rate), and dividing by them would print an astronomically large ratio.
TINY_STD = 1e-12


def clean(value: float | None) -> float | None:
    """A finite Python float, or None for None / NaN / +-inf."""
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def ratio(numerator: float, denominator: float) -> float | None:
    """numerator / denominator, or None when the denominator is zero (the ratio is undefined)."""
    if denominator == 0 or not math.isfinite(denominator):
        return None
    return clean(numerator / denominator)
