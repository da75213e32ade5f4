"""`load_bars`: the one call the runner, the workers and the dashboard use to get bars.

A per-process cache keeps the prepared (adjusted) bars of each data set, keyed
on the Parquet file's identity (mtime, size, inode): a worker that runs many
trials on one data set reads it once, and a file rewritten by an import is seen
at the next call. Callers get a copy (or read-only arrays), so no caller can change
what the next one sees.

`load_columns` is the same as numpy columns without pandas (kubetrader.data.columns): what a
backtest's run reads; `load_bars` is its frame.
"""

from __future__ import annotations

import datetime as dt
import threading
from pathlib import Path
from typing import TYPE_CHECKING, TypedDict, Unpack

import numpy as np

from kubetrader.data.bundled import BUNDLED, bundled_dir, register_bundled
from kubetrader.data.columns import NS_PER_DAY, BarColumns
from kubetrader.data.frames import COLUMNS, adjusted
from kubetrader.data.store import DataStore, check_timeframe
from kubetrader.data.validation import price_columns, price_report
from kubetrader.errors import DataError, SpecError
from kubetrader.specs.common import did_you_mean

if TYPE_CHECKING:
    import pandas as pd

_FileId = tuple[int, int, int]
# (file id, prepared bars, stamps (int64 ns UTC) of the bars with a bad price)
_CACHE: dict[tuple[str, str, str, bool], tuple[_FileId, BarColumns, np.ndarray]] = {}
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


def _bounds(start: dt.date | None, end: dt.date | None) -> tuple[int | None, int | None]:
    """[start 00:00 UTC, the day after end 00:00 UTC) in ns since the epoch: whole session dates,
    intraday bars included."""

    def day(value: dt.date) -> int:
        date = value.date() if isinstance(value, dt.datetime) else value
        return (date - dt.date(1970, 1, 1)).days * NS_PER_DAY

    lo = day(start) if start is not None else None
    hi = day(end) + NS_PER_DAY if end is not None else None
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


def _bad_price_bars(bars: BarColumns) -> np.ndarray:
    """Stamps of the bars whose price (open..close, Adj Close) is missing, infinite, zero or negative."""
    values = np.column_stack([bars.columns[name] for name in price_columns(bars.columns)])
    bad = ~(np.isfinite(values) & (values > 0)).all(axis=1)
    return bars.stamps[bad]


def _prepared(symbol: str, timeframe: str, adjust: bool, store: DataStore) -> tuple[BarColumns, np.ndarray]:
    """The whole data set, adjusted if asked, and its bad-price bars, from the cache when the file has not changed."""
    info = require_dataset(store, symbol, timeframe).stat()
    file_id = (info.st_mtime_ns, info.st_size, info.st_ino)
    key = (str(store.root), symbol, timeframe, adjust)
    with _CACHE_LOCK:
        hit = _CACHE.get(key)
    if hit is not None and hit[0] == file_id:
        return hit[1], hit[2]
    raw = store.read_columns(symbol, timeframe)
    bad = _bad_price_bars(raw)
    columns = adjusted(raw.columns) if adjust else {name: raw.columns[name] for name in COLUMNS}
    for values in columns.values():
        values.flags.writeable = False  # shared by every caller of this process
    bars = BarColumns(raw.stamps, columns)
    with _CACHE_LOCK:
        _CACHE[key] = (file_id, bars, bad)
    return bars, bad


def _refuse_bad_prices(
    symbol: str,
    timeframe: str,
    store: DataStore,
    bad: np.ndarray,
    lo: int | None,
    hi: int | None,
) -> None:
    """DataError naming the first bad bar inside [lo, hi), in the words of `data validate`."""
    mask = np.ones(len(bad), dtype=bool)
    if lo is not None:
        mask &= bad >= lo
    if hi is not None:
        mask &= bad < hi
    inside = bad[mask]
    if not len(inside):
        return
    import pandas as pd

    raw = store.read(symbol, timeframe)
    inside_bars = raw.loc[np.isin(pd.DatetimeIndex(raw.index).asi8, inside)]
    price_report(inside_bars, symbol=symbol, timeframe=timeframe).raise_if_invalid()


class BarRequest(TypedDict, total=False):
    """The options of `load_bars` and `load_columns` (each as in `load_columns`' signature)."""

    timeframe: str
    start: dt.date | None
    end: dt.date | None
    adjust: bool
    store: DataStore | None


def load_bars(symbol: str, **request: Unpack[BarRequest]) -> pd.DataFrame:
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
    return load_columns(symbol, **request).frame()


def load_columns(
    symbol: str,
    *,
    timeframe: str = "1d",
    start: dt.date | None = None,
    end: dt.date | None = None,
    adjust: bool = True,
    store: DataStore | None = None,
) -> BarColumns:
    """`load_bars` as numpy columns (read-only arrays), without pandas: what a backtest's run reads."""
    store = store or DataStore()
    check_timeframe(timeframe)
    lo, hi = _bounds(start, end)
    bars, bad = _prepared(symbol, timeframe, adjust, store)
    if len(bad):
        _refuse_bad_prices(symbol, timeframe, store, bad, lo, hi)
    stamps = bars.stamps
    first = 0 if lo is None else int(np.searchsorted(stamps, lo, side="left"))
    last = stamps.size if hi is None else int(np.searchsorted(stamps, hi, side="left"))
    if first >= last:
        raise DataError(
            f"{symbol} {timeframe}: no bars between {start or 'the start'} and {end or 'the end'};"
            f" bars exist from {bars.day(0)} to {bars.day(-1)}"
        )
    return bars if (first, last) == (0, stamps.size) else bars.select(slice(first, last))
