"""The on-disk market-data store: raw files as imported, processed bars as Parquet.

Layout under the root (``$KUBETRADER_DATA_DIR``, else ``./data``)::

    raw/{SYMBOL}/{file name}                 the file exactly as imported
    processed/{SYMBOL}/{timeframe}.parquet   the normalized, validated, sorted bars
    processed/{SYMBOL}/{timeframe}.npz       their numpy copy, what a run reads (kubetrader.data.npcopy)

Several worker processes may register the same data at the same moment (each
loads its data set lazily on first use), so every write goes to a temporary
file in the target's directory and is renamed over it with ``os.replace``
(atomic on POSIX): a reader sees the old file or the new one, never half of
one. Read-merge-write is serialized per data set with an ``flock`` on a lock
file beside it, so two merges cannot lose each other's bars.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, get_args

from pydantic import BaseModel, ConfigDict

from kubetrader.data.frames import ADJ_CLOSE, COLUMNS, INDEX_NAME, to_utc_index
from kubetrader.data.npcopy import copy_path, file_sha256, read_copy, read_copy_metadata, write_copy
from kubetrader.data.validation import Issue, ValidationReport, validate_frame
from kubetrader.errors import DataError, SpecError

if TYPE_CHECKING:
    import pandas as pd

    from kubetrader.data.columns import BarColumns

_META_KEY = b"kubetrader"
_MAX_CONFLICTS_LISTED = 20


def timeframes() -> tuple[str, ...]:
    """The timeframes a spec may name (kubetrader.specs.backtest.Timeframe)."""
    from kubetrader.specs.backtest import Timeframe

    return tuple(get_args(Timeframe))


def check_symbol(symbol: str) -> str:
    """The symbol if it is a valid ticker (it becomes a directory name); SpecError otherwise."""
    import re

    from kubetrader.specs.common import SYMBOL_PATTERN

    if not re.fullmatch(SYMBOL_PATTERN, symbol):
        raise SpecError("symbol", f"{symbol!r} is not a ticker: upper-case letters, digits, '.', '_' or '-'")
    return symbol


def check_timeframe(timeframe: str) -> str:
    if timeframe not in timeframes():
        raise SpecError("timeframe", f"unknown timeframe {timeframe!r}; known: {', '.join(timeframes())}")
    return timeframe


class DatasetInfo(BaseModel):
    """One row of `DataStore.list()`: a (symbol, timeframe) data set and where it came from."""

    model_config = ConfigDict(frozen=True, defer_build=True)  # built on first use: not on a run's path

    symbol: str
    timeframe: str
    first: dt.datetime
    last: dt.datetime
    bars: int
    source: str


class Conflict(BaseModel):
    """A bar present in the store and in the merged frame with different values."""

    model_config = ConfigDict(frozen=True, defer_build=True)  # built on first use: not on a run's path

    bar: dt.datetime
    columns: list[str]


class MergeReport(BaseModel):
    """What a merge changed. On overlapping bars the newer source wins; `conflicts` lists where they differed."""

    model_config = ConfigDict(frozen=True, defer_build=True)  # built on first use: not on a run's path

    symbol: str
    timeframe: str
    source: str
    bars_before: int
    bars_after: int
    added: int
    unchanged: int
    replaced: int
    conflicts: list[Conflict] = []
    warnings: list[Issue] = []

    def summary(self) -> str:
        return (
            f"{self.symbol} {self.timeframe}: {self.added} bars added, {self.replaced} replaced,"
            f" {self.unchanged} unchanged ({self.bars_after} in store) from {self.source}"
        )


def _daily_stamps(index: pd.DatetimeIndex) -> pd.DatetimeIndex:
    """00:00 UTC of each bar's session date, the date taken in the timestamps' own time zone."""
    local = index.normalize()
    if local.tz is not None:
        local = local.tz_localize(None)
    return to_utc_index(local)


def _canonical(frame: pd.DataFrame, timeframe: str) -> pd.DataFrame:
    """The frame with a UTC ns index (daily bars at 00:00 UTC) and only known columns, in store order."""
    import pandas as pd

    out = frame.copy()
    out.index = _daily_stamps(pd.DatetimeIndex(out.index)) if timeframe == "1d" else to_utc_index(out.index)
    columns = [*COLUMNS, ADJ_CLOSE] if ADJ_CLOSE in out.columns else list(COLUMNS)
    return out.loc[:, [c for c in columns if c in out.columns]].astype("float64")


@contextlib.contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _atomic_write(target: Path, write: Any) -> None:
    """Call write(tmp_path), then rename it over target; the temporary file never outlives a failure."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _differs(old: pd.DataFrame, new: pd.DataFrame) -> pd.DataFrame:
    """Per bar and column: do two aligned frames differ beyond float noise (NaN equals NaN)?"""
    import numpy as np
    import pandas as pd

    columns = [c for c in new.columns if c in old.columns]
    same = np.isclose(old[columns].to_numpy(), new[columns].to_numpy(), rtol=1e-9, atol=0.0, equal_nan=True)
    return pd.DataFrame(~same, index=new.index, columns=columns)


