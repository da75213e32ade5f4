"""Market data: load, import, merge and validate bars (issue 2, "Data").

Public surface::

    from kubetrader.data import load_bars, DataStore, data_hash

`load_bars(symbol, timeframe=..., start=..., end=..., adjust=...)` returns the
normalized frame (UTC index named ``datetime``; float64 open, high, low, close,
volume); `data_hash(frame)` is the sha256 recorded in every result; `DataStore`
holds the files (raw copies and Parquet) and validates every write.

Seam for downloaders (Interactive Brokers and any future vendor): a downloader
produces a frame in the normalized shape (see kubetrader.data.frames: UTC index,
the five float64 columns, daily bars at 00:00 UTC of the session date) and calls
``DataStore().merge(symbol, timeframe, frame, source="ib:<contract>")``. The
merge validates (refusing corrupt bars with the first bad one named), adds only
new bars, lets the download win where stored bars differ and reports those, and
writes atomically, so a downloader never writes files itself.

Synthetic bars (kubetrader.data.synthetic) are for load tests only.
"""

from __future__ import annotations

from kubetrader.data.frames import COLUMNS, data_hash
from kubetrader.data.loader import load_bars
from kubetrader.data.store import DatasetInfo, DataStore, MergeReport
from kubetrader.data.validation import Issue, ValidationReport

__all__ = [
    "COLUMNS",
    "DataStore",
    "DatasetInfo",
    "Issue",
    "MergeReport",
    "ValidationReport",
    "data_hash",
    "load_bars",
]
