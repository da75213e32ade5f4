"""`load_bars`: the one call the runner, the workers and the dashboard use to get bars.

A per-process cache keeps the prepared (adjusted) frame of each data set, keyed
on the Parquet file's identity (mtime, size, inode): a worker that runs many
trials on one data set reads it once, and a file rewritten by an import is seen
at the next call. Callers get a copy, so no caller can change what the next one
sees.
"""

from __future__ import annotations

import datetime as dt
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from kubetrader.data.bundled import BUNDLED, bundled_dir, register_bundled
from kubetrader.data.frames import adjusted
from kubetrader.data.store import DataStore, check_timeframe
from kubetrader.data.validation import price_columns, price_report
from kubetrader.errors import DataError, SpecError
from kubetrader.specs.common import did_you_mean

if TYPE_CHECKING:
    import pandas as pd

_FileId = tuple[int, int, int]
# (file id, prepared frame, timestamps of the bars with a bad price)
_CACHE: dict[tuple[str, str, str, bool], tuple[_FileId, pd.DataFrame, pd.DatetimeIndex]] = {}
_CACHE_LOCK = threading.Lock()


def clear_cache() -> None:
    """Forget every cached frame (tests, and long-lived processes that want the memory back)."""
    with _CACHE_LOCK:
        _CACHE.clear()


def cache_size() -> int:
    return len(_CACHE)


def _unknown(symbol: str, timeframe: str, store: DataStore) -> DataError:
    by_symbol: dict[str, set[str]] = {}
    bundled = bundled_dir()
    for (sym, tf), entry in BUNDLED.items():
        if (bundled / entry.file).is_file():
            by_symbol.setdefault(sym, set()).add(tf)
    for sym, tfs in store.datasets().items():
        by_symbol.setdefault(sym, set()).update(tfs)
    if symbol in by_symbol:
        return DataError(f"no {timeframe} bars for symbol {symbol!r}; it has: {', '.join(sorted(by_symbol[symbol]))}")
    known = sorted(s for s, tfs in by_symbol.items() if timeframe in tfs)
    hint = did_you_mean(symbol, known) or did_you_mean(symbol.upper(), known)
    return DataError(
        f"unknown symbol {symbol!r} for timeframe {timeframe}{hint}; known symbols: {', '.join(known) or 'none'}"
        f" (store: {store.root})"
    )


def _bounds(start: dt.date | None, end: dt.date | None) -> tuple[pd.Timestamp | None, pd.Timestamp | None]:
    """[start 00:00 UTC, the day after end 00:00 UTC): whole session dates, intraday bars included."""
    import pandas as pd

    def day(value: dt.date) -> pd.Timestamp:
        date = value.date() if isinstance(value, dt.datetime) else value
        return pd.Timestamp(date).tz_localize("UTC")

    lo = day(start) if start is not None else None
    hi = day(end) + pd.Timedelta(days=1) if end is not None else None
    if lo is not None and hi is not None and lo >= hi:
        raise SpecError("end", f"{end} is before start {start}")
    return lo, hi


def require_dataset(store: DataStore, symbol: str, timeframe: str) -> Path:
    """The Parquet file of (symbol, timeframe), registering bundled data on first use; DataError if unknown."""
    try:
        path = store.path(symbol, timeframe)
    except SpecError as exc:
        if exc.field != "symbol":
            raise
        raise _unknown(symbol, timeframe, store) from None  # not even a ticker: still suggest the close one
    if not path.is_file() and not register_bundled(store, symbol, timeframe):
        raise _unknown(symbol, timeframe, store)
    return path


def _bad_price_bars(frame: pd.DataFrame) -> pd.DatetimeIndex:
    """Timestamps of the bars whose price (open..close, Adj Close) is missing, infinite, zero or negative."""
    import numpy as np

    values = frame.loc[:, price_columns(frame)].to_numpy(dtype="float64")
    bad = ~(np.isfinite(values) & (values > 0)).all(axis=1)
    return frame.index[bad]


def _prepared(symbol: str, timeframe: str, adjust: bool, store: DataStore) -> tuple[pd.DataFrame, pd.DatetimeIndex]:
    """The whole data set, adjusted if asked, and its bad-price bars, from the cache when the file has not changed."""
    info = require_dataset(store, symbol, timeframe).stat()
    file_id = (info.st_mtime_ns, info.st_size, info.st_ino)
    key = (str(store.root), symbol, timeframe, adjust)
    with _CACHE_LOCK:
        hit = _CACHE.get(key)
    if hit is not None and hit[0] == file_id:
        return hit[1], hit[2]
    raw = store.read(symbol, timeframe)
    bad = _bad_price_bars(raw)
    frame = adjusted(raw) if adjust else raw.loc[:, ["open", "high", "low", "close", "volume"]]
    with _CACHE_LOCK:
        _CACHE[key] = (file_id, frame, bad)
    return frame, bad


def _refuse_bad_prices(
    symbol: str,
    timeframe: str,
    store: DataStore,
    bad: pd.DatetimeIndex,
    lo: pd.Timestamp | None,
    hi: pd.Timestamp | None,
) -> None:
    """DataError naming the first bad bar inside [lo, hi), in the words of `data validate`."""
    import numpy as np

    mask = np.ones(len(bad), dtype=bool)
    if lo is not None:
        mask &= bad >= lo
    if hi is not None:
        mask &= bad < hi
    inside = bad[mask]
    if not len(inside):
        return
    raw = store.read(symbol, timeframe)
    price_report(raw.loc[raw.index.isin(inside)], symbol=symbol, timeframe=timeframe).raise_if_invalid()


def load_bars(
    symbol: str,
    *,
    timeframe: str = "1d",
    start: dt.date | None = None,
    end: dt.date | None = None,
    adjust: bool = True,
    store: DataStore | None = None,
) -> pd.DataFrame:
    """Bars of one symbol: UTC index named ``datetime``, float64 open/high/low/close/volume.

    Restricted to the session dates [start, end], both inclusive. A bar in that range
    with a missing, infinite, zero or negative price or Adj Close (possible in data
    imported with `--relaxed`) is refused with a DataError naming it. With `adjust`
    (the default) OHLC are scaled by Adj Close / Close where the source has Adj
    Close (Yahoo files), so splits and dividends do not show up as price jumps;
    volume is left as traded. Bundled symbols are registered in the store on first
    use. Raises DataError for an unknown symbol (with the known ones and a "did
    you mean") or a range with no bars (with the range that has bars).
    """
    store = store or DataStore()
    check_timeframe(timeframe)
    lo, hi = _bounds(start, end)
    frame, bad = _prepared(symbol, timeframe, adjust, store)
    if len(bad):
        _refuse_bad_prices(symbol, timeframe, store, bad, lo, hi)
    index = frame.index
    mask = None
    if lo is not None:
        mask = index >= lo
    if hi is not None:
        mask = (index < hi) if mask is None else (mask & (index < hi))
    selected = frame if mask is None else frame.loc[mask]
    if selected.empty:
        raise DataError(
            f"{symbol} {timeframe}: no bars between {start or 'the start'} and {end or 'the end'};"
            f" bars exist from {index[0]:%Y-%m-%d} to {index[-1]:%Y-%m-%d}"
        )
    return selected.copy()