class DataStore:
    """Market data on disk. Every write validates; see the module docstring for the layout."""

    def __init__(self, root: Path | str | None = None) -> None:
        self.root = Path(root or os.environ.get("KUBETRADER_DATA_DIR") or "data").resolve()

    def __repr__(self) -> str:
        return f"DataStore({str(self.root)!r})"

    @property
    def raw_dir(self) -> Path:
        return self.root / "raw"

    @property
    def processed_dir(self) -> Path:
        return self.root / "processed"

    def path(self, symbol: str, timeframe: str) -> Path:
        """Where the processed bars of (symbol, timeframe) live (whether or not they exist yet)."""
        return self.processed_dir / check_symbol(symbol) / f"{check_timeframe(timeframe)}.parquet"

    def has(self, symbol: str, timeframe: str) -> bool:
        return self.path(symbol, timeframe).is_file()

    def datasets(self) -> dict[str, list[str]]:
        """symbol -> timeframes present, from the directory tree only (cheap; no file is opened)."""
        found: dict[str, list[str]] = {}
        if self.processed_dir.is_dir():
            for path in sorted(self.processed_dir.glob("*/*.parquet")):
                found.setdefault(path.parent.name, []).append(path.stem)
        return found

    def read(self, symbol: str, timeframe: str) -> pd.DataFrame:
        """The stored bars (with adj_close when the source had it); DataError when there are none."""
        return self.read_columns(symbol, timeframe).frame()

    def read_columns(self, symbol: str, timeframe: str) -> BarColumns:
        """`read` as numpy columns, without pandas (kubetrader.data.columns): what a backtest's run reads.

        Through `ParquetFile`, not `read_table`: that one goes through pyarrow.dataset, whose import
        loads pandas."""
        path = self.path(symbol, timeframe)
        try:
            copy = read_copy(path)
            if copy is not None:  # its numpy copy: no pyarrow (kubetrader.data.npcopy)
                return copy[0]
            import pyarrow.parquet as pq

            from kubetrader.data.columns import from_table

            return from_table(pq.ParquetFile(path).read(), INDEX_NAME)
        except FileNotFoundError:
            raise DataError(f"no {timeframe} bars for {symbol} in the store at {self.root}") from None

    def metadata(self, symbol: str, timeframe: str) -> dict[str, Any]:
        """What the store keeps about a data set besides its bars: first, last, sources (the Parquet footer)."""
        return self._metadata(self.path(symbol, timeframe))

    def _metadata(self, path: Path) -> dict[str, Any]:
        copied = read_copy_metadata(path)
        if copied is not None:
            return dict(copied)
        import pyarrow.parquet as pq

        meta = pq.read_schema(path).metadata or {}
        return dict(json.loads(meta.get(_META_KEY, b"{}")))

    def _write(self, symbol: str, timeframe: str, frame: pd.DataFrame, sources: list[str]) -> None:
        """The Parquet file, then its numpy copy (kubetrader.data.npcopy); the caller holds the data set's lock."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        from kubetrader.data.columns import from_table

        # Built column by column: pyarrow's from_pandas reads the deprecated tz-dropping `.values` (pandas 3.1).
        stamps = pa.array(to_utc_index(frame.index).tz_convert(None).to_numpy(), type=pa.timestamp("ns", tz="UTC"))
        table = pa.table({INDEX_NAME: stamps, **{c: pa.array(frame[c].to_numpy()) for c in frame.columns}})
        ours = {
            "symbol": symbol,
            "timeframe": timeframe,
            "sources": sources,
            "first": frame.index[0].isoformat(),
            "last": frame.index[-1].isoformat(),
        }
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), _META_KEY: json.dumps(ours)})
        path = self.path(symbol, timeframe)
        written: list[str] = []

        def write(tmp: Path) -> None:
            pq.write_table(table, tmp)
            written.append(file_sha256(tmp))  # of the very file renamed into place

        _atomic_write(path, write)
        bars = from_table(table, INDEX_NAME)  # what a reader of the Parquet file gets (read_columns)
        _atomic_write(copy_path(path), lambda tmp: write_copy(tmp, bars, metadata=ours, parquet_sha256=written[0]))

    def merge(
        self,
        symbol: str,
        timeframe: str,
        frame: pd.DataFrame,
        *,
        source: str = "merge",
        strict: bool = True,
        max_gap_sessions: int = 5,
    ) -> MergeReport:
        """Merge bars into the store: new bars are added, old ones kept, nothing is duplicated.

        Where a bar is already stored with different values, **the newer source
        wins** (the frame being merged: a vendor's correction or a fresh download
        replaces what was there) and the bar is listed in the report's
        `conflicts`. Merging the same frame twice adds nothing and does not
        rewrite the file.

        The incoming frame and the merged result (for gaps at the seam) are
        validated; with `strict` (the default) any error refuses the merge with a
        DataError naming the first bad bar. `strict=False` stores the data anyway,
        sorted and with repeated timestamps collapsed to the last one, because the
        loader promises sorted, unique bars; errors stay visible to `validate`.
        """
        import pandas as pd

        check_symbol(symbol)
        check_timeframe(timeframe)
        incoming_report = validate_frame(frame, symbol=symbol, timeframe=timeframe, max_gap_sessions=max_gap_sessions)
        missing = [i for i in incoming_report.errors if i.check == "missing_column"]
        if missing:
            raise DataError(f"{symbol} {timeframe} from {source}: {missing[0].message}")
        if strict:
            incoming_report.raise_if_invalid()
        new = _canonical(frame, timeframe)
        new = new[~new.index.duplicated(keep="last")].sort_index()
        path = self.path(symbol, timeframe)
        with _locked(path.with_name(f".{timeframe}.lock")):
            if path.is_file():
                old = self.read(symbol, timeframe)
                sources = list(self._metadata(path).get("sources", []))
            else:
                old, sources = new.iloc[0:0], []
            if len(old) and (ADJ_CLOSE in old.columns) != (ADJ_CLOSE in new.columns):
                have = "has" if ADJ_CLOSE in old.columns else "has no"
                raise DataError(
                    f"{symbol} {timeframe}: the store {have} Adj Close and {source} does not match;"
                    " adjusted and unadjusted bars cannot be merged"
                )
            overlap = new.index.intersection(old.index)
            changed = _differs(old.loc[overlap], new.loc[overlap])
            changed_rows = changed.any(axis=1)
            added = len(new) - len(overlap)
            replaced = int(changed_rows.sum())
            conflicts = [
                Conflict(bar=when.to_pydatetime(), columns=[c for c in changed.columns if changed.at[when, c]])
                for when in changed.index[changed_rows.to_numpy()][:_MAX_CONFLICTS_LISTED]
            ]
            merged = pd.concat([old.drop(index=overlap), new]).sort_index() if len(old) else new
            merged.index.name = INDEX_NAME
            merged_report = validate_frame(
                merged, symbol=symbol, timeframe=timeframe, max_gap_sessions=max_gap_sessions
            )
            if strict:
                merged_report.raise_if_invalid()
            if added or replaced or not path.is_file():
                if source not in sources:
                    sources.append(source)
                self._write(symbol, timeframe, merged, sources)
        return MergeReport(
            symbol=symbol,
            timeframe=timeframe,
            source=source,
            bars_before=len(old),
            bars_after=len(merged),
            added=added,
            unchanged=len(overlap) - replaced,
            replaced=replaced,
            conflicts=conflicts,
            warnings=merged_report.warnings if strict else merged_report.issues,
        )

    def import_file(
        self,
        path: Path | str,
        symbol: str,
        *,
        fmt: str = "auto",
        timeframe: str | None = None,
        strict: bool = True,
        max_gap_sessions: int = 5,
    ) -> MergeReport:
        """Read a CSV (format and timeframe detected unless given), keep a raw copy, merge its bars."""
        path = Path(path)
        check_symbol(symbol)
        from kubetrader.data.readers import infer_timeframe, read_bars  # CSV parsing: imports only, not a run's path

        frame, _fmt = read_bars(path, fmt)
        if timeframe is None:
            timeframe = infer_timeframe(to_utc_index(frame.index))
        check_timeframe(timeframe)
        report = self.merge(
            symbol, timeframe, frame, source=path.name, strict=strict, max_gap_sessions=max_gap_sessions
        )
        raw = self.raw_dir / symbol / path.name
        if not raw.is_file() or raw.stat().st_size != path.stat().st_size or raw.read_bytes() != path.read_bytes():
            _atomic_write(raw, lambda tmp: shutil.copyfile(path, tmp))
        return report

    def list(self) -> list[DatasetInfo]:
        """Every stored data set, from Parquet footers only (no bars are read)."""
        import pyarrow.parquet as pq

        rows = []
        for symbol, tfs in self.datasets().items():
            for timeframe in tfs:
                path = self.path(symbol, timeframe)
                meta = self._metadata(path)
                rows.append(
                    DatasetInfo(
                        symbol=symbol,
                        timeframe=timeframe,
                        first=dt.datetime.fromisoformat(meta["first"]),
                        last=dt.datetime.fromisoformat(meta["last"]),
                        bars=pq.read_metadata(path).num_rows,
                        source=", ".join(meta.get("sources", [])),
                    )
                )
        return rows

    def validate(self, symbol: str, timeframe: str, *, max_gap_sessions: int = 5) -> ValidationReport:
        """Check the stored bars of one data set (see kubetrader.data.validation for the checks)."""
        frame = self.read(symbol, timeframe)
        return validate_frame(frame, symbol=symbol, timeframe=timeframe, max_gap_sessions=max_gap_sessions)


__all__ = ["Conflict", "DataStore", "DatasetInfo", "MergeReport", "check_symbol", "check_timeframe"]
