"""The per-day columns a result writes twice (the JSON document and the equity CSV), computed once.

Dates, equity, returns, exposure and the benchmark's returns on the equity's days, as numpy
arrays and Python strings: both writers used to rebuild them from pandas (a `pct_change`, a
`reindex`, a `strftime` over 5,000 days each), which cost more than every metric together.
The values are the same as pandas': `returns` is `equity.pct_change().fillna(0.0)` to the bit
(a division and a subtraction per day, in the same order), tests/engine/test_result_files.py checks it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class DailyColumns:
    dates: list[str]
    """ISO dates (YYYY-MM-DD) of the equity's days, in the index's own time zone."""
    equity: np.ndarray
    returns: np.ndarray
    """Simple daily returns, 0 on the first day (and where pandas' pct_change gives NaN: 0 / 0)."""
    exposure: np.ndarray
    """Gross exposure on the equity's days, NaN where the exposure series has no value."""
    benchmark: np.ndarray | None
    """Benchmark returns on the equity's days, NaN where it has none; None without a benchmark."""


def simple_returns(values: np.ndarray) -> np.ndarray:
    """values[i] / values[i - 1] - 1, with 0 for the first day and for NaN (pandas' `pct_change().fillna(0.0)`)."""
    out = np.zeros(values.shape, dtype=np.float64)
    if values.size > 1:
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            out[1:] = values[1:] / values[:-1] - 1.0
    out[np.isnan(out)] = 0.0
    return out


def daily_columns(equity: pd.Series, exposure: pd.Series, benchmark_returns: pd.Series | None) -> DailyColumns:
    """The columns of one result; `exposure` and `benchmark_returns` are aligned to the equity's index."""
    import pandas as pd

    bench = None
    if benchmark_returns is not None:
        bench = benchmark_returns.reindex(equity.index).to_numpy(dtype=np.float64, na_value=np.nan)
    stamps = pd.DatetimeIndex(equity.index)
    if stamps.tz is not None:
        stamps = stamps.tz_localize(None)
    return daily_of_arrays(
        np.asarray(stamps.as_unit("ns").asi8),
        equity.to_numpy(dtype=np.float64),
        exposure.reindex(equity.index).to_numpy(dtype=np.float64, na_value=np.nan),
        bench,
    )


def daily_of_arrays(
    stamps: np.ndarray, equity: np.ndarray, exposure: np.ndarray, benchmark: np.ndarray | None
) -> DailyColumns:
    """The columns of one result from arrays on the equity's days (`stamps`: int64 ns of local wall time)."""
    return DailyColumns(
        dates=list(np.datetime_as_string(stamps.astype("datetime64[ns]"), unit="D").tolist()),
        equity=equity,
        returns=simple_returns(equity),
        exposure=exposure,
        benchmark=benchmark,
    )
