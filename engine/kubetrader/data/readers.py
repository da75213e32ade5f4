"""CSV readers: pure functions from a file (path or open text buffer) to the normalized frame.

Three layouts are understood:

- ``yahoo``: ``Date,Open,High,Low,Close,Adj Close,Volume`` (Yahoo Finance downloads).
- ``backtrader``: ``Date,[Time,]Open,High,Low,Close,Volume,OpenInterest`` (Backtrader's
  sample data); open interest is dropped, it is zero in every bundled file.
- ``ohlcv``: a first column of timestamps (named or not) and Open, High, Low, Close,
  Volume in any order and case (backtesting.py's GOOG and EURUSD files).

Readers keep the file's order and values: sorting, dropping or repairing bars is
not their business, validation decides what is acceptable and names the bar.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import IO, TYPE_CHECKING, Literal

from kubetrader.data.frames import ADJ_CLOSE, COLUMNS, bar_frame, to_utc_index
from kubetrader.errors import DataError

if TYPE_CHECKING:
    import pandas as pd

Format = Literal["yahoo", "backtrader", "ohlcv"]
FORMATS: tuple[str, ...] = ("yahoo", "backtrader", "ohlcv")
Source = str | os.PathLike[str] | IO[str]

# Bar spacing -> timeframe label (the labels of kubetrader.specs.backtest.Timeframe).
_TIMEFRAMES_BY_SECONDS: dict[int, str] = {60: "1m", 300: "5m", 3600: "1h", 86400: "1d"}


def _name(source: Source) -> str:
    return str(source) if isinstance(source, str | os.PathLike) else getattr(source, "name", "<buffer>")


def _text(source: Source) -> str:
    if isinstance(source, str | os.PathLike):
        try:
            return Path(source).read_text(encoding="utf-8-sig")
        except OSError as exc:
            raise DataError(f"cannot read {source}: {exc.strerror or exc}") from exc
    return source.read()


def detect_format(header: str) -> Format:
    """Guess the layout from a CSV header line (case and spacing ignored)."""
    names = [h.strip().lower() for h in header.strip().split(",")]
    if "adj close" in names:
        return "yahoo"
    if "openinterest" in names:
        return "backtrader"
    if {"open", "high", "low", "close"} <= set(names):
        return "ohlcv"
    raise DataError(f"unrecognized CSV header {header.strip()!r}: expected Open, High, Low, Close columns")


def _read_table(text: str, name: str) -> pd.DataFrame:
    import pandas as pd

    try:
        table = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False, skipinitialspace=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise DataError(f"{name}: not a readable CSV file: {exc}") from exc
    table.columns = [str(c).strip() for c in table.columns]
    return table


def _column(table: pd.DataFrame, wanted: str, name: str) -> pd.Series:
    """The column whose name matches `wanted` ignoring case and spaces; DataError naming it if absent."""
    key = wanted.replace(" ", "").lower()
    for column in table.columns:
        if column.replace(" ", "").lower() == key:
            return table[column]
    raise DataError(f"{name}: missing column {wanted!r} (columns: {', '.join(map(str, table.columns))})")


def _timestamps(raw: pd.Series, name: str) -> pd.DatetimeIndex:
    import pandas as pd

    parsed = pd.to_datetime(raw.str.strip(), errors="coerce", utc=True, format="ISO8601")
    bad = parsed.isna()
    if bad.any():
        row = int(bad.to_numpy().argmax())
        # +2: one for the header line, one because file lines count from 1
        raise DataError(f"{name}: line {row + 2}: cannot parse timestamp {raw.iloc[row]!r}")
    return to_utc_index(parsed)


def _frame(table: pd.DataFrame, index: pd.DatetimeIndex, name: str, *, adj_close: bool) -> pd.DataFrame:
    wanted = {c: _column(table, c.capitalize(), name).to_numpy() for c in COLUMNS}
    if adj_close:
        wanted[ADJ_CLOSE] = _column(table, "Adj Close", name).to_numpy()
    return bar_frame(index, dict(wanted))


def read_yahoo(source: Source, *, name: str | None = None) -> pd.DataFrame:
    """A Yahoo Finance CSV; keeps Adj Close as ``adj_close`` for adjustment at load time."""
    name = name or _name(source)
    table = _read_table(_text(source), name)
    return _frame(table, _timestamps(_column(table, "Date", name), name), name, adj_close=True)


def read_backtrader(source: Source, *, name: str | None = None) -> pd.DataFrame:
    """A Backtrader-style CSV, daily (Date) or intraday (Date and Time columns)."""
    name = name or _name(source)
    table = _read_table(_text(source), name)
    stamps = _column(table, "Date", name)
    if any(c.lower() == "time" for c in table.columns):
        stamps = stamps.str.strip() + " " + _column(table, "Time", name).str.strip()
    return _frame(table, _timestamps(stamps, name), name, adj_close=False)


def read_ohlcv(source: Source, *, name: str | None = None) -> pd.DataFrame:
    """A CSV whose first column holds the timestamps and whose other columns are OHLCV by name."""
    name = name or _name(source)
    table = _read_table(_text(source), name)
    if table.columns.empty:
        raise DataError(f"{name}: empty file")
    return _frame(table, _timestamps(table.iloc[:, 0], name), name, adj_close=False)


_READERS = {"yahoo": read_yahoo, "backtrader": read_backtrader, "ohlcv": read_ohlcv}


def read_bars(source: Source, fmt: str = "auto") -> tuple[pd.DataFrame, Format]:
    """Read a CSV in the given layout (or the detected one with ``auto``); returns the frame and its layout."""
    name = _name(source)
    text = _text(source)
    if fmt == "auto":
        fmt = detect_format(text.split("\n", 1)[0])
    if fmt not in _READERS:
        raise DataError(f"{name}: unknown format {fmt!r}; known: auto, {', '.join(FORMATS)}")
    frame = _READERS[fmt](io.StringIO(text), name=name)
    return frame, fmt  # type: ignore[return-value]


def infer_timeframe(index: pd.DatetimeIndex) -> str:
    """The timeframe label from the most common bar spacing (weekends and holidays do not fool it)."""
    import pandas as pd

    if len(index) < 2:
        raise DataError("cannot infer the timeframe from fewer than 2 bars; give it explicitly")
    steps = index.to_series().diff().dropna()
    steps = steps[steps > pd.Timedelta(0)]  # zero and negative steps are for validation to report
    if steps.empty:
        raise DataError("cannot infer the timeframe: no increasing timestamps")
    seconds = int(steps.mode().iloc[0].total_seconds())
    if seconds not in _TIMEFRAMES_BY_SECONDS:
        raise DataError(
            f"bars are {seconds} s apart, which is none of {', '.join(_TIMEFRAMES_BY_SECONDS.values())};"
            " give the timeframe explicitly"
        )
    return _TIMEFRAMES_BY_SECONDS[seconds]
