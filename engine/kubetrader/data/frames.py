"""The normalized bar frame every part of kubetrader agrees on, and its hash.

One shape for all sources (Yahoo, Backtrader CSV, IB downloads, the synthetic
generator): a tz-aware UTC `DatetimeIndex` named ``datetime`` and float64 columns
``open, high, low, close, volume`` (plus ``adj_close`` inside the store when the
source has one). Daily bars are stamped at 00:00 UTC of the session date, so a
bar's date never depends on the machine's time zone.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

PRICE_COLUMNS: tuple[str, ...] = ("open", "high", "low", "close")
COLUMNS: tuple[str, ...] = (*PRICE_COLUMNS, "volume")
ADJ_CLOSE = "adj_close"
INDEX_NAME = "datetime"

# Bump when the canonical byte form changes: recorded hashes must never silently change meaning.
_HASH_DOMAIN = b"kubetrader-bars-v1\n"


def to_utc_index(values: Any) -> pd.DatetimeIndex:
    """Parse timestamps into a UTC DatetimeIndex with nanosecond unit.

    Naive timestamps are taken as UTC (the bundled intraday files keep the clock
    they were written with). The unit is pinned to ns because pandas 3 infers
    s/ms/us from the input, and the unit must not change a bar's hash.
    """
    import pandas as pd

    index = pd.DatetimeIndex(pd.to_datetime(values, utc=True))
    return index.as_unit("ns").rename(INDEX_NAME)


def bar_frame(index: pd.DatetimeIndex, columns: dict[str, object]) -> pd.DataFrame:
    """Build a frame in the normalized shape from an index and named column values.

    Order is kept as given (sorting here would hide a non-monotonic source from
    validation); values are coerced to float64, non-numbers become NaN so that
    validation can name the bar instead of pandas failing on the whole file.
    """
    import pandas as pd

    data = {
        name: pd.to_numeric(pd.Series(values, index=index), errors="coerce").astype("float64")
        for name, values in columns.items()
    }
    frame = pd.DataFrame(data, index=index)
    frame.index.name = INDEX_NAME
    return frame


def adjusted(columns: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """OHLC scaled by adj_close / close (splits and dividends); volume unchanged.

    Yahoo's Adj Close folds every later split and dividend into one ratio per bar;
    applying it to open, high and low as well keeps each bar internally consistent
    (low <= open, close <= high) and makes the adjusted close equal Adj Close.
    Columns without adj_close are returned as they are (open..volume only).
    """
    out = {name: columns[name] for name in COLUMNS}
    if ADJ_CLOSE not in columns:
        return out
    ratio = columns[ADJ_CLOSE] / columns["close"]
    for column in PRICE_COLUMNS:
        out[column] = out[column] * ratio
    return out


def data_hash(frame: pd.DataFrame) -> str:
    """sha256 of a canonical byte form of a bar frame, stable across processes and machines.

    Recorded in every result so that two results can be compared only when they
    saw the same bars. The bytes are: a version tag, the column names, the index
    as int64 nanoseconds since the epoch (UTC), then each column as little-endian
    float64. Column order is fixed (open..volume, then any others sorted), so the
    hash does not depend on how a frame was assembled.
    """
    import numpy as np

    stamps = np.asarray(to_utc_index(frame.index).asi8)
    return columns_hash(stamps, {str(c): frame[c].to_numpy(dtype="float64") for c in frame.columns})


def columns_hash(stamps: np.ndarray, columns: Mapping[str, np.ndarray]) -> str:
    """`data_hash` of bars held as numpy columns (kubetrader.data.columns): int64 ns UTC stamps, float64 columns."""
    import numpy as np

    ordered = [c for c in COLUMNS if c in columns] + sorted(c for c in columns if c not in COLUMNS)
    digest = hashlib.sha256(_HASH_DOMAIN)
    digest.update(",".join(ordered).encode() + b"\n")
    digest.update(np.ascontiguousarray(stamps, dtype="<i8").tobytes())
    for column in ordered:
        digest.update(np.ascontiguousarray(columns[column], dtype="<f8").tobytes())
    return digest.hexdigest()
