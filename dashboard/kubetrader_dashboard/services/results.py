"""The result store (results/backtests/*.json) behind a small SQLite index.

Listing must stay fast with tens of thousands of results, so requests never parse
every JSON file: the index keeps one summary row per file (and its trades, for the
trade log), keyed by file name, mtime and size. A sync re-reads only new or changed
files and drops rows of removed ones. It runs when the directory's mtime moves (the
engine writes with a rename, which moves it) and at most every `RESCAN_SECONDS`
otherwise, so an in-place rewrite is picked up too.

The engine writes the rows as it writes each result (kubetrader.results.index), so on
a store the engine filled the first request finds them all and parses nothing. When the
index lives apart from the store (a read-only volume in the chart), it starts as a copy
of the engine's. The index is a cache: deleting it loses nothing, and a store whose
index cannot be opened gets an in-memory one.
"""

from __future__ import annotations

import logging
import math
import os
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast

from pydantic import ValidationError

from kubetrader.results import index
from kubetrader.results.index import HEADLINE_COLUMNS
from kubetrader.results.schema import ResultDocument
from kubetrader.specs.metrics import METRIC_NAMES
from kubetrader_dashboard.models.backtests import BacktestSummary, Trade
from kubetrader_dashboard.models.pages import ResultChoice

log = logging.getLogger(__name__)

RESCAN_SECONDS = 5.0
DOCUMENT_CACHE_SIZE = 16

SUMMARY_SORTS = ("finished_at", "started_at", "name", "strategy", "wall_seconds", *HEADLINE_COLUMNS)
SUMMARY_COLUMNS = ", ".join(
    f'"{name}"'
    for name in (
        "id", "name", "strategy", "symbols", "start", "end", "status", "error", "started_at", "finished_at",
        "wall_seconds", "project", "asset_class", "strategy_family", "mlflow_run_id", *HEADLINE_COLUMNS,
    )
)  # fmt: skip
# (key, strategy, results, best, mean, best result id, its sharpe_ratio, total_return, max_drawdown)
RankingValues = tuple[str, str, int, float | None, float | None, str | None, float | None, float | None, float | None]
TRADE_SORTS = ("entry_time", "exit_time", "symbol", "pnl", "pnl_net", "commission", "size")
# The dashboard's own indexes on the engine's index, for its newest-succeeded queries (the
# Performance page's choices, the Dashboard page's latest result): without one, each read every
# succeeded row (their metrics JSON too) to sort 10,000 results by time, ~30 ms a query. Created
# here, not in the engine's schema, as the dashboard is the only reader that sorts so; an index of
# another version loses them with its tables, and the next start makes them again.
# The trade log's: a covering index of every column it filters or sorts on, state first (each
# query constrains it: "all" is `is_open IN (0, 1)`). Any filter and sort is then a search of this
# index, never a look-up of each trade's row: with only trades_symbol, a symbol's count and sorted
# page read every matching row (100,000 at 10,000 results), ~250 ms each here, against ~10-30 ms.
# A result's trades go by the primary key (result_id, seq), which the planner prefers for them.
DASHBOARD_INDEXES = f"""
CREATE INDEX IF NOT EXISTS dashboard_succeeded_finished ON results (status, finished_at);
CREATE INDEX IF NOT EXISTS dashboard_trades_cover ON trades (is_open, symbol, entry_time, strategy,
    {", ".join(key for key in TRADE_SORTS if key not in ("symbol", "entry_time"))});
"""


class _FMean:
    """SQL aggregate: `statistics.fmean` of the non-null values (fsum, exactly rounded), NULL when none."""

    def __init__(self) -> None:
        self.values: list[float] = []

    def step(self, value: float | None) -> None:
        if value is not None:
            self.values.append(value)

    def finalize(self) -> float | None:
        return math.fsum(self.values) / len(self.values) if self.values else None


class ResultNotFoundError(LookupError):
    """No result with this id in the store."""


@dataclass(frozen=True)
class ResultFilter:
    """What the result list and the rankings filter on (all optional, combined with AND)."""

    strategy: str | None = None
    symbol: str | None = None
    status: str | None = None
    project: str | None = None
    asset_class: str | None = None
    strategy_family: str | None = None
    name: str | None = None


