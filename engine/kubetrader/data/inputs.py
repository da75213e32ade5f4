"""The data a run read, described for its result: one hash over all of it, each data set, and warnings.

`data_hash` in a result must change whenever the bars behind its numbers change,
the benchmark's included (its returns give beta, alpha and the regimes: a benchmark
day scaled by 1.02 once moved beta with every hash unchanged). Each data set is
also recorded on its own, with the range actually used and the sha256 of the raw
files it was imported from, and a range that reaches beyond the data set (an end
date in the future, a start before the first bar) is reported as a warning that
says which bars were used, instead of passing silently.

Everything here is cheap on every run: the stored extents and sources come from the
Parquet footer and the raw files' hashes are computed once per file version, both
cached per process.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from kubetrader.data.frames import columns_hash
from kubetrader.data.loader import require_dataset
from kubetrader.data.store import DataStore
from kubetrader.results.schema import DatasetRecord

if TYPE_CHECKING:
    from kubetrader.data.columns import BarColumns
    from kubetrader.specs import DataSpec

# Bump when the combined form changes (v2: benchmark included, roles in each line).
_INPUTS_DOMAIN = b"kubetrader-inputs-v2\n"

_FileKey = tuple[str, int, int, int]
_STORED: dict[_FileKey, tuple[dt.date, dt.date, list[str]]] = {}
_RAW: dict[_FileKey, str] = {}
_LOCK = threading.Lock()


@dataclass(frozen=True)
class RunInputs:
    """What `describe_inputs` found: the combined hash, one record per data set, and the warnings."""

    data_hash: str
    datasets: list[DatasetRecord]
    warnings: list[str]


def _file_key(path: Path) -> _FileKey:
    info = path.stat()
    return (str(path), info.st_mtime_ns, info.st_size, info.st_ino)


def _stored(store: DataStore, symbol: str, timeframe: str) -> tuple[dt.date, dt.date, list[str]]:
    """First and last session date of the whole stored data set, and its sources (from the Parquet footer)."""
    path = require_dataset(store, symbol, timeframe)
    key = _file_key(path)
    with _LOCK:
        hit = _STORED.get(key)
    if hit is None:
        meta = store.metadata(symbol, timeframe)
        first = dt.datetime.fromisoformat(meta["first"]).date()
        last = dt.datetime.fromisoformat(meta["last"]).date()
        hit = (first, last, [str(s) for s in meta.get("sources", [])])
        with _LOCK:
            _STORED[key] = hit
    return hit


def raw_sha256(path: Path) -> str | None:
    """sha256 of a raw file kept in the store, computed once per version of the file; None if it is absent."""
    try:
        key = _file_key(path)
    except FileNotFoundError:
        return None
    with _LOCK:
        hit = _RAW.get(key)
    if hit is None:
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
        hit = digest.hexdigest()
        with _LOCK:
            _RAW[key] = hit
    return hit


def _range_warnings(label: str, data: DataSpec, bars: BarColumns, first: dt.date, last: dt.date) -> list[str]:
    used = f"the backtest used {bars.day(0)} .. {bars.day(-1)}"
    warnings = []
    if data.start < first:
        warnings.append(f"{label}: the data starts {first}, after the requested start {data.start}; {used}")
    if data.end > last:
        warnings.append(f"{label}: the data ends {last}, before the requested end {data.end}; {used}")
    return warnings


def describe_inputs(
    data: DataSpec, frames: Mapping[str, BarColumns], *, benchmark: str, store: DataStore | None = None
) -> RunInputs:
    """Hash, records and range warnings for the bars a run loaded (traded symbols, then the benchmark)."""
    store = store or DataStore()
    traded = set(data.symbols)
    order = list(dict.fromkeys([*data.symbols, benchmark]))
    digest = hashlib.sha256(_INPUTS_DOMAIN)
    datasets: list[DatasetRecord] = []
    warnings: list[str] = []
    for symbol in order:
        bars = frames[symbol]
        frame_hash = columns_hash(bars.stamps, bars.columns)
        roles = [r for r, held in (("traded", symbol in traded), ("benchmark", symbol == benchmark)) if held]
        digest.update(f"{'+'.join(roles)}:{symbol}={frame_hash}\n".encode())
        first, last, sources = _stored(store, symbol, data.timeframe)
        label = symbol if symbol in traded else f"{symbol} (benchmark)"
        warnings += _range_warnings(label, data, bars, first, last)
        raw = {name: raw_sha256(store.raw_dir / symbol / name) for name in sources}
        datasets.append(
            DatasetRecord(
                symbol=symbol,
                traded=symbol in traded,
                benchmark=symbol == benchmark,
                timeframe=data.timeframe,
                bars=len(bars),
                first_bar=bars.day(0) if len(bars) else None,
                last_bar=bars.day(-1) if len(bars) else None,
                data_hash=frame_hash,
                sources=sources,
                raw_files=raw,
            )
        )
    return RunInputs(data_hash=digest.hexdigest(), datasets=datasets, warnings=warnings)
