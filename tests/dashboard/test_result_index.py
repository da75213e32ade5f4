"""The result index is written by the engine as it writes each result (kubetrader.results.index).

The dashboard then lists a store the engine filled without parsing one JSON file; a
file changed behind the index's back is still re-read, and an index kept apart from
the store (the chart's read-only volume) starts as a copy of the engine's.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from kubetrader.results.store import result_paths, write_document
from kubetrader_dashboard.services import results as results_service
from kubetrader_dashboard.services.results import ResultFilter, ResultStore
from tests.fixtures.dashboard import DashboardStores


def _write_as_the_engine(stores: DashboardStores, results_dir: Path, *, index: bool = True) -> None:
    for result_id, document in stores.documents.items():
        write_document(document, result_paths(results_dir, result_id).json, index=index)


def _listing(store: ResultStore) -> list[dict[str, object]]:
    rows, total = store.list_results(ResultFilter(), sort="name", limit=100, offset=0)
    assert total == len(rows)
    return [row.model_dump() for row in rows]


class _NoParse:
    """Stands in for ResultDocument in the dashboard's store: any parse is a test failure."""

    @staticmethod
    def model_validate_json(data: bytes) -> object:
        raise AssertionError("the dashboard parsed a result file the engine had indexed")


def test_results_the_engine_wrote_are_listed_without_parsing_a_file(
    dashboard_results: DashboardStores, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write_as_the_engine(dashboard_results, tmp_path / "unindexed", index=False)
    parsed = ResultStore(tmp_path / "unindexed")  # the dashboard parses every file: the reference
    expected = _listing(parsed)
    parsed.close()
    _write_as_the_engine(dashboard_results, tmp_path)
    monkeypatch.setattr(results_service, "ResultDocument", _NoParse)
    store = ResultStore(tmp_path)
    try:
        assert store.sync(force=True) == 0
        assert _listing(store) == expected
        assert sorted(str(row["id"]) for row in expected) == sorted(dashboard_results.result_ids)
        assert store.counts() == {"succeeded": len(expected), "failed": 0, "unreadable": 0}
    finally:
        store.close()


def test_a_file_rewritten_behind_the_index_is_read_again(dashboard_results: DashboardStores, tmp_path: Path) -> None:
    _write_as_the_engine(dashboard_results, tmp_path)
    result_id = dashboard_results.result_ids[0]
    document = dashboard_results.documents[result_id]
    changed = document.model_copy(update={"metrics": {**document.metrics, "sharpe_ratio": 9.5}})
    path = result_paths(tmp_path, result_id).json
    path.write_text(changed.model_dump_json())  # not through the engine's writer: the index does not know
    store = ResultStore(tmp_path)
    try:
        assert store.summary(result_id).sharpe_ratio == 9.5
    finally:
        store.close()


def test_an_index_kept_apart_from_the_store_starts_as_a_copy_of_the_engines(
    dashboard_results: DashboardStores, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    results_dir = tmp_path / "results"
    _write_as_the_engine(dashboard_results, results_dir)
    monkeypatch.setattr(results_service, "ResultDocument", _NoParse)
    store = ResultStore(results_dir, index_path=tmp_path / "scratch" / "index.sqlite")
    try:
        rows, total = store.list_results(ResultFilter(), sort="-sharpe_ratio", limit=100, offset=0)
    finally:
        store.close()
    assert total == len(dashboard_results.result_ids)
    sharpes = [row.sharpe_ratio for row in rows]
    assert sharpes == sorted(sharpes, key=lambda v: -v if v is not None else float("inf"))
