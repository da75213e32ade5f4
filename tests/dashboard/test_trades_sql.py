"""The trade log across every result (`GET /trades`): each filter and sort is a search of an index
of the result index's trades table, never a read of each matching trade's row (what made a
symbol's page ~1 s at 10,000 results), and the answers are the trades of the documents."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from kubetrader.results.trades import is_closed
from kubetrader_dashboard.services.results import TRADE_SORTS, ResultStore, TradeFilter
from tests.fixtures.dashboard import DashboardStores

pytestmark = pytest.mark.xdist_group("dashboard")


class _Recording:
    """The store's connection, recording each statement it runs (and its arguments)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn, self.statements = conn, list[tuple[str, list[Any]]]()

    def execute(self, sql: str, args: Any = ()) -> sqlite3.Cursor:
        self.statements.append((sql, list(args)))
        return self.conn.execute(sql, args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.conn, name)


@pytest.fixture
def store(tmp_path: Path, dashboard_results: DashboardStores) -> ResultStore:
    shutil.copytree(dashboard_results.results_dir / "backtests", tmp_path / "backtests")
    return ResultStore(tmp_path)


def _filters(documents: dict[str, Any]) -> list[TradeFilter]:
    first = next(iter(documents.values()))
    symbol, strategy = first.trades[0].symbol, first.metadata.strategy
    return [
        TradeFilter(),
        TradeFilter(symbol=symbol),
        TradeFilter(strategy=strategy),
        TradeFilter(symbol=symbol, strategy=strategy, start="2013-01-01", end="2013-12-31"),
        TradeFilter(start="2014-01-01"),
        TradeFilter(state="all"),
        TradeFilter(symbol=symbol, state="all"),
        TradeFilter(state="open"),
        TradeFilter(result_id=first.metadata.id, state="all"),
    ]


def _plan_reads_rows(conn: sqlite3.Connection, sql: str, args: list[Any]) -> list[str]:
    """The steps of the plan that read trades' rows one by one, other than a page's own rows (by
    rowid) and one result's trades (by its primary key)."""
    plan = [row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", args)]
    return [
        step
        for step in plan
        if step.startswith(("SCAN trades", "SEARCH trades"))
        and "COVERING INDEX" not in step
        and "INTEGER PRIMARY KEY (rowid=?)" not in step
        and "sqlite_autoindex_trades_1 (result_id=?)" not in step
    ]


def test_every_trade_log_query_searches_an_index_not_the_rows(
    store: ResultStore, dashboard_results: DashboardStores
) -> None:
    store.sync()
    recording = _Recording(store._conn)
    store._conn = recording  # type: ignore[assignment]
    for flt in _filters(dashboard_results.documents):
        for key in TRADE_SORTS:
            for sort in (key, f"-{key}"):
                recording.statements.clear()
                store.trades(flt, sort=sort, limit=20, offset=5)
                queries = [(sql, args) for sql, args in recording.statements if "FROM trades" in sql]
                assert len(queries) == 2  # the count and the page
                for sql, args in queries:
                    assert _plan_reads_rows(recording.conn, sql, args) == [], (flt, sort, sql)


def test_the_trade_log_answers_are_the_documents_trades(store: ResultStore, dashboard_results: DashboardStores) -> None:
    documents = dashboard_results.documents
    for flt in _filters(documents):
        expected = sorted(
            (d.metadata.id, t.entry_time, t.pnl_net)
            for d in documents.values()
            if (not flt.strategy or d.metadata.strategy == flt.strategy)
            and (not flt.result_id or d.metadata.id == flt.result_id)
            for t in d.trades
            if (not flt.symbol or t.symbol == flt.symbol)
            and (not flt.start or t.entry_time[:10] >= flt.start)
            and (not flt.end or t.entry_time[:10] <= flt.end)
            and (flt.state == "all" or is_closed(t) == (flt.state == "closed"))
        )
        items, total = store.trades(flt, sort="-pnl_net", limit=10_000, offset=0)
        assert total == len(expected), flt
        assert sorted((t.result_id, t.entry_time, t.pnl_net) for t in items) == expected, flt
        values = [t.pnl_net for t in items if t.pnl_net is not None]
        assert values == sorted(values, reverse=True)


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"sort": "-bogus"}, "sort"),
        ({"start": "2013-1-1"}, "start"),
        ({"end": "yesterday"}, "end"),
        ({"limit": 0}, "limit"),
        ({"offset": -1}, "offset"),
        ({"state": "closing"}, "state"),
    ],
)
def test_a_bad_trade_log_query_is_a_problem_naming_its_field(
    tmp_path: Path, params: dict[str, Any], field: str
) -> None:
    from fastapi.testclient import TestClient

    from kubetrader_dashboard.api.main import create_app
    from tests.fixtures.dashboard import dashboard_settings

    with TestClient(create_app(dashboard_settings(tmp_path, None, None))) as client:
        response = client.get("/api/v1/trades", params=params)
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    # FastAPI's own checks name it with its place (`query.start`), the route's (the sort key) bare
    assert [error["field"].removeprefix("query.") for error in response.json()["errors"]] == [field]
