"""Where results live on disk: `{output}/backtests/{id}.json` and the files beside it.

Every write is atomic (a temporary file in the same directory, then `os.replace`),
so a reader (the dashboard, the operator's summary, a second run) sees either the
old file or the new one, never half of one. Ids are deterministic, so a re-run
overwrites instead of adding a duplicate.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from kubetrader.results.schema import ResultDocument, TradeRecord

if TYPE_CHECKING:
    import pandas as pd

    from kubetrader.runner import BacktestResult

BACKTESTS_DIR = "backtests"


@dataclass(frozen=True)
class ResultPaths:
    """The files of one result, all in `{output}/backtests/`."""

    directory: Path
    id: str

    @property
    def json(self) -> Path:
        return self.directory / f"{self.id}.json"

    @property
    def equity_csv(self) -> Path:
        return self.directory / f"{self.id}-equity.csv"

    @property
    def trades_csv(self) -> Path:
        return self.directory / f"{self.id}-trades.csv"

    @property
    def plot(self) -> Path:
        return self.directory / f"{self.id}-equity.svg"

    @property
    def tearsheet(self) -> Path:
        return self.directory / f"{self.id}-tearsheet.html"

    @property
    def log(self) -> Path:
        """The engine's log of the run (kubetrader.results.runlog)."""
        return self.directory / f"{self.id}.log"

    @property
    def legacy_plot(self) -> Path:
        """The PNG that results written before the SVG chart had (removed with the others on a re-run)."""
        return self.directory / f"{self.id}-equity.png"

    def artifacts(self) -> list[Path]:
        return [self.equity_csv, self.trades_csv, self.plot, self.tearsheet, self.legacy_plot]


def result_paths(output_dir: Path | str, result_id: str) -> ResultPaths:
    return ResultPaths(Path(output_dir) / BACKTESTS_DIR, result_id)


def atomic_write(path: Path, write: Callable[[IO[bytes]], None]) -> Path:
    """Write through `write(file)` into a temporary file beside `path`, then rename it over `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o644)  # mkstemp creates 0600; results are read by other users (dashboard, sidecars)
        with os.fdopen(fd, "wb") as handle:
            write(handle)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: Path, text: str) -> Path:
    data = text.encode("utf-8")

    def write(handle: IO[bytes]) -> None:
        handle.write(data)

    return atomic_write(path, write)


def write_document(document: ResultDocument, path: Path, *, index: bool = True) -> Path:
    """Write the result JSON, then its row in the store's index (kubetrader.results.index), so readers
    list it without parsing it."""
    data = document.model_dump_json(indent=1).encode("utf-8")
    stamp: list[os.stat_result] = []

    def write(handle: IO[bytes]) -> None:
        handle.write(data)
        handle.flush()
        stamp.append(os.fstat(handle.fileno()))  # the rename keeps mtime and size

    atomic_write(path, write)
    if index:
        from kubetrader.results.index import index_written

        index_written(path, stamp[0], document)
    return path


def read_document(path: Path | str) -> ResultDocument:
    return ResultDocument.model_validate_json(Path(path).read_bytes())


def equity_csv(result: BacktestResult) -> str:
    """Date, equity, return, exposure and benchmark return per day: the CSV pandas' `to_csv` wrote
    of that frame, byte for byte, from the result's daily columns (kubetrader.results.csvtext)."""
    from kubetrader.results.csvtext import csv_text, float_cells  # numpy: only where results are written

    daily = result.daily
    header = ["date", "equity", "return", "exposure"]
    columns = [daily.dates, float_cells(daily.equity), float_cells(daily.returns)]
    columns.append(float_cells(daily.exposure))
    if daily.benchmark is not None:
        header.append("benchmark_return")
        columns.append(float_cells(daily.benchmark))
    return csv_text(header, columns)


def trades_csv(trades: pd.DataFrame | list[dict[str, Any]]) -> str:
    """One row per round trip, TradeRecord's columns (as `trades.to_csv(index=False)` wrote them), from
    the frame or from its rows (`BacktestResult.trade_rows`: None where the frame has NaN, written alike)."""
    from kubetrader.results.csvtext import cells, csv_text

    if isinstance(trades, list):
        names = list(TradeRecord.model_fields)
        return csv_text(names, [cells([row[name] for row in trades]) for name in names])
    names = [str(name) for name in trades.columns]
    return csv_text(names, [cells(trades[name].tolist()) for name in names])


def write_csvs(result: BacktestResult, paths: ResultPaths) -> None:
    atomic_write_text(paths.equity_csv, equity_csv(result))
    atomic_write_text(paths.trades_csv, trades_csv(result.trade_rows() if result.arrays_only else result.trades))


def remove_stale(paths: ResultPaths) -> None:
    """Remove the artifacts of an earlier run with this id, so a failed re-run cannot look successful."""
    for path in paths.artifacts():
        path.unlink(missing_ok=True)
