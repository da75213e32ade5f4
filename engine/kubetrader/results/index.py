"""The result store's SQLite index: one summary row per result file (and its trades), kept on write.

The engine indexes each result document as it writes it (`index_written`, called by
`kubetrader.results.store.write_document`), so a reader such as the dashboard never
has to parse 10,000 JSON files to list them: it finds the rows already there, keyed by
file name, mtime and size, and re-reads only files whose stamp the index does not know
(written by something else, or while the index was locked). The index stays a cache:
deleting it loses nothing, the dashboard rebuilds what is missing.

The journal is SQLite's default rollback journal, not WAL: results often live on a
volume shared by pods on several nodes, and WAL "does not work over a network
filesystem" because its readers and writers share memory (https://www.sqlite.org/wal.html,
"Disadvantages"). Writes are short (one row and its trades) and wait `BUSY_TIMEOUT`
for a lock; indexing on write is best effort and never fails a run.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from kubetrader.results.schema import ResultDocument
from kubetrader.results.trades import is_closed

log = logging.getLogger(__name__)

INDEX_FILE = ".index.sqlite"
# 2: trades carry is_open (kubetrader.results.trades); 3: headline metrics as columns, rollback journal
INDEX_VERSION = 3
BUSY_TIMEOUT = 10.0
HEADLINE_COLUMNS = ("sharpe_ratio", "total_return", "max_drawdown", "cagr", "num_trades")

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS results (
    id TEXT PRIMARY KEY, file TEXT NOT NULL, mtime_ns INTEGER NOT NULL, size INTEGER NOT NULL,
    name TEXT, strategy TEXT, symbols TEXT, start TEXT, "end" TEXT, status TEXT, error TEXT,
    started_at TEXT, finished_at TEXT, wall_seconds REAL, project TEXT, asset_class TEXT,
    strategy_family TEXT, mlflow_run_id TEXT, metrics TEXT,
    {", ".join(f"{name} REAL" for name in HEADLINE_COLUMNS)}
);
CREATE INDEX IF NOT EXISTS results_finished ON results (finished_at);
CREATE INDEX IF NOT EXISTS results_file ON results (file);
CREATE TABLE IF NOT EXISTS trades (
    result_id TEXT NOT NULL, seq INTEGER NOT NULL, strategy TEXT, symbol TEXT, entry_time TEXT,
    exit_time TEXT, entry_price REAL, exit_price REAL, size REAL, pnl REAL, pnl_net REAL,
    commission REAL, bars_held INTEGER, is_open INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (result_id, seq)
);
CREATE INDEX IF NOT EXISTS trades_symbol ON trades (symbol, entry_time);
CREATE TABLE IF NOT EXISTS broken (file TEXT PRIMARY KEY, mtime_ns INTEGER, size INTEGER, error TEXT);
INSERT OR IGNORE INTO meta VALUES ('version', '{INDEX_VERSION}');
"""

_RESULT_COLUMNS = 19 + len(HEADLINE_COLUMNS)


def index_path_for(results_dir: Path) -> Path:
    """Where the engine keeps the index of `{results_dir}/backtests`."""
    return results_dir / INDEX_FILE