@dataclass(frozen=True)
class TradeFilter:
    """`state`: closed round trips (the trades every count means), open positions, or both."""

    symbol: str | None = None
    strategy: str | None = None
    result_id: str | None = None
    start: str | None = None
    end: str | None = None
    state: Literal["closed", "open", "all"] = "closed"


class ResultStore:
    """Read access to one result directory; thread-safe (uvicorn runs sync routes in a pool)."""

    def __init__(self, results_dir: Path, index_path: Path | None = None) -> None:
        self.results_dir = results_dir
        self.backtests_dir = results_dir / "backtests"
        self._lock = threading.RLock()
        self._conn = self._open(index_path or index.index_path_for(results_dir))
        self._dir_mtime: int | None = None
        self._last_scan = 0.0
        # The stamps the index holds, kept between syncs so a sync reads from SQLite only what changed.
        self._known: dict[str, tuple[int, int]] | None = None
        self._documents: OrderedDict[tuple[str, int], ResultDocument] = OrderedDict()

    def _open(self, path: Path) -> sqlite3.Connection:
        """The index at `path`, seeded from the engine's own index when `path` is a separate, empty copy."""
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            conn = index.open_index(path, rebuild=True)
        except (OSError, sqlite3.Error) as exc:
            log.warning("result index at %s unusable (%s); using an in-memory index", path, exc)
            conn = index.open_index(":memory:")
        conn.create_aggregate("kubetrader_fmean", 1, _FMean)  # type: ignore[arg-type]  # typeshed: int-only
        shared = index.index_path_for(self.results_dir)
        if path != shared and shared.exists() and conn.execute("SELECT count(*) FROM results").fetchone()[0] == 0:
            self._seed(conn, shared)
        try:
            conn.executescript(DASHBOARD_INDEXES)
        except sqlite3.Error as exc:  # an index another process holds locked: slower queries, same answers
            log.warning("result index at %s: dashboard indexes not created (%s)", path, exc)
        return conn

    @staticmethod
    def _seed(conn: sqlite3.Connection, shared: Path) -> None:
        """Copy the engine's index (on a volume this process may only read) instead of parsing every file."""
        try:
            source = sqlite3.connect(f"{shared.resolve().as_uri()}?mode=ro", uri=True, timeout=index.BUSY_TIMEOUT)
            try:
                if source.execute("SELECT value FROM meta WHERE key = 'version'").fetchone() == (
                    str(index.INDEX_VERSION),
                ):
                    source.backup(conn)
            finally:
                source.close()
        except sqlite3.Error as exc:  # an index being written, or of another version: sync reads the files
            log.info("result index at %s not copied (%s); reading the result files", shared, exc)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    # -- keeping the index in step with the directory ---------------------------------

    def sync(self, *, force: bool = False) -> int:
        """Bring the index up to date; returns how many files were (re)read."""
        with self._lock:
            try:
                dir_mtime = self.backtests_dir.stat().st_mtime_ns
            except FileNotFoundError:
                dir_mtime = -1
            now = time.monotonic()
            if not force and dir_mtime == self._dir_mtime and now - self._last_scan < RESCAN_SECONDS:
                return 0
            self._dir_mtime, self._last_scan = dir_mtime, now
            on_disk: dict[str, tuple[int, int]] = {}
            if dir_mtime != -1:
                with os.scandir(self.backtests_dir) as entries:
                    for entry in entries:
                        if entry.name.endswith(".json") and entry.is_file():
                            stat = entry.stat()
                            on_disk[entry.name] = (stat.st_mtime_ns, stat.st_size)
            if force or self._known is None:
                self._known = self._stamps()
            known = self._known
            changed = [name for name, stamp in on_disk.items() if known.get(name) != stamp]
            removed = [name for name in known if name not in on_disk]
            if changed:  # rows another process wrote since (the engine, on write): trust them, parse the rest
                known.update(self._stamps(changed))
                changed = [name for name in changed if known.get(name) != on_disk[name]]
            if not changed and not removed:
                return 0
            with index.transaction(self._conn) as conn:
                for name in removed:
                    index.forget(conn, name)
                    known.pop(name, None)
                for name in changed:
                    self._index_file(conn, name, *on_disk[name])
                    known[name] = on_disk[name]
            return len(changed)

    def _stamps(self, files: Sequence[str] | None = None) -> dict[str, tuple[int, int]]:
        """(mtime, size) of the files the index holds (all, or just `files`), broken ones included."""
        query = "SELECT file, mtime_ns, size FROM results{0} UNION ALL SELECT file, mtime_ns, size FROM broken{0}"
        if files is None:
            rows = self._conn.execute(query.format("")).fetchall()
        else:
            rows = []
            for start in range(0, len(files), 400):  # SQLite binds at most 32,766 (older: 999) parameters
                chunk = list(files[start : start + 400])
                marks = f" WHERE file IN ({','.join('?' * len(chunk))})"
                rows += self._conn.execute(query.format(marks), chunk * 2).fetchall()
        return {row[0]: (row[1], row[2]) for row in rows}

    def _index_file(self, conn: sqlite3.Connection, file: str, mtime_ns: int, size: int) -> None:
        try:
            document = ResultDocument.model_validate_json((self.backtests_dir / file).read_bytes())
        except (OSError, ValidationError, ValueError) as exc:
            # A half-written or foreign file must not hide the rest of the store.
            index.record_broken(conn, file, mtime_ns, size, str(exc))
            return
        index.index_document(conn, file, mtime_ns, size, document)

    # -- queries ------------------------------------------------------------------------

    @staticmethod
    def _where(flt: ResultFilter) -> tuple[str, list[Any]]:
        clauses: list[str] = []
        args: list[Any] = []
        for column in ("strategy", "status", "project", "asset_class", "strategy_family"):
            value = getattr(flt, column)
            if value:
                clauses.append(f"{column} = ?")
                args.append(value)
        if flt.symbol:
            clauses.append("symbols LIKE ?")
            args.append(f"%,{flt.symbol},%")
        if flt.name:
            clauses.append("name LIKE ?")
            args.append(f"%{flt.name}%")
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", args

    @staticmethod
    def _order(sort: str, allowed: Sequence[str], metric_column: str | None) -> tuple[str, list[Any]]:
        """ORDER BY for `name` / `-name`; metrics sort through json_extract with a bound path."""
        descending = sort.startswith("-")
        key = sort.lstrip("-")
        direction = "DESC" if descending else "ASC"
        if key in allowed:
            return f' ORDER BY "{key}" {direction} NULLS LAST, rowid', []
        if metric_column and key in METRIC_NAMES:
            return f" ORDER BY json_extract({metric_column}, ?) {direction} NULLS LAST, rowid", [f"$.{key}"]
        raise ValueError(f"sort: unknown key {key!r}")

    def list_results(
        self, flt: ResultFilter, *, sort: str, limit: int, offset: int
    ) -> tuple[list[BacktestSummary], int]:
        self.sync()
        where, args = self._where(flt)
        with self._lock:
            total = self._conn.execute(f"SELECT count(*) FROM results{where}", args).fetchone()[0]
            rows = self._sorted_rows(SUMMARY_COLUMNS, flt, sort=sort, limit=limit, offset=offset)
        return [self._summary(row) for row in rows], int(total)

    def _sorted_rows(self, columns: str, flt: ResultFilter, *, sort: str, limit: int, offset: int) -> list[sqlite3.Row]:
        """`columns` of the matching rows in `sort` order, `limit` from `offset`.

        Row ids are sorted first (from an index when one covers the filter and key), then only the
        page's rows are read: sorting whole rows (their metrics JSON included) was most of a listing
        at 10,000 results, and all of it when many rows tie on the key.
        """
        where, args = self._where(flt)
        order, order_args = self._order(sort, SUMMARY_SORTS, "metrics")
        with self._lock:
            return self._conn.execute(
                f"SELECT {columns} FROM results WHERE rowid IN "
                f"(SELECT rowid FROM results{where}{order} LIMIT ? OFFSET ?){order}",
                [*args, *order_args, limit, offset, *order_args],
            ).fetchall()

    def choices(self, flt: ResultFilter, *, sort: str, limit: int) -> list[ResultChoice]:
        """The first `limit` results in `list_results`' order, as a select box offers them (id, name,
        strategy, symbols): a list of choices reads four columns, not a summary row each."""
        self.sync()
        rows = self._sorted_rows("id, name, strategy, symbols", flt, sort=sort, limit=limit, offset=0)
        return [
            ResultChoice(id=row[0], name=row[1], strategy=row[2], symbols=[s for s in row[3].split(",") if s])
            for row in rows
        ]

    @staticmethod
    def _summary(row: sqlite3.Row) -> BacktestSummary:
        return BacktestSummary(
            id=row["id"],
            name=row["name"],
            strategy=row["strategy"],
            symbols=[s for s in row["symbols"].split(",") if s],
            start=row["start"],
            end=row["end"],
            status=row["status"],
            error=row["error"],
            started_at=row["started_at"],
            finished_at=row["finished_at"],
            wall_seconds=row["wall_seconds"],
            project=row["project"],
            asset_class=row["asset_class"],
            strategy_family=row["strategy_family"],
            mlflow_run_id=row["mlflow_run_id"],
            **{name: row[name] for name in HEADLINE_COLUMNS},
        )

    def ranking_rows(
        self, flt: ResultFilter, *, metric: str, descending: bool, group_by: Literal["strategy", "result"], limit: int
    ) -> list[RankingValues]:
        """(key, strategy, results, best, mean, best result id, its sharpe, total return, max drawdown), best first.

        Grouped, ranked and cut to `limit` in SQL: building 10,000 rows in Python to keep 50 was
        most of a ranking. The best result of a strategy is the bare columns of its row holding the
        max (min) value, which SQLite documents for an aggregate query with a single max() or min()
        (https://sqlite.org/lang_select.html#bare_columns_in_an_aggregate_query). A result without
        the metric counts in `results` but never wins; a strategy none of whose results has it ranks
        last with no best. Ties go to the first in (strategy, id) order, the order the covering index
        `results_headline` scans in. `mean` is `statistics.fmean` of the values (an aggregate
        registered on the connection: SQLite's avg rounds differently).
        """
        self.sync()
        if metric not in METRIC_NAMES:  # a known name only: it becomes part of the SQL
            raise ValueError(f"unknown metric {metric!r}")
        where, args = self._where(flt)
        where = (where + " AND" if where else " WHERE") + " status = 'succeeded'"
        value = metric if metric in HEADLINE_COLUMNS else f"json_extract(metrics, '$.{metric}')"
        direction = "DESC" if descending else "ASC"
        if group_by == "result":
            query = (
                f"SELECT id, strategy, 1, {value} AS v, {value}, id, sharpe_ratio, total_return, max_drawdown "
                f"FROM results{where} ORDER BY v IS NULL, v {direction}, strategy, id LIMIT ?"
            )
        else:
            # a strategy none of whose results has the metric: no best result to show
            best_row = ", ".join(
                f"CASE WHEN best IS NULL THEN NULL ELSE {name} END"
                for name in ("id", "sharpe_ratio", "total_return", "max_drawdown")
            )
            query = f"""SELECT strategy, strategy, n, best, mean, {best_row} FROM (
                    SELECT strategy, count(*) AS n, {"max" if descending else "min"}(v) AS best,
                           kubetrader_fmean(v) AS mean, id, sharpe_ratio, total_return, max_drawdown
                    FROM (SELECT strategy, id, {value} AS v, sharpe_ratio, total_return, max_drawdown
                          FROM results{where} ORDER BY strategy, id)
                    GROUP BY strategy)
                ORDER BY best IS NULL, best {direction}, strategy LIMIT ?"""
        with self._lock:
            return [cast(RankingValues, tuple(row)) for row in self._conn.execute(query, [*args, limit]).fetchall()]

    def counts(self) -> dict[str, int]:
        self.sync()
        with self._lock:
            results = dict(self._conn.execute("SELECT status, count(*) FROM results GROUP BY status").fetchall())
            broken = self._conn.execute("SELECT count(*) FROM broken").fetchone()[0]
        return {
            "succeeded": int(results.get("succeeded", 0)),
            "failed": int(results.get("failed", 0)),
            "unreadable": int(broken),
        }

    def summary(self, result_id: str) -> BacktestSummary:
        self.sync()
        with self._lock:
            row = self._conn.execute(f"SELECT {SUMMARY_COLUMNS} FROM results WHERE id = ?", (result_id,)).fetchone()
        if row is None:
            raise ResultNotFoundError(result_id)
        return self._summary(row)

    def names(self) -> dict[str, str]:
        """Result id -> its name (for labelling logs)."""
        self.sync()
        with self._lock:
            return {row[0]: row[1] for row in self._conn.execute("SELECT id, name FROM results")}

    def latest_id(self) -> str | None:
        self.sync()
        with self._lock:
            row = self._conn.execute(
                "SELECT id FROM results WHERE status = 'succeeded' ORDER BY finished_at DESC, rowid DESC LIMIT 1"
            ).fetchone()
        return None if row is None else str(row["id"])

    def trades(self, flt: TradeFilter, *, sort: str, limit: int, offset: int) -> tuple[list[Trade], int]:
        self.sync()
        clauses: list[str] = []
        args: list[Any] = []
        for column, value in (("symbol", flt.symbol), ("strategy", flt.strategy), ("result_id", flt.result_id)):
            if value:
                clauses.append(f"{column} = ?")
                args.append(value)
        # always constrained, "all" too: the trade log's covering index leads with it (DASHBOARD_INDEXES)
        clauses.append({"closed": "is_open = 0", "open": "is_open = 1", "all": "is_open IN (0, 1)"}[flt.state])
        if flt.start:
            clauses.append("entry_time >= ?")
            args.append(flt.start)
        if flt.end:
            # Dates compare as strings; a bare end date includes that whole day.
            clauses.append("entry_time < ?")
            args.append(flt.end + ("\U0010ffff" if len(flt.end) == 10 else ""))
        where = " WHERE " + " AND ".join(clauses)
        order, _ = self._order(sort, TRADE_SORTS, None)
        with self._lock:
            source = "trades"
            if (
                not flt.result_id
                and self._conn.execute(
                    "SELECT 1 FROM sqlite_master WHERE type = 'index' AND name = 'dashboard_trades_cover'"
                ).fetchone()
            ):
                # Named, not left to the planner: without statistics it takes trades_symbol for a symbol
                # (then reads every matching row) when the sort is one that index also orders.
                source = "trades INDEXED BY dashboard_trades_cover"
            total = self._conn.execute(f"SELECT count(*) FROM {source}{where}", args).fetchone()[0]
            rows = self._conn.execute(
                f"SELECT * FROM trades WHERE rowid IN (SELECT rowid FROM {source}{where}{order} LIMIT ? OFFSET ?)"
                f"{order}",
                [*args, limit, offset],
            ).fetchall()
        keys = [key for key in Trade.model_fields if key != "open"]
        return [Trade(open=bool(row["is_open"]), **{key: row[key] for key in keys}) for row in rows], int(total)

    def document(self, result_id: str) -> ResultDocument:
        """The whole document (the only call that parses JSON), cached by file and mtime."""
        self.sync()
        with self._lock:
            row = self._conn.execute("SELECT file, mtime_ns FROM results WHERE id = ?", (result_id,)).fetchone()
        if row is None:
            raise ResultNotFoundError(result_id)
        key = (row["file"], row["mtime_ns"])
        with self._lock:
            cached = self._documents.get(key)
            if cached is not None:
                self._documents.move_to_end(key)
                return cached
        try:
            document = ResultDocument.model_validate_json((self.backtests_dir / row["file"]).read_bytes())
        except FileNotFoundError as exc:
            raise ResultNotFoundError(result_id) from exc
        with self._lock:
            self._documents[key] = document
            while len(self._documents) > DOCUMENT_CACHE_SIZE:
                self._documents.popitem(last=False)
        return document