def open_index(path: Path | str, *, timeout: float = BUSY_TIMEOUT) -> sqlite3.Connection:
    """Open (creating) the index at `path`; an index of another version is dropped and recreated.

    Raises sqlite3.Error or OSError when the file cannot be used (read-only volume, corrupt file).
    """
    conn = sqlite3.connect(path, timeout=timeout, check_same_thread=False, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=DELETE")
        version = _version(conn)
        if version is not None and version != str(INDEX_VERSION):
            _drop_all(conn)
        conn.executescript(SCHEMA)
    except BaseException:
        conn.close()
        raise
    conn.row_factory = sqlite3.Row
    return conn


def _version(conn: sqlite3.Connection) -> str | None:
    try:
        row = conn.execute("SELECT value FROM meta WHERE key = 'version'").fetchone()
    except sqlite3.OperationalError:  # no meta table yet: a new file
        return None
    return None if row is None else str(row[0])


def _drop_all(conn: sqlite3.Connection) -> None:
    """Empty an index of another version in place (another process may hold the file open)."""
    with transaction(conn):
        for (table,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall():
            conn.execute(f'DROP TABLE IF EXISTS "{table}"')


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One write transaction, taken at once (IMMEDIATE) so it waits for the lock instead of failing midway."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def tracking_levels(spec: dict[str, Any]) -> tuple[str | None, str | None, str | None]:
    """Project / asset class / strategy family from a bare spec or a whole custom resource."""
    inner = spec.get("spec") if isinstance(spec.get("spec"), dict) and "kind" in spec else spec
    tracking = inner.get("tracking") if isinstance(inner, dict) else None
    if not isinstance(tracking, dict):
        return None, None, None
    return (
        tracking.get("project"),
        tracking.get("assetClass", tracking.get("asset_class")),
        tracking.get("strategyFamily", tracking.get("strategy_family")),
    )


def forget(conn: sqlite3.Connection, file: str) -> None:
    """Drop every row of `file` (a removed or changed result file)."""
    conn.execute("DELETE FROM trades WHERE result_id IN (SELECT id FROM results WHERE file = ?)", (file,))
    conn.execute("DELETE FROM results WHERE file = ?", (file,))
    conn.execute("DELETE FROM broken WHERE file = ?", (file,))


def record_broken(conn: sqlite3.Connection, file: str, mtime_ns: int, size: int, error: str) -> None:
    """A half-written or foreign file: remembered by its stamp so it is not re-read until it changes."""
    forget(conn, file)
    conn.execute("INSERT OR REPLACE INTO broken VALUES (?, ?, ?, ?)", (file, mtime_ns, size, error[:500]))


def _finite(value: float | None) -> float | None:
    """As the JSON file holds it: pydantic writes NaN and infinities as null (`ser_json_inf_nan`)."""
    return value if value is None or math.isfinite(value) else None


def index_document(conn: sqlite3.Connection, file: str, mtime_ns: int, size: int, document: ResultDocument) -> None:
    """Replace the rows of `file` by those of `document` (call inside a transaction)."""
    meta = document.metadata
    result_id = file.removesuffix(".json")
    project, asset_class, family = tracking_levels(document.spec)
    metrics = {name: _finite(value) for name, value in document.metrics.items()}
    forget(conn, file)
    conn.execute(
        f"INSERT OR REPLACE INTO results VALUES ({','.join('?' * _RESULT_COLUMNS)})",
        (
            result_id,
            file,
            mtime_ns,
            size,
            meta.name,
            meta.strategy,
            "," + ",".join(meta.symbols) + ",",
            meta.start,
            meta.end,
            document.status,
            document.error,
            meta.started_at,
            meta.finished_at,
            meta.wall_seconds,
            project,
            asset_class,
            family,
            meta.mlflow_run_id,
            json.dumps(metrics),
            *(metrics.get(name) for name in HEADLINE_COLUMNS),
        ),
    )
    conn.executemany(
        "INSERT INTO trades VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
        [
            (
                result_id,
                seq,
                meta.strategy,
                t.symbol,
                t.entry_time,
                t.exit_time,
                t.entry_price,
                t.exit_price,
                t.size,
                t.pnl,
                t.pnl_net,
                t.commission,
                t.bars_held,
                0 if is_closed(t) else 1,
            )
            for seq, t in enumerate(document.trades)
        ],
    )


def index_written(path: Path, stat: os.stat_result, document: ResultDocument) -> bool:
    """Index a result file just written at `{results_dir}/backtests/{id}.json`; False when it could not be.

    `stat` is the written file's own (taken before the rename), so if another writer replaced
    the file since, the stamps differ and a reader re-reads the file instead of trusting this row.
    Best effort: a locked, read-only or corrupt index only means a reader parses this
    file itself later, so the run goes on (logged at debug level).
    """
    try:
        conn = open_index(index_path_for(path.parent.parent))
    except (OSError, sqlite3.Error) as exc:
        log.debug("result index not updated for %s: %s", path.name, exc)
        return False
    try:
        with transaction(conn):
            index_document(conn, path.name, stat.st_mtime_ns, stat.st_size, document)
    except sqlite3.Error as exc:
        log.debug("result index not updated for %s: %s", path.name, exc)
        return False
    finally:
        conn.close()
    return True
